"""The Lightning side of a stopping policy: read the metric, ask the policy, stop the Trainer.

:class:`StoppingCallback` is the base of every policy. A subclass implements only the
pure :meth:`~StoppingCallback.decide`; this module does the rest:

* checks at every validation (several per epoch with ``val_check_interval < 1``, each
  keyed by its global step), or every ``every_n_train_steps`` training batches;
* stops through ``trainer.should_stop`` — mid-epoch when the check is mid-epoch — and
  never raises out of ``fit``;
* under DDP only global rank 0 reads storage and decides; the decision is broadcast, so
  every rank stops at the same step, and only rank 0 writes;
* a monitored metric that was never logged raises :class:`MetricNotFoundError` listing
  the metrics that were;
* resumable like Lightning's own callbacks (``state_dict``/``load_state_dict`` under a
  ``state_key`` built from the policy's arguments).

Inside a ``SearchRunner`` the runner hands each trial's copy of the callback its live
trial (``bind_trial``) and stores the outcome. In a plain script, a policy given
``storage=`` and ``study=`` records the run as a trial of that study itself, so the next
run of the script is judged against it.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from sqlalchemy.exc import IntegrityError
from typing_extensions import override

from frameworm_lightning.exceptions import FramewormError, MetricNotFoundError, StorageError
from frameworm_lightning.stopping._base import Check, Decision, History, Promotion, Reason, StopDecision
from frameworm_lightning.storage import DuplicateClaimError, Storage, current_owner, masked_url, open_storage
from frameworm_lightning.study import validate_mode
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["StoppingCallback", "enqueue_promotion"]


@dataclass(frozen=True)
class _StudyRef:
    """What the callback needs of a study: where it is stored and what it optimises."""

    storage: Storage
    study_id: int
    name: str
    metric: str
    mode: str


class _ScriptTrial:
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

    @classmethod
    def open(cls, url: str, study_name: str, metric: str, mode: str, params: Mapping[str, Any]) -> _ScriptTrial:
        store = open_storage(url)
        record = store.create_or_load_study(study_name, metric, mode, {}, check_space=False)
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
        self.intermediate_values[int(step)] = float(value)
        self.study.storage.report(self.trial_id, int(step), float(value))

    def set_system_attr(self, key: str, value: Any) -> None:
        self.system_attrs[key] = value
        self.study.storage.set_trial_attr(self.trial_id, key, value, system=True)

    def request_prune(self, reason: str) -> None:
        if self.prune_reason is None:
            self.prune_reason = reason

    def should_prune(self) -> bool:
        return self.prune_reason is not None

    def finish(self, state: TrialState, value: float | None = None, reason: str | None = None,
               error: str | None = None) -> bool:
        if value is not None and not math.isfinite(value):
            value = None
        return self.study.storage.finish_trial(self.trial_id, state, value=value, reason=reason, error=error)


def _flat_params(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A module's hyperparameters as dotted keys with JSON values (others as their repr)."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_params(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, (list, tuple)) and all(v is None or isinstance(v, (bool, int, float, str)) for v in value):
            out[name] = list(value)
        else:
            out[name] = repr(value)
    return out


def _epochs(trainer: pl.Trainer) -> float:
    """Epochs trained so far, with the fraction of the current epoch."""
    done = float(trainer.current_epoch)
    batches = trainer.num_training_batches
    if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0:
        ready = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        done += min(ready, batches) / batches
    return done


def enqueue_promotion(storage: Storage, study_id: int, promotion: Promotion) -> int | None:
    """Store a promotion as a waiting trial that resumes the paused one; ``None`` if another
    process promoted it first (the claim key ``promote:<number>:<rung>`` is unique)."""
    parent = promotion.trial
    try:
        child = storage.enqueue(
            study_id, parent.params, claim_key=f"promote:{parent.number}:{promotion.rung}",
            skip_if_exists=False, system_attrs=dict(promotion.attrs),
        )
    except (DuplicateClaimError, IntegrityError):  # the unique claim key is taken: promoted already
        return None
    if child is None:
        return None
    storage.set_trial_attr(parent.trial_id, "promoted_to", child.number, system=True)  # type: ignore[arg-type]
    return child.number


class StoppingCallback(Callback, ABC):
    """Base class of the stopping policies: a Lightning callback around a pure ``decide``.

    Subclasses implement :meth:`decide` (and, if they compare trials, set
    ``needs_others = True``). Use any policy as a callback of your own ``Trainer``, or
    pass it to ``SearchRunner(callbacks=[...])``.

    Args:
        monitor: the logged metric to judge; inside a ``SearchRunner`` it defaults to the
            search's metric.
        mode: ``"min"`` or ``"max"``; defaults to the search's mode, else ``"min"``.
        storage: without a runner, a database URL (``sqlite:///runs.db``) where each run of
            the script is stored as a trial of ``study``, so later runs compare against it.
        study: the study name those runs are stored under.
        every_n_train_steps: check every N training batches (on ``monitor``, which should
            then be a training metric logged with ``on_step=True``) instead of after each
            validation.

    Example:
        >>> from frameworm_lightning.stopping import Decision, History, Reason, StopDecision
        >>> class StopAbove(StoppingCallback):
        ...     def decide(self, history: History) -> StopDecision:
        ...         if history.fresh and history.value > 1.0:
        ...             return StopDecision(Decision.PRUNE, Reason.THRESHOLD, "above 1")
        ...         return StopDecision()
        >>> StopAbove(monitor="val_loss").decide(History({10: 2.0})).decision
        <Decision.PRUNE: 'prune'>
    """

    #: Whether the policy reads the other trials of the study (median, halving...).
    needs_others: bool = False
    #: Whether the policy also checks after every training batch, without a new value.
    batch_checks: bool = False
    #: Whether the policy judges a metric (a budget alone does not, unless runs are stored).
    requires_monitor: bool = True

    def __init__(
        self,
        monitor: str | None = None,
        mode: str | None = None,
        *,
        storage: str | None = None,
        study: str | None = None,
        every_n_train_steps: int | None = None,
    ) -> None:
        super().__init__()
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"monitor must be a non-empty string, but got monitor={monitor!r}.")
        if mode is not None:
            validate_mode(mode)
        if storage is not None and not isinstance(storage, str):
            raise ValueError(f"storage must be a database URL such as 'sqlite:///runs.db', but got storage={storage!r}.")
        if study is not None and (not isinstance(study, str) or not study):
            raise ValueError(f"study must be a non-empty string, but got study={study!r}.")
        if (storage is None) != (study is None):
            raise ValueError(
                f"storage and study go together (a run is stored as a trial of a study), but got "
                f"storage={storage and masked_url(storage)!r} and study={study!r}."
            )
        if every_n_train_steps is not None and (
            isinstance(every_n_train_steps, bool) or not isinstance(every_n_train_steps, int) or every_n_train_steps < 1
        ):
            raise ValueError(
                f"every_n_train_steps must be a positive integer or None, but got every_n_train_steps={every_n_train_steps!r}."
            )
        self.monitor = monitor
        self.mode = mode
        self.storage = storage
        self.study = study
        self.every_n_train_steps = every_n_train_steps
        self._reset_run_state()

    def _reset_run_state(self) -> None:
        self._trial: Any = None
        self._in_runner = False
        self._values: dict[int, float] = {}
        self._elapsed_before = 0.0
        self._t0: float | None = None
        self._start_step = 0
        self._stopped: StopDecision | None = None
        self._resumed: dict[str, Any] | None = None

    # The policy ------------------------------------------------------------------------
    @abstractmethod
    def decide(self, history: History) -> StopDecision:
        """Decide from ``history`` alone whether the trial continues (pure: no I/O)."""

    def start_attrs(self, history: History) -> dict[str, Any]:
        """System attributes a new trial gets when it starts (halving assigns brackets)."""
        return {}

    def trial_budget(self, study: Any, n_trials: int) -> int:
        """``SearchRunner`` hook, called before each trial is claimed: how many trials the
        study may hold. Schedulers add their promotions; ``0`` ends the search."""
        return n_trials

    def configure_trainer(self, trainer: pl.Trainer) -> None:
        """Adjust the trainer when training starts (halving sets how long trials may train)."""

    def _key_args(self) -> dict[str, Any]:
        """The arguments that tell two instances apart in a checkpoint (see ``state_key``)."""
        return {}

    def _mode(self) -> str:
        return self.mode or "min"

    # Runner integration ----------------------------------------------------------------
    def bind_trial(self, trial: Any) -> None:
        """Called by ``SearchRunner`` with the live trial this copy of the callback judges."""
        metric, mode = trial.study.metric, trial.study.mode
        if self.mode is not None and self.mode != mode:
            raise ValueError(f"{type(self).__name__}(mode={self.mode!r}) disagrees with the search's mode={mode!r}.")
        if self.needs_others and self.monitor is not None and self.monitor != metric:
            raise ValueError(
                f"{type(self).__name__} compares trials on the search's metric {metric!r}, "
                f"but got monitor={self.monitor!r}; leave monitor unset."
            )
        self.monitor = self.monitor or metric
        self.mode = mode
        self._trial = trial
        self._in_runner = True

    @property
    def trial(self) -> Any:
        """The trial this callback reports to (``None`` without storage, or off rank 0)."""
        return self._trial

    # Lightning hooks -------------------------------------------------------------------
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, **self._key_args())

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # A new fit starts a new run (a checkpoint, if any, restores the history after this).
        self._values, self._elapsed_before, self._stopped, self._resumed = {}, 0.0, None, None
        if not self._in_runner:
            self._trial = None
        name = type(self).__name__
        if self.monitor is None and (self.requires_monitor or self.storage is not None):
            raise ValueError(f"{name} needs monitor= (the logged metric to judge) outside a SearchRunner.")
        if self.needs_others and not self._in_runner and self.storage is None:
            raise ValueError(
                f"{name} compares a run with other runs: outside a SearchRunner give it storage= and "
                f"study=, e.g. {name}(monitor={self.monitor!r}, storage='sqlite:///runs.db', study='my-study')."
            )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.monotonic()
        self._start_step = trainer.global_step
        self._stopped = None
        self.configure_trainer(trainer)
        if trainer.is_global_zero:
            if self._trial is None and self.storage is not None:
                self._trial = _ScriptTrial.open(self.storage, self.study, self.monitor, self._mode(),  # type: ignore[arg-type]
                                                _flat_params(getattr(pl_module, "hparams", {}) or {}))
                self._link_resumed_run()
            if self._trial is not None:
                self._trial.set_system_attr("fw_start_step", self._start_step)
                attrs = self.start_attrs(self._history(trainer, Check.START))
                for key, value in attrs.items():
                    self._trial.set_system_attr(key, value)
        self._check(trainer, Check.START)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.every_n_train_steps is not None or trainer.state.fn != "fit":
            return
        self._check(trainer, Check.REPORT if self.monitor is not None else Check.BATCH)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every_n_train_steps is not None and (batch_idx + 1) % self.every_n_train_steps == 0:
            self._check(trainer, Check.REPORT if self.monitor is not None else Check.BATCH)
        elif self.batch_checks:
            self._check(trainer, Check.BATCH)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trial = self._trial
        if trial is None or not trainer.is_global_zero:
            return
        trial.set_system_attr("fw_steps", max(0, trainer.global_step - self._start_step))
        if self._in_runner:
            return  # the runner stores the outcome
        try:
            self._finish_script_trial(trainer, trial)
        finally:
            trial.study.storage.close()

    def _finish_script_trial(self, trainer: pl.Trainer, trial: _ScriptTrial) -> None:
        stopped = self._stopped
        if stopped is not None and stopped.decision in (Decision.PRUNE, Decision.PAUSE):
            trial.finish(TrialState.PRUNED, value=self._last_finite(), reason=stopped.describe())
            return
        value = self._last_value(trainer)
        if value is None:
            trial.finish(TrialState.FAILED, error=f"{self.monitor!r} was never reported", reason="no value")
        elif not math.isfinite(value):
            trial.finish(TrialState.FAILED, error=f"{self.monitor!r} is {value} (diverged)", reason="diverged")
        else:
            trial.finish(TrialState.COMPLETE, value=value,
                         reason=None if stopped is None else stopped.describe())

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._trial is None or self._in_runner or not trainer.is_global_zero:
            return
        if isinstance(exception, KeyboardInterrupt):
            self._trial.finish(TrialState.FAILED, error="interrupted (KeyboardInterrupt)", reason="interrupted")
        else:
            text = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
            self._trial.finish(TrialState.FAILED, error=text, reason=f"{type(exception).__name__}: {exception}"[:500])
        self._trial.study.storage.close()

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"values": dict(self._values), "elapsed": self._elapsed()}
        if self._trial is not None and not self._in_runner:
            state.update(trial_id=self._trial.trial_id, trial=self._trial.number, storage=self.storage, study=self.study)
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._values = {int(k): float(v) for k, v in state_dict.get("values", {}).items()}
        self._elapsed_before = float(state_dict.get("elapsed", 0.0))
        self._resumed = state_dict if "trial_id" in state_dict else None

    # Plumbing ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return self._elapsed_before + (0.0 if self._t0 is None else time.monotonic() - self._t0)

    def _last_finite(self) -> float | None:
        finite = [v for v in self._values.values() if math.isfinite(v)]
        return finite[-1] if finite else None

    def _last_value(self, trainer: pl.Trainer) -> float | None:
        if self._values:
            return self._values[max(self._values)]
        value = trainer.callback_metrics.get(self.monitor)  # type: ignore[arg-type]
        return None if value is None else float(value)

    def _link_resumed_run(self) -> None:
        """A script resumed from a checkpoint: carry the curve over and close the old trial."""
        old, trial = self._resumed, self._trial
        if old is None or old.get("storage") != self.storage or old.get("study") != self.study:
            return
        trial.set_system_attr("resumed_from", old.get("trial"))
        for step, value in sorted(self._values.items()):
            trial.report(step, value)
        trial.study.storage.finish_trial(
            int(old["trial_id"]), TrialState.FAILED, error=f"interrupted; resumed as trial {trial.number}",
            reason="interrupted",
        )

    def _others(self) -> list[FrozenTrial]:
        trial = self._trial
        if trial is None:
            return []
        return [t for t in trial.study.storage.get_trials(trial.study.study_id) if t.trial_id != trial.trial_id]

    def _history(self, trainer: pl.Trainer, check: Check) -> History:
        trial = self._trial
        load_others = self.needs_others and check is not Check.BATCH
        return History(
            values=self._values,
            mode=self._mode(),
            step=trainer.global_step,
            epoch=_epochs(trainer),
            elapsed=self._elapsed(),
            check=check,
            number=None if trial is None else trial.number,
            attrs={} if trial is None else dict(trial.system_attrs),
            others=self._others() if load_others else (),
            start_step=self._start_step,
            can_pause=self._in_runner and self._can_pause(),
        )

    def _can_pause(self) -> bool:
        return False

    def _read(self, trainer: pl.Trainer) -> float:
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise MetricNotFoundError(self.monitor, set(metrics) | set(trainer.logged_metrics))  # type: ignore[arg-type]
        value = metrics[self.monitor]  # type: ignore[index]
        return float(value.item() if hasattr(value, "item") else value)

    def _check(self, trainer: pl.Trainer, check: Check) -> None:
        """Decide once on rank 0, agree on every rank, then act."""
        if self._stopped is not None or trainer.fast_dev_run:
            return
        if check is Check.REPORT:
            # Every rank reads: a missing metric raises everywhere, before any collective.
            self._values[trainer.global_step] = self._read(trainer)
        decision: StopDecision | None = None
        error: BaseException | None = None
        payload: tuple[str, str, str] | None = None
        if trainer.is_global_zero:
            try:
                if check is Check.REPORT and self._trial is not None and not self._in_runner:
                    self._trial.report(trainer.global_step, self._values[trainer.global_step])
                decision = self.decide(self._history(trainer, check))
                payload = (decision.decision.value, decision.reason.value, decision.describe())
            except Exception as err:  # noqa: BLE001 - re-raised below on every rank, after the broadcast
                error = err
                payload = ("error", "", f"{type(err).__name__}: {err}")
        payload = trainer.strategy.broadcast(payload, src=0)
        if payload[0] == "error":
            if error is not None:
                raise error
            raise FramewormError(f"the stopping policy failed on rank 0: {payload[2]}")
        verdict = Decision(payload[0])
        if decision is None:  # the other ranks only need to know what to do
            decision = StopDecision(verdict, Reason(payload[1]), payload[2])
        self._act(trainer, decision)

    def _act(self, trainer: pl.Trainer, decision: StopDecision) -> None:
        trial = self._trial if trainer.is_global_zero else None
        if trial is not None:
            for key, value in decision.attrs.items():
                trial.set_system_attr(key, value)
        if decision.decision is Decision.PAUSE:
            path = self._pause_checkpoint_path(trainer, decision)
            trainer.save_checkpoint(path)  # every rank: saving is collective under DDP
            if trial is not None:
                trial.set_system_attr("fw_checkpoint", str(path))
        if decision.stops:
            trainer.should_stop = True
            self._stopped = decision
            if trial is not None:
                trial.set_system_attr("fw_stop", {"decision": decision.decision.value, "reason": decision.reason.value,
                                                  "step": trainer.global_step})
                if decision.decision in (Decision.PRUNE, Decision.PAUSE):
                    trial.request_prune(decision.describe())
        if trial is not None:
            for promotion in decision.promotions:
                enqueue_promotion(trial.study.storage, trial.study.study_id, promotion)

    def _pause_checkpoint_path(self, trainer: pl.Trainer, decision: StopDecision) -> Path:
        root = None
        if self._trial is not None and "trial_dir" in self._trial.system_attrs:
            root = Path(self._trial.system_attrs["trial_dir"])
        if root is None:
            root = Path(trainer.default_root_dir)
        rung = decision.attrs.get("fw_paused_at", trainer.global_step)
        name = f"paused-{rung}.ckpt"
        # Only rank 0 knows the trial dir; ranks agree on the name through the broadcast path.
        path = trainer.strategy.broadcast(str(root / "checkpoints" / name), src=0)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return Path(path)
