"""Budgets: how long one trial may train, and how much the whole search may spend."""

from __future__ import annotations

import time
from typing import Any

from frameworm_lightning.stopping._base import (
    CONTINUE,
    Check,
    Decision,
    History,
    Reason,
    StopDecision,
    check_int,
    check_number,
    trained_steps,
)
from frameworm_lightning.stopping._callback import StoppingCallback
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["BudgetStopping", "SearchBudget", "search_usage"]


def _trial_seconds(trial: FrozenTrial, now: float) -> float:
    if trial.started_at is None:
        return 0.0
    end = trial.completed_at if trial.completed_at is not None else now
    return max(0.0, end - trial.started_at)


def search_usage(others: list[FrozenTrial] | tuple[FrozenTrial, ...], history: History,
                 now: float | None = None) -> tuple[float, int]:
    """Seconds and training steps spent by the whole study, this trial included."""
    now = time.time() if now is None else now
    counted = [t for t in others if t.state is not TrialState.WAITING]
    seconds = sum(_trial_seconds(t, now) for t in counted) + history.elapsed
    steps = sum(trained_steps(t) for t in counted) + history.trained_steps
    return seconds, steps


class BudgetStopping(StoppingCallback):
    """Stops a trial at its own budget, and the whole search at the search's.

    Per trial: ``max_time`` seconds of training, ``max_steps`` global steps, or
    ``max_epochs`` (fractional) epochs. A trial that uses its own budget has trained as
    long as it was meant to: it stops and is stored ``COMPLETE``. These are checked after
    every training batch, so the trial stops at the exact step.

    Per search: ``search_max_time`` seconds or ``search_max_steps`` training steps, summed
    over every trial of the study (in a serial search the seconds are its wall time).
    When they are spent, the trials in flight are stopped and stored ``PRUNED`` ("search
    budget spent") and a ``SearchRunner`` claims no more trials: the search ends cleanly.
    In a plain script with ``storage=``/``study=`` the budget spans the runs of the study.

    Args:
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback` (``monitor`` is only
            needed to record the runs of a script).
        max_time / max_steps / max_epochs: the per-trial budgets.
        search_max_time / search_max_steps: the per-search budgets.

    Example:
        >>> from frameworm_lightning.stopping import Check, History
        >>> policy = BudgetStopping(max_steps=100)
        >>> policy.decide(History(step=100, check=Check.BATCH)).decision.name
        'FINISH'
    """

    batch_checks = True
    requires_monitor = False

    def __init__(
        self,
        max_time: float | None = None,
        max_steps: int | None = None,
        max_epochs: float | None = None,
        search_max_time: float | None = None,
        search_max_steps: int | None = None,
        monitor: str | None = None,
        mode: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(monitor, mode, **options)
        self.max_time = check_number("max_time", max_time, minimum=0, strict=True, allow_none=True)
        self.max_steps = check_int("max_steps", max_steps, minimum=1, allow_none=True)
        self.max_epochs = check_number("max_epochs", max_epochs, minimum=0, strict=True, allow_none=True)
        self.search_max_time = check_number("search_max_time", search_max_time, minimum=0, strict=True, allow_none=True)
        self.search_max_steps = check_int("search_max_steps", search_max_steps, minimum=1, allow_none=True)
        if all(v is None for v in (max_time, max_steps, max_epochs, search_max_time, search_max_steps)):
            raise ValueError(
                "BudgetStopping needs at least one budget: max_time, max_steps, max_epochs, "
                "search_max_time or search_max_steps (all are None)."
            )
        self.needs_others = self.searchwide
        self.batch_checks = any(v is not None for v in (max_time, max_steps, max_epochs))

    @property
    def searchwide(self) -> bool:
        return self.search_max_time is not None or self.search_max_steps is not None

    def search_spent(self, seconds: float, steps: int) -> str | None:
        """Why the search budget is spent, or ``None``."""
        if self.search_max_time is not None and seconds >= self.search_max_time:
            return f"search budget spent: {seconds:.0f}s of training >= {self.search_max_time:g}s"
        if self.search_max_steps is not None and steps >= self.search_max_steps:
            return f"search budget spent: {steps} training steps >= {self.search_max_steps}"
        return None

    def decide(self, history: History) -> StopDecision:
        step = int(history.step or 0)
        if self.max_steps is not None and step >= self.max_steps:
            return StopDecision(Decision.FINISH, Reason.TRIAL_BUDGET, f"trial budget: step {step} >= max_steps={self.max_steps}")
        if self.max_epochs is not None and history.epoch >= self.max_epochs:
            return StopDecision(Decision.FINISH, Reason.TRIAL_BUDGET,
                                f"trial budget: {history.epoch:.3g} epochs >= max_epochs={self.max_epochs:g}")
        if self.max_time is not None and history.elapsed >= self.max_time:
            return StopDecision(Decision.FINISH, Reason.TRIAL_BUDGET,
                                f"trial budget: {history.elapsed:.1f}s >= max_time={self.max_time:g}s")
        if self.searchwide and history.check is not Check.BATCH:
            spent = self.search_spent(*search_usage(list(history.others), history))
            if spent is not None:
                return StopDecision(Decision.PRUNE, Reason.SEARCH_BUDGET, spent)
        return CONTINUE

    def scheduler(self) -> SearchBudget | None:
        """With a search budget: what stops the search's claims once it is spent."""
        return SearchBudget(self) if self.searchwide else None

    def _key_args(self) -> dict[str, Any]:
        return {"max_time": self.max_time, "max_steps": self.max_steps, "max_epochs": self.max_epochs,
                "search_max_time": self.search_max_time, "search_max_steps": self.search_max_steps}


class SearchBudget:
    """The scheduler of a search budget (a ``runner._loop.Scheduler``): no claims once it is spent."""

    def __init__(self, policy: BudgetStopping) -> None:
        self.policy = policy

    def trial_budget(self, study: Any, n_trials: int) -> int:
        """``0`` once the search budget is spent, so the run loop claims no more trials."""
        if n_trials <= 0:
            return n_trials
        seconds, steps = search_usage(study.trials, History())
        return 0 if self.policy.search_spent(seconds, steps) is not None else n_trials

    def on_search_end(self, study: Any) -> None:
        """Nothing to tidy."""
