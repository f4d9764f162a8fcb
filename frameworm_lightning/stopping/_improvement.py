"""Stop a trial whose metric has stopped improving (early stopping with patience)."""

from __future__ import annotations

import math
from typing import Any

from frameworm_lightning.stopping._base import CONTINUE, Decision, History, Reason, StopDecision, check_int, check_number
from frameworm_lightning.stopping._callback import StoppingCallback

__all__ = ["ImprovementStopping"]


class ImprovementStopping(StoppingCallback):
    """Stops a trial after ``patience`` checks without improvement (Lightning's ``EarlyStopping``).

    The positional arguments come in ``EarlyStopping``'s order (``monitor, min_delta,
    patience, verbose, mode, strict, check_finite``), so ``ImprovementStopping("val_loss",
    0.01, 3)`` is ``EarlyStopping("val_loss", 0.01, 3)``. A value improves on the best so
    far when it is better by more than ``min_delta`` (absolute), or by more than
    ``min_delta * |best|`` with ``relative=True``. A trial that plateaued has converged,
    so by default it is stored ``COMPLETE`` with its value; ``prune=True`` stores it
    ``PRUNED`` instead. A NaN or infinite value prunes the trial at once
    (``check_finite=False``: it counts as no improvement).

    Args:
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.
        min_delta: the smallest change that counts as an improvement (``>= 0``).
        patience: checks in a row without improvement before stopping (``>= 1``).
        relative: read ``min_delta`` as a fraction of the best value.
        prune: store a stopped trial ``PRUNED`` rather than ``COMPLETE``.

    Attributes:
        wait_count: checks since the last improvement (as ``EarlyStopping``'s), besides
            ``stopped_epoch``, ``best_score`` and ``stopping_reason`` of every policy.

    Example:
        >>> from frameworm_lightning.stopping import History
        >>> policy = ImprovementStopping("val_loss", 0.0, 2)
        >>> policy.decide(History({1: 1.0, 2: 0.9, 3: 0.95, 4: 0.91})).decision.name
        'FINISH'
    """

    def __init__(
        self,
        monitor: str | None = None,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str | None = None,
        strict: bool = True,
        check_finite: bool = True,
        *,
        relative: bool = False,
        prune: bool = False,
        check_on_train_epoch_end: bool | None = None,
        storage: str | None = None,
        study: str | None = None,
        every_n_train_steps: int | None = None,
    ) -> None:
        super().__init__(monitor, mode, verbose=verbose, strict=strict, check_finite=check_finite,
                         check_on_train_epoch_end=check_on_train_epoch_end, storage=storage, study=study,
                         every_n_train_steps=every_n_train_steps)
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
        """Checks since the last improvement, and the best value so far (a NaN never improves)."""
        best: float | None = None
        wait = 0
        for value in history.values.values():
            if math.isfinite(value) and (best is None or self.improves(value, best, history.mode)):
                best, wait = value, 0
            else:
                wait += 1
        return wait, best

    @property
    def wait_count(self) -> int:
        """Checks since the last improvement this run (``EarlyStopping.wait_count``)."""
        return self.stale_checks(History(self._values, mode=self._mode()))[0]

    def decide(self, history: History) -> StopDecision:
        diverged = self._diverged(history)
        if diverged is not None:
            return diverged
        if not history.fresh:
            return CONTINUE
        wait, best = self.stale_checks(history)
        if wait >= self.patience:
            checks = f"in {wait} check{'' if wait == 1 else 's'} (patience {self.patience}, step {history.step})"
            return StopDecision(Decision.PRUNE if self.prune else Decision.FINISH, Reason.NO_IMPROVEMENT,
                                f"{self._no_improvement(history.metric, best)} {checks}")
        return CONTINUE

    def _no_improvement(self, metric: str, best: float | None) -> str:
        """What did not happen, with the change that would have counted (a better value by less does not)."""
        if best is None:
            return "no finite value"
        by = ""
        if self.min_delta > 0:
            by = f" by more than {self.min_delta * 100:g}%" if self.relative else f" by more than {self.min_delta:g}"
        return f"no improvement of {metric}{by} over {best:.6g}"

    def _key_args(self) -> dict[str, Any]:
        return {"patience": self.patience, "min_delta": self.min_delta, "relative": self.relative}
