"""Stop a trial whose metric is worse than a bound, or not finite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from frameworm_lightning.stopping._base import (
    CONTINUE,
    Decision,
    History,
    Reason,
    StopDecision,
    check_int,
    check_number,
    worse,
)
from frameworm_lightning.stopping._callback import StoppingCallback

__all__ = ["ThresholdStopping"]


class ThresholdStopping(StoppingCallback):
    """Prunes a trial whose metric is worse than a bound, and always one that diverges.

    The bound is ``threshold``, or follows ``schedule``: ``{step: bound}`` pairs, each
    bound holding from its step on (a bound that tightens as training goes). Before
    ``grace_steps`` only NaN and infinite values stop the trial; with neither bound given
    the policy is a pure divergence guard.

    Args:
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.
        threshold: the bound (a value worse than it prunes the trial).
        schedule: ``{global_step: bound}``; the bound of the largest step not after the
            current one applies (no bound before the first).
        grace_steps: global steps during which only NaN/inf stops the trial.

    Example:
        >>> from frameworm_lightning.stopping import History
        >>> policy = ThresholdStopping(monitor="val_loss", schedule={0: 10.0, 100: 1.0})
        >>> policy.decide(History({50: 2.0})).decision.name
        'CONTINUE'
        >>> policy.decide(History({50: 2.0, 100: 2.0})).decision.name
        'PRUNE'
    """

    def __init__(
        self,
        monitor: str | None = None,
        threshold: float | None = None,
        schedule: Mapping[int, float] | None = None,
        grace_steps: int = 0,
        mode: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(monitor, mode, **options)
        if threshold is not None and schedule is not None:
            raise ValueError(
                f"give threshold or schedule, not both, but got threshold={threshold!r} and schedule={schedule!r}."
            )
        check_number("threshold", threshold, allow_none=True)
        if schedule is not None:
            if not isinstance(schedule, Mapping) or not schedule:
                raise ValueError(f"schedule must be a non-empty mapping {{step: bound}}, but got schedule={schedule!r}.")
            clean: dict[int, float] = {}
            for step, bound in schedule.items():
                step_i = int(step) if isinstance(step, str) and step.strip().isdigit() else step
                check_int("a schedule step", step_i, minimum=0)
                check_number(f"schedule[{step!r}]", bound)
                clean[step_i] = float(bound)  # type: ignore[index]
            schedule = dict(sorted(clean.items()))
        self.threshold = None if threshold is None else float(threshold)
        self.schedule = schedule
        self.grace_steps = check_int("grace_steps", grace_steps, minimum=0)

    def bound_at(self, step: int) -> float | None:
        """The bound in force at global step ``step`` (``None``: no bound)."""
        if self.schedule is None:
            return self.threshold
        bound = None
        for start, value in self.schedule.items():
            if start <= step:
                bound = value
        return bound

    def decide(self, history: History) -> StopDecision:
        diverged = self._diverged(history)
        if diverged is not None:
            return diverged
        if not history.fresh or history.step < self.grace_steps:  # type: ignore[operator]
            return CONTINUE
        bound = self.bound_at(history.step)  # type: ignore[arg-type]
        value = history.value
        if bound is not None and value is not None and worse(value, bound, history.mode):
            side = ">" if history.mode == "min" else "<"
            return StopDecision(Decision.PRUNE, Reason.THRESHOLD,
                                f"{history.metric}={value:.6g} {side} bound {bound:.6g} at step {history.step}")
        return CONTINUE

    def _key_args(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "schedule": self.schedule, "grace_steps": self.grace_steps}
