"""Stop a trial whose metric has stopped improving (early stopping with patience)."""

from __future__ import annotations

import math
from typing import Any

from frameworm_lightning.stopping._base import CONTINUE, Decision, History, Reason, StopDecision, check_int, check_number
from frameworm_lightning.stopping._callback import StoppingCallback
from frameworm_lightning.stopping._threshold import non_finite

__all__ = ["ImprovementStopping"]


class ImprovementStopping(StoppingCallback):
    """Stops a trial after ``patience`` checks without improvement.

    A value improves on the best so far when it is better by more than ``min_delta``
    (absolute), or by more than ``min_delta * |best|`` with ``relative=True``. A trial
    that plateaued has converged, so by default it is stored ``COMPLETE`` with its value
    (like Lightning's ``EarlyStopping``); ``prune=True`` stores it ``PRUNED`` instead. A
    NaN or infinite value prunes the trial at once.

    Args:
        monitor / mode / storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.
        patience: checks in a row without improvement before stopping (``>= 1``).
        min_delta: the smallest change that counts as an improvement (``>= 0``).
        relative: read ``min_delta`` as a fraction of the best value.
        prune: store a stopped trial ``PRUNED`` rather than ``COMPLETE``.

    Example:
        >>> from frameworm_lightning.stopping import History
        >>> policy = ImprovementStopping(monitor="val_loss", patience=2)
        >>> policy.decide(History({1: 1.0, 2: 0.9, 3: 0.95, 4: 0.91})).decision.name
        'FINISH'
    """

    def __init__(
        self,
        monitor: str | None = None,
        patience: int = 3,
        min_delta: float = 0.0,
        relative: bool = False,
        mode: str | None = None,
        prune: bool = False,
        *,
        storage: str | None = None,
        study: str | None = None,
        every_n_train_steps: int | None = None,
    ) -> None:
        super().__init__(monitor, mode, storage=storage, study=study, every_n_train_steps=every_n_train_steps)
        self.patience = check_int("patience", patience, minimum=1)
        self.min_delta = float(check_number("min_delta", min_delta, minimum=0.0))
        if not isinstance(relative, bool):
            raise ValueError(f"relative must be True or False, but got relative={relative!r}.")
        if not isinstance(prune, bool):
            raise ValueError(f"prune must be True or False, but got prune={prune!r}.")
        self.relative = relative
        self.prune = prune

    def improves(self, value: float, best: float, mode: str) -> bool:
        """Whether ``value`` improves on ``best`` by more than the minimum change."""
        delta = self.min_delta * abs(best) if self.relative else self.min_delta
        return value < best - delta if mode == "min" else value > best + delta

    def stale_checks(self, history: History) -> tuple[int, float | None]:
        """Checks since the last improvement, and the best value so far."""
        best: float | None = None
        wait = 0
        for value in history.values.values():
            if not math.isfinite(value):
                continue
            if best is None or self.improves(value, best, history.mode):
                best, wait = value, 0
            else:
                wait += 1
        return wait, best

    def decide(self, history: History) -> StopDecision:
        diverged = non_finite(history, repr(self.monitor or "the metric"))
        if diverged is not None:
            return diverged
        if not history.fresh:
            return CONTINUE
        wait, best = self.stale_checks(history)
        if wait >= self.patience:
            return StopDecision(
                Decision.PRUNE if self.prune else Decision.FINISH, Reason.NO_IMPROVEMENT,
                f"no improvement of {self.monitor or 'the metric'} over {best:.6g} in {wait} checks "
                f"(patience {self.patience}, step {history.step})",
            )
        return CONTINUE

    def _key_args(self) -> dict[str, Any]:
        return {"patience": self.patience, "min_delta": self.min_delta, "relative": self.relative}
