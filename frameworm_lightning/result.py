"""The outcome of a search, in memory or read back from storage."""

from __future__ import annotations

from typing import Any

from frameworm_lightning.study import Study
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["SearchResult"]


class SearchResult:
    """What a search found: the best trial, its params and score, and every trial.

    It reads the study's storage, so a result built from a stored study
    (``SearchResult(Study.load(name, storage))``) is the same as the one ``fit`` returned.

    Example:
        >>> from frameworm_lightning import Real, Study
        >>> study = Study.create("r", {"x": Real(0, 1)}, metric="loss")
        >>> t = study.ask(); _ = t.complete(0.5)
        >>> SearchResult(study).best_score
        0.5
    """

    def __init__(self, study: Study) -> None:
        self.study = study
        self.trials: list[FrozenTrial] = study.trials
        complete = [t for t in self.trials if t.state is TrialState.COMPLETE and t.value is not None]
        best: FrozenTrial | None = None
        for t in complete:
            if best is None or study.is_better(t.value, best.value):  # type: ignore[arg-type]
                best = t
        self.best_trial: FrozenTrial | None = best

    @property
    def metric(self) -> str:
        return self.study.metric

    @property
    def mode(self) -> str:
        return self.study.mode

    @property
    def best_params(self) -> dict[str, Any] | None:
        """The best trial's params (dotted keys), or ``None`` if no trial completed."""
        return None if self.best_trial is None else self.study.space.canonical(self.best_trial.params)

    @property
    def best_score(self) -> float | None:
        return None if self.best_trial is None else self.best_trial.value

    @property
    def best_checkpoint(self) -> str | None:
        """Path of the best trial's best checkpoint, when one was saved."""
        return None if self.best_trial is None else self.best_trial.system_attrs.get("checkpoint_path")

    def count(self, state: TrialState) -> int:
        return sum(t.state is state for t in self.trials)

    def __repr__(self) -> str:
        return (
            f"SearchResult(study={self.study.name!r}, trials={len(self.trials)}, "
            f"best_score={self.best_score!r}, best_params={self.best_params!r})"
        )
