"""A run of a user's own training script, stored as a trial of a study.

A stopping policy given ``storage=`` and ``study=`` outside a ``SearchRunner`` records
each run of the script this way (``StoppingCallback._open_script_trial``), so the next
run is judged against it. :class:`ScriptTrial` is the
:class:`~frameworm_lightning.trial.LiveTrial` of such a run; several policies of one
Trainer share it (:data:`SCRIPT_TRIALS`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl

from frameworm_lightning.exceptions import StorageError
from frameworm_lightning.stopping._base import StopDecision
from frameworm_lightning.storage import Storage, current_owner, masked_url, open_storage
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["SCRIPT_TRIALS", "ScriptTrial", "flat_params"]

# The trials that storage-backed policies of one Trainer record, keyed by (storage, study):
# several policies in one Trainer store the run once.
SCRIPT_TRIALS: weakref.WeakKeyDictionary[pl.Trainer, dict[tuple[str, str], ScriptTrial]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class _StudyRef:
    """What the callback needs of a study: where it is stored and what it optimises."""

    storage: Storage
    study_id: int
    name: str
    metric: str
    mode: str


class ScriptTrial:
    """A run of a user's own training script, stored as a trial of a study.

    The same surface as :class:`~frameworm_lightning.study.Trial` that the callback uses,
    for the runs no ``SearchRunner`` started.
    """

    def __init__(self, study: _StudyRef, frozen: FrozenTrial) -> None:
        self.study = study
        self.number = frozen.number
        self.trial_id: int = frozen.trial_id  # type: ignore[assignment]
        self.system_attrs: dict[str, Any] = dict(frozen.system_attrs)
        self.intermediate_values: dict[int, float] = dict(frozen.intermediate_values)
        self.prune_reason: str | None = None
        self.finish_reason: str | None = None
        #: the first stop any policy of the run decided (they share this trial)
        self.stop: StopDecision | None = None
        self.finished = False

    @classmethod
    def open(cls, url: str, study_name: str, metric: str, mode: str, params: Mapping[str, Any]) -> ScriptTrial:
        store = open_storage(url)
        record = store.create_or_load_study(study_name, metric, mode, {}, check_space=False, by=("run", "study= name"))
        if store.get_trials(record.study_id, (TrialState.WAITING,)):
            raise StorageError(
                f"study {study_name!r} in {masked_url(url)!r} has trials queued by a search; a training script "
                "run on its own needs a study of its own: pass another study= name."
            )
        frozen, _ = store.claim_trial(record.study_id, current_owner(), None)
        if frozen is None or frozen.trial_id is None:  # cannot happen without a budget; a clear error if it does
            raise StorageError(f"could not create a trial in study {study_name!r} of {masked_url(url)!r}.")
        store.set_trial_params(frozen.trial_id, dict(params), None, {"standalone": True})
        ref = _StudyRef(store, record.study_id, study_name, metric, mode)
        return cls(ref, store.get_trial(frozen.trial_id))

    def report(self, step: int, value: float) -> None:
        if self.intermediate_values.get(int(step)) == float(value):
            return  # another policy of the same Trainer reported this check already
        self.intermediate_values[int(step)] = float(value)
        self.study.storage.report(self.trial_id, int(step), float(value))

    def set_system_attr(self, key: str, value: Any) -> None:
        self.system_attrs[key] = value
        self.study.storage.set_trial_attr(self.trial_id, key, value, system=True)

    def request_prune(self, reason: str) -> None:
        if self.prune_reason is None:
            self.prune_reason = reason

    def request_finish(self, reason: str) -> None:
        if self.finish_reason is None:
            self.finish_reason = reason

    def should_prune(self) -> bool:
        return self.prune_reason is not None

    def _finish(self, state: TrialState, value: float | None = None, reason: str | None = None,
                error: str | None = None) -> bool:
        """Store the outcome and close the storage (once, whichever policy of the run comes first)."""
        if self.finished:
            return False
        self.finished = True
        if value is not None and not math.isfinite(value):
            value = None
        try:
            return self.study.storage.finish_trial(self.trial_id, state, value=value, reason=reason, error=error)
        finally:
            self.study.storage.close()

    def complete(self, value: float, reason: str | None = None) -> bool:
        if not math.isfinite(value):
            return self.fail(f"{self.study.metric!r} is {value} (diverged)", reason="diverged")
        return self._finish(TrialState.COMPLETE, value=value, reason=reason or self.finish_reason)

    def prune(self, reason: str | None = None, value: float | None = None) -> bool:
        return self._finish(TrialState.PRUNED, value=value, reason=reason or self.prune_reason or "pruned")

    def fail(self, error: str, reason: str | None = None) -> bool:
        return self._finish(TrialState.FAILED, error=error, reason=reason or error.strip().splitlines()[-1][:500])

    def interrupt(self, why: str) -> bool:
        return self.fail(f"interrupted ({why})", reason="interrupted")


def flat_params(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A module's hyperparameters as dotted keys with JSON values (others as their repr)."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if str(key).startswith("_"):
            continue  # not a hyperparameter: LightningCLI's _instantiator and _class_path
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
            out[name] = list(value)
        else:
            out[name] = repr(value)
    return out
