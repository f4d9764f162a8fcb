"""The median stopping rule: stop a trial that does worse than most trials did by the same step."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from frameworm_lightning.stopping._base import (
    CONTINUE,
    Decision,
    History,
    Reason,
    StopDecision,
    best_of,
    check_int,
    worse,
)
from frameworm_lightning.stopping._callback import StoppingCallback
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["MedianStopping"]

_STATISTICS = ("best", "mean")


def summarise(values: Mapping[int, float], step: int, statistic: str, mode: str) -> float | None:
    """The best (or running mean) of the finite values reported at steps up to ``step``."""
    upto = [v for s, v in values.items() if s <= step and math.isfinite(v)]
    if not upto:
        return None
    return best_of(upto, mode) if statistic == "best" else sum(upto) / len(upto)


class MedianStopping(StoppingCallback):
    """Prunes a trial whose value at step ``t`` is worse than the median of other trials at ``t``.

    At each check (global step ``t``) the trial's statistic — its best value so far, or
    the running mean of its values with ``statistic="mean"`` — is compared with the same
    statistic of every other finished trial (``COMPLETE`` or ``PRUNED``) that trained to
    step ``t`` or beyond, computed over its values up to ``t`` (a run continued from its
    checkpoint counts once, as the trial that continued it). The trial is pruned when
    it is strictly worse than their median. Nothing is pruned before ``grace_steps``, nor
    while fewer than ``min_trials`` trials can be compared.

    Inside a ``SearchRunner`` the other trials are the search's; in a plain script give
    ``storage=`` and ``study=`` and the other trials are the earlier runs of the script.

    Args:
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.
        grace_steps: global steps before which a trial is never pruned.
        min_trials: how many comparable trials the median needs.
        statistic: ``"best"`` (the best value up to ``t``) or ``"mean"`` (the running mean).

    Example:
        >>> from frameworm_lightning.stopping import History
        >>> from frameworm_lightning.trial import FrozenTrial, TrialState
        >>> done = [FrozenTrial(i, TrialState.COMPLETE, intermediate_values={10: v, 20: v / 2})
        ...         for i, v in enumerate([1.0, 2.0, 3.0])]
        >>> policy = MedianStopping(monitor="val_loss", min_trials=3)
        >>> policy.decide(History({10: 2.5}, others=done)).message
        'best val_loss 2.5 at step 10 is worse than the median 2 of 3 trials'
    """

    needs_others = True

    def __init__(
        self,
        monitor: str | None = None,
        grace_steps: int = 0,
        min_trials: int = 3,
        statistic: str = "best",
        mode: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(monitor, mode, **options)
        self.grace_steps = check_int("grace_steps", grace_steps, minimum=0)
        self.min_trials = check_int("min_trials", min_trials, minimum=1)
        if statistic not in _STATISTICS:
            raise ValueError(f"statistic must be one of {_STATISTICS}, but got statistic={statistic!r}.")
        self.statistic = statistic

    def comparable(self, others: list[FrozenTrial] | tuple[FrozenTrial, ...], step: int, mode: str) -> list[float]:
        """The statistic at ``step`` of each finished trial that trained at least that far."""
        out = []
        for trial in others:
            if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not trial.intermediate_values:
                continue
            if "resumed_as" in trial.system_attrs:  # a run continued from its checkpoint: the later trial counts
                continue
            if max(trial.intermediate_values) < step:
                continue
            value = summarise(trial.intermediate_values, step, self.statistic, mode)
            if value is not None:
                out.append(value)
        return out

    def decide(self, history: History) -> StopDecision:
        name = history.metric
        diverged = self._diverged(history)
        if diverged is not None:
            return diverged
        step = int(history.step or 0)
        if not history.fresh or step < self.grace_steps:
            return CONTINUE
        own = summarise(history.values, step, self.statistic, history.mode)
        peers = self.comparable(list(history.others), step, history.mode)
        if own is None or len(peers) < self.min_trials:
            return CONTINUE
        median = statistics.median(peers)
        if worse(own, median, history.mode):
            label = "best" if self.statistic == "best" else "mean"
            return StopDecision(
                Decision.PRUNE, Reason.BELOW_MEDIAN,
                f"{label} {name} {own:.6g} at step {step} is worse than the median {median:.6g} of {len(peers)} trials",
            )
        return CONTINUE

    def _key_args(self) -> dict[str, Any]:
        return {"grace_steps": self.grace_steps, "min_trials": self.min_trials, "statistic": self.statistic}
