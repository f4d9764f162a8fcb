"""The Lightning side of a stopping policy: read the metric, ask the policy, stop the Trainer.

:class:`StoppingCallback` is the base of every policy. A subclass implements only the
pure :meth:`~StoppingCallback.decide`; this module does the rest, as Lightning's
``EarlyStopping`` does:

* checks after each validation (several per epoch with ``val_check_interval < 1``, each
  keyed by its global step), at the end of each training epoch
  (``check_on_train_epoch_end``; the default when validation runs once per epoch, and
  the only way without a validation loop), or every ``every_n_train_steps`` batches;
* stops through ``trainer.should_stop`` — mid-epoch when the check is mid-epoch — and
  never raises out of ``fit``; says so on rank zero (``verbose``: at every check);
* under DDP only global rank 0 reads the metric and storage and decides; the decision
  (or rank 0's error) is broadcast, so every rank stops at the same step, a metric
  missing on another rank cannot hang the run, and only rank 0 writes;
* a monitored metric that was never logged raises :class:`MetricNotFoundError` listing
  the metrics that were (``strict=False``: the check is skipped);
* exposes ``stopped_epoch``, ``best_score``, ``stopping_reason`` and
  ``stopping_reason_message`` (``ImprovementStopping`` adds ``wait_count``);
* resumable like Lightning's own callbacks (``state_dict``/``load_state_dict`` under a
  ``state_key`` built from the policy's arguments).

Inside a ``SearchRunner`` the runner hands each trial's copy of the callback its live
trial (``bind_trial``) and stores the outcome. In a plain script, a policy given
``storage=`` and ``study=`` records the run as a trial of that study itself, so the next
run of the script is judged against it; several such policies in one Trainer share
that one trial, and ``fast_dev_run`` is never stored.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
import traceback
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from frameworm_lightning._trainer import why_no_validation
from frameworm_lightning.exceptions import FramewormError, MetricNotFoundError
from frameworm_lightning.stopping._base import (
    Check,
    Decision,
    History,
    Reason,
    StopDecision,
    best_of,
    non_finite,
)
from frameworm_lightning.stopping._rungs import CONFIG_ATTRS
from frameworm_lightning.stopping._script import SCRIPT_TRIALS, ScriptTrial, flat_params
from frameworm_lightning.storage import TrialHistory, masked_url
from frameworm_lightning.study import validate_mode
from frameworm_lightning.trial import FrozenTrial, LiveTrial, TrialState

__all__ = ["StoppingCallback"]

log = logging.getLogger(__name__)

def _loads_weights_only(value: Any) -> bool:
    """Whether ``torch.load(..., weights_only=True)`` loads ``value`` back (tensors, plain containers)."""
    buffer = io.BytesIO()
    try:
        torch.save(value, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)
    except Exception:  # noqa: BLE001 - anything it cannot save or load back is not a plain value
        return False
    return True


def _epoch_steps(trainer: pl.Trainer) -> int | None:
    """Optimizer steps in one training epoch of this fit; ``None`` when the epoch has no known length."""
    batches = trainer.num_training_batches
    if not isinstance(batches, (int, float)) or not math.isfinite(batches) or batches <= 0:
        return None
    return math.ceil(batches / trainer.accumulate_grad_batches)


class StoppingCallback(EarlyStopping, ABC):
    """Base class of the stopping policies: a Lightning callback around a pure ``decide``.

    Subclasses implement :meth:`decide` (and, if they compare trials, set
    ``needs_others = True``). Use any policy as a callback of your own ``Trainer``, or
    pass it to ``SearchRunner(callbacks=[...])``. To Lightning it is an ``EarlyStopping``
    (checked after the module's own ``on_train_epoch_end``, so it sees what the module
    logs there); every hook is its own.

    Args:
        monitor: the logged metric to judge; inside a ``SearchRunner`` it defaults to the
            search's metric.
        mode: ``"min"`` or ``"max"``; defaults to the search's mode, else ``"min"`` (a policy on
            another metric than the search's keeps its own; in a ``"max"`` search it must give it).
        verbose: log every check on rank zero, not only the stop.
        strict: raise :class:`~frameworm_lightning.MetricNotFoundError` when ``monitor``
            was not logged at a check; ``False`` skips that check.
        check_finite: stop (``PRUNE``) as soon as the metric is NaN or infinite.
        check_on_train_epoch_end: check at the end of each training epoch rather than
            after each validation; ``None`` (default) does as Lightning's
            ``EarlyStopping``: at the train epoch end when validation runs once per epoch
            (``val_check_interval=1.0``, ``check_val_every_n_epoch=1``), else after each
            validation. The train epoch end sees epoch-level training metrics
            (``train_loss_epoch``) and is the only check without a validation loop.
        storage: without a runner, a database URL (``sqlite:///runs.db``) where each run of
            the script is stored as a trial of ``study``, so later runs compare against it.
        study: the study name those runs are stored under.
        every_n_train_steps: check every N training batches (on ``monitor``, which should
            then be a training metric logged with ``on_step=True``) instead.

    Attributes:
        stopped_epoch: the epoch at which the policy stopped training (0 if it did not).
        best_score: the best finite value of ``monitor`` this run (``None`` before one).
        stopping_reason: a :class:`~frameworm_lightning.stopping.Reason`
            (``Reason.NONE`` while training goes on).
        stopping_reason_message: the reason in a sentence (``None`` while training goes on).

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
        verbose: bool = False,
        strict: bool = True,
        check_finite: bool = True,
        check_on_train_epoch_end: bool | None = None,
        storage: str | None = None,
        study: str | None = None,
        every_n_train_steps: int | None = None,
    ) -> None:
        # An EarlyStopping for Lightning's sake only: at a train epoch's end Lightning checks
        # EarlyStopping and checkpoint callbacks after the module's own on_train_epoch_end
        # (its "monitoring callbacks", a fixed isinstance test), so a policy sees what the
        # module logs there, as EarlyStopping does. Every hook Lightning calls is overridden
        # here; EarlyStopping's own state (patience, min_delta) is not ours, so its __init__
        # is skipped for Callback's. tests/stopping/test_callback_parity.py checks both.
        Callback.__init__(self)
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(f"monitor must be a non-empty string, but got monitor={monitor!r}.")
        if mode is not None:
            validate_mode(mode)
        for name, flag in (("verbose", verbose), ("strict", strict), ("check_finite", check_finite)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False, but got {name}={flag!r}.")
        if check_on_train_epoch_end is not None and not isinstance(check_on_train_epoch_end, bool):
            raise ValueError(
                "check_on_train_epoch_end must be True, False or None, but got "
                f"check_on_train_epoch_end={check_on_train_epoch_end!r}."
            )
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
        self.verbose = verbose
        self.strict = strict
        self.check_finite = check_finite
        self.check_on_train_epoch_end = check_on_train_epoch_end
        self.storage = storage
        self.study = study
        self.every_n_train_steps = every_n_train_steps
        self._seen: TrialHistory | None = None  # the study as last read: each check reads what changed since
        self._trial: LiveTrial | None = None
        self._in_runner = False
        self._saving_pause = False
        self._per_run_checkpoints: set[str] = set()
        self._reset_run()

    def _reset_run(self) -> None:
        """Forget the last run (a new ``fit`` is a new run; a checkpoint restores what it carries)."""
        self._values: dict[int, float] = {}
        self._elapsed_before = 0.0
        self._t0: float | None = None
        self._start_step = 0
        self._stopped: StopDecision | None = None
        self._resumed: dict[str, Any] | None = None
        self._owns_trial = False
        self._epoch_check = False
        self._epoch_batches = 0
        self._pending_pause: StopDecision | None = None
        self._warned_missing = False
        self.stopped_epoch = 0
        self.stopping_reason = Reason.NONE
        self.stopping_reason_message: str | None = None

    # The policy ------------------------------------------------------------------------
    @abstractmethod
    def decide(self, history: History) -> StopDecision:
        """Decide from ``history`` alone whether the trial continues (pure: no I/O)."""

    def start_attrs(self, history: History) -> dict[str, Any]:
        """System attributes a new trial gets when it starts (halving assigns brackets)."""
        return {}

    def scheduler(self) -> Any:
        """What the search's run loop consults before each claim (a ``runner._loop.Scheduler``:
        ``trial_budget(study, n)`` and ``on_search_end(study)``), or ``None``.

        A separate object from the callback: the runner asks the callback given to
        ``SearchRunner(callbacks=[...])`` once, while each trial's Trainer runs its own
        copy of the callback. Halving policies return their promotions
        (:class:`~frameworm_lightning.stopping.Promotions`); ``BudgetStopping`` its
        search-wide budget.
        """
        return None

    def trainer_limits(self) -> dict[str, Any]:
        """``Trainer`` arguments that bound how long a trial trains (``max_epochs``/``max_steps``).

        A ``SearchRunner`` passes them to each trial's ``Trainer(...)``, so the Trainer
        (and ``estimated_stepping_batches``, which LR schedules plan with) knows the run's
        length from the start. Halving policies train trials up to ``max_resource``.
        """
        return {}

    def resume_limits(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """``Trainer`` arguments that replace :meth:`trainer_limits` in a trial of the search that resumes a
        pause checkpoint (``attrs``: the trial's system attributes); ``{}`` keeps them."""
        return {}

    def _key_args(self) -> dict[str, Any]:
        """The arguments that tell two instances apart in a checkpoint (see ``state_key``)."""
        return {}

    def _mode(self) -> str:
        return self.mode or "min"

    def _diverged(self, history: History) -> StopDecision | None:
        """``PRUNE`` for a NaN or infinite newest value when ``check_finite`` (every policy's first rule)."""
        if not self.check_finite:
            return None
        return non_finite(history)

    def _needs_value_at(self, step: int) -> bool:
        """Whether the policy needs a value at global step ``step`` though no validation may be
        due then (halving on steps: the last rung)."""
        return False

    def _report_due(self, trainer: pl.Trainer) -> bool:
        """A value is needed now and none was read at this step: the callback then sets
        ``should_stop``, and Lightning validates at this step before it stops."""
        return self._needs_value_at(trainer.global_step) and trainer.global_step not in self._values

    @property
    def best_score(self) -> float | None:
        """The best finite value of ``monitor`` this run (``None`` before one)."""
        return best_of(self._values.values(), self._mode())

    # Runner integration ----------------------------------------------------------------
    def check_search(self, metric: str, mode: str) -> None:
        """Raise ``ValueError`` if this policy cannot judge a search of ``metric`` and ``mode``
        (``SearchRunner`` asks before anything is stored; binding a trial asks again)."""
        if self.mode is not None and self.mode != mode and self.monitor in (None, metric):
            raise ValueError(f"{type(self).__name__}(mode={self.mode!r}) disagrees with the search's mode={mode!r}; "
                             "leave mode unset.")
        if self.needs_others and self.monitor is not None and self.monitor != metric:
            raise ValueError(
                f"{type(self).__name__} compares trials on the search's metric {metric!r}, "
                f"but got monitor={self.monitor!r}; leave monitor unset."
            )
        if self.mode is None and self.monitor not in (None, metric) and mode == "max":
            # It would take the search's mode, where EarlyStopping users expect its default, "min".
            raise ValueError(
                f"{type(self).__name__} monitors {self.monitor!r}, not the search's metric {metric!r}: give its mode "
                f"('min' or 'max'); the search's mode='max' is for {metric!r}."
            )

    def bind_trial(self, trial: LiveTrial) -> None:
        """Called by ``SearchRunner`` with the live trial this copy of the callback judges."""
        metric, mode = trial.study.metric, trial.study.mode
        self.check_search(metric, mode)
        self.monitor = self.monitor or metric
        self.mode = self.mode or mode  # its own, for another metric than the search's
        self._trial = trial
        self._in_runner = True

    @property
    def trial(self) -> LiveTrial | None:
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
        self._reset_run()
        # The ModelCheckpoints without a dirpath of their own: Lightning gives each run one (in the trial's
        # folder, or its logger's run folder) in their setup, which runs after this one (checkpoint
        # callbacks come last); a pause checkpoint leaves their state out (on_save_checkpoint).
        self._per_run_checkpoints = {cb.state_key for cb in trainer.checkpoint_callbacks
                                     if getattr(cb, "dirpath", "") is None}
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
        if self.every_n_train_steps is not None:
            self._epoch_check = False
        elif self.check_on_train_epoch_end is not None:
            self._epoch_check = self.check_on_train_epoch_end
        else:  # Lightning's EarlyStopping rule
            self._epoch_check = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.monotonic()
        self._start_step = trainer.global_step
        self._stopped = None
        if trainer.is_global_zero and not trainer.fast_dev_run:  # a debug run is never stored
            if self._trial is None and self.storage is not None:
                self._open_script_trial(trainer, pl_module)
            if self._trial is not None and (self._owns_trial or self._in_runner):
                self._trial.set_system_attr("fw_start_step", self._start_step)
            if self._trial is not None:
                attrs = self.start_attrs(self._history(trainer, Check.START))
                for key, value in attrs.items():
                    self._trial.set_system_attr(key, value)
        self._check(trainer, Check.START)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_batches = 0

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._epoch_batches = batch_idx + 1  # the hook's index: right after a mid-epoch resume too
        if self.every_n_train_steps is not None and (batch_idx + 1) % self.every_n_train_steps == 0:
            self._check(trainer, Check.REPORT if self.monitor is not None else Check.BATCH)
        elif self.batch_checks:
            self._check(trainer, Check.BATCH)
        if self._stopped is None and not trainer.fast_dev_run and self._report_due(trainer):
            trainer.should_stop = True  # Lightning validates at this step, then the check decides

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_check or self.every_n_train_steps is not None or self._skip_check(trainer):
            return
        self._check(trainer, Check.REPORT if self.monitor is not None else Check.BATCH)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # No batch of this epoch ran in this fit: Lightning replays the end of the epoch a
        # checkpoint was saved at (iteration-based training); it was checked before the save.
        if self._epoch_check and not self._skip_check(trainer) and self._epoch_batches > 0:
            self._check(trainer, Check.REPORT if self.monitor is not None else Check.BATCH)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending_pause is not None:
            # A pause at an epoch's end is saved once Lightning has finished that epoch: every epoch-end
            # hook has run, a ReduceLROnPlateau has stepped (after the hooks), the epoch is counted
            # complete. Saved in on_train_epoch_end, the schedule was an epoch behind in the promoted
            # trial. The promoted trial starts the next epoch (a resume bounded by epochs; on steps see
            # resume_limits).
            self._save_pause(trainer, self._pending_pause)
            self._pending_pause = None

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trial = self._trial
        if trial is None or not trainer.is_global_zero:
            return
        if self._in_runner or self._owns_trial:
            trial.set_system_attr("fw_steps", max(0, trainer.global_step - self._start_step))
        if self._in_runner or not self._owns_trial:
            return  # the runner (or the policy that opened the trial) stores the outcome
        self._finish_script_trial(trainer, trial)

    def _finish_script_trial(self, trainer: pl.Trainer, trial: ScriptTrial) -> None:
        SCRIPT_TRIALS.get(trainer, {}).pop((self.storage, self.study), None)  # type: ignore[arg-type]
        stopped = trial.stop
        if stopped is not None and stopped.decision in (Decision.PRUNE, Decision.PAUSE):
            trial.prune(stopped.describe(), value=self._last_finite())
            return
        value = self._last_value(trainer)
        if value is None:
            trial.fail(f"{self.monitor!r} was never reported", reason="no value")
        elif not math.isfinite(value):
            trial.fail(f"{self.monitor!r} is {value} (diverged)", reason="diverged")
        else:
            trial.complete(value)  # with the reason of a FINISH (request_finish)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._trial is None or self._in_runner or not trainer.is_global_zero:
            return
        SCRIPT_TRIALS.get(trainer, {}).pop((self.storage, self.study), None)  # type: ignore[arg-type]
        if isinstance(exception, KeyboardInterrupt):
            self._trial.interrupt("KeyboardInterrupt")
        else:
            text = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
            self._trial.fail(text, reason=f"{type(exception).__name__}: {exception}"[:500])

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "values": dict(self._values), "elapsed": self._elapsed(), "stopped_epoch": self.stopped_epoch,
            "stopping_reason": self.stopping_reason.value, "stopping_reason_message": self.stopping_reason_message,
        }
        if self._trial is not None and self._owns_trial:
            state.update(trial_id=self._trial.trial_id, trial=self._trial.number, storage=self.storage, study=self.study)
        return state

    @override
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        """What a pause checkpoint leaves out, for the promoted trial that resumes it in a folder of its own.

        The state of every ``ModelCheckpoint`` that saves into the paused trial's folder or run (the runner's
        best, a user's without a ``dirpath``, which Lightning puts in the trial's folder or the logger's run):
        its files are the paused trial's, so the promoted trial's copy starts afresh in its own folder (Lightning would warn that the folder changed, and keep naming the paused
        trial's best file). And the hyperparameters that are objects (an ``nn.Module`` given to
        ``save_hyperparameters()``): the promoted trial resumes with ``weights_only=True``, which would refuse
        them, and never reads them (it builds its module from its params).
        """
        if not self._saving_pause:
            return
        folder = self._trial_folder(trainer).resolve()
        states = checkpoint.get("callbacks") or {}
        for cb in trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if cb.state_key in self._per_run_checkpoints or (
                    dirpath is not None and Path(dirpath).resolve().is_relative_to(folder)):
                states.pop(cb.state_key, None)
        for key in (pl.LightningModule.CHECKPOINT_HYPER_PARAMS_KEY, pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY):
            hparams = checkpoint.get(key)
            if isinstance(hparams, dict):
                checkpoint[key] = {k: v for k, v in hparams.items() if _loads_weights_only(v)}
            elif hparams is not None and not _loads_weights_only(hparams):
                del checkpoint[key]
        for key in (pl.LightningModule.CHECKPOINT_HYPER_PARAMS_TYPE, pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_TYPE):
            checkpoint.pop(key, None)  # the class of OmegaConf hparams: not a weight either

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._values = {int(k): float(v) for k, v in state_dict.get("values", {}).items()}
        self._elapsed_before = float(state_dict.get("elapsed", 0.0))
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
        self.stopping_reason = Reason(state_dict.get("stopping_reason", Reason.NONE.value))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")
        self._resumed = state_dict if "trial_id" in state_dict else None

    # Plumbing ----------------------------------------------------------------------------
    @staticmethod
    def _skip_check(trainer: pl.Trainer) -> bool:
        return trainer.sanity_checking or trainer.state.fn != "fit"

    def _open_script_trial(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record this run as a trial of ``study``: the first storage-backed policy of the Trainer
        opens it, the others of the same study share it."""
        shared = SCRIPT_TRIALS.setdefault(trainer, {})
        key = (self.storage, self.study)
        if key in shared and not shared[key].finished:
            self._trial = shared[key]
            return
        self._trial = ScriptTrial.open(self.storage, self.study, self.monitor, self._mode(),  # type: ignore[arg-type]
                                        flat_params(getattr(pl_module, "hparams", {}) or {}))
        shared[key] = self._trial  # type: ignore[index]
        self._owns_trial = True
        self._link_resumed_run()

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
        """A script resumed from a checkpoint: carry the curve and the configuration's rung records
        over (it goes on as the same configuration), and close the old trial."""
        old, trial = self._resumed, self._trial
        if old is None or old.get("storage") != self.storage or old.get("study") != self.study:
            return
        trial.set_system_attr("resumed_from", old.get("trial"))
        for step, value in sorted(self._values.items()):
            trial.report(step, value)
        before = trial.study.storage.get_trial(int(old["trial_id"])).system_attrs
        for key in CONFIG_ATTRS:
            if key in before:
                trial.set_system_attr(key, before[key])
        # a finished run stays as it was stored; this one carries its curve, so medians count the run once
        trial.study.storage.set_trial_attr(int(old["trial_id"]), "resumed_as", trial.number, system=True)
        trial.study.storage.finish_trial(
            int(old["trial_id"]), TrialState.FAILED, error=f"interrupted; resumed as trial {trial.number}",
            reason="interrupted",
        )

    def _others(self) -> list[FrozenTrial]:
        """The other trials of the study, reading only what changed since the last check.

        Finished trials are read once (``Storage.read_history``, as samplers read): what a
        policy judges of them (reports, rung records, bracket, steps) is stored before they
        finish. A paused configuration's promotion is a new trial, read as such.
        """
        trial = self._trial
        if trial is None:
            return []
        if self._seen is None or self._seen.study_id != trial.study.study_id:
            self._seen = TrialHistory(trial.study.study_id)
        return [t for t in trial.study.storage.read_history(self._seen) if t.trial_id != trial.trial_id]

    def _epochs(self, trainer: pl.Trainer) -> float:
        """Epochs trained so far, with the fraction of the current epoch (from the batch hooks)."""
        done = float(trainer.current_epoch)
        batches = trainer.num_training_batches
        if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0:
            done += min(self._epoch_batches, batches) / batches
        return done

    def _history(self, trainer: pl.Trainer, check: Check) -> History:
        trial = self._trial
        load_others = self.needs_others and check is not Check.BATCH
        return History(
            values=self._values,
            mode=self._mode(),
            step=trainer.global_step,
            epoch=self._epochs(trainer),
            elapsed=self._elapsed(),
            check=check,
            number=None if trial is None else trial.number,
            attrs={} if trial is None else dict(trial.system_attrs),
            others=self._others() if load_others else (),
            start_step=self._start_step,
            can_pause=self._in_runner and self.pauses_trials,
            metric=self.monitor or "the metric",
        )

    @property
    def pauses_trials(self) -> bool:
        """Whether, in a search, the policy pauses trials to resume them later from a checkpoint
        (halving with ``promotion=True``): the search then needs checkpointing on."""
        return False

    def _read(self, trainer: pl.Trainer) -> float | None:
        """The monitored value now; ``None`` when it is missing and ``strict=False``."""
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            error = MetricNotFoundError(self.monitor, set(metrics) | set(trainer.logged_metrics),  # type: ignore[arg-type]
                                        why_no_validation(trainer) if trainer.limit_val_batches == 0 else "")
            if self.strict:
                raise error
            if self.verbose and not self._warned_missing:
                rank_zero_warn(f"{type(self).__name__}: {error} The check is skipped (strict=False).",
                               category=RuntimeWarning)
                self._warned_missing = True
            return None
        value = metrics[self.monitor]  # type: ignore[index]
        return float(value.item() if hasattr(value, "item") else value)

    def _decide_here(self, trainer: pl.Trainer, check: Check) -> tuple[Any, ...]:
        """Rank 0's part of a check: read, record, decide. Returns what every rank needs."""
        value = None
        if check is Check.REPORT:
            value = self._read(trainer)
            if value is None:
                return ("skip",)
            self._values[trainer.global_step] = value
            if self._trial is not None and not self._in_runner and self.monitor == self._trial.study.metric:
                self._trial.report(trainer.global_step, value)
        decision = self.decide(self._history(trainer, check))
        return ("decision", decision, value)

    def _check(self, trainer: pl.Trainer, check: Check) -> None:
        """Read and decide once on rank 0, agree on every rank, then act.

        Only rank 0 reads the metric: a rank that lacks it cannot raise before the
        broadcast and leave the others waiting in it; rank 0's error is broadcast and
        raised on every rank.
        """
        if self._stopped is not None or trainer.fast_dev_run:
            return
        payload: tuple[Any, ...] | None = None
        error: BaseException | None = None
        if trainer.is_global_zero:
            try:
                payload = self._decide_here(trainer, check)
            except MetricNotFoundError as err:
                error, payload = err, ("missing", err.metric, err.available)
            except Exception as err:  # noqa: BLE001 - re-raised below on every rank, after the broadcast
                error, payload = err, ("error", f"{type(err).__name__}: {err}")
        decision = payload[1] if payload is not None and payload[0] == "decision" else None
        shared = payload
        if decision is not None:  # the other ranks need the verdict, not the promotions
            shared = ("decision", (decision.decision.value, decision.reason.value, decision.describe()), payload[2])
        shared = trainer.strategy.broadcast(shared, src=0)
        kind = shared[0]
        if kind == "skip":
            return
        if kind == "missing":
            raise error if error is not None else MetricNotFoundError(shared[1], shared[2])
        if kind == "error":
            if error is not None:
                raise error
            raise FramewormError(f"the stopping policy failed on rank 0: {shared[1]}")
        if decision is None:
            verdict, reason, message = shared[1]
            decision = StopDecision(Decision(verdict), Reason(reason), message)
            if shared[2] is not None:
                self._values[trainer.global_step] = shared[2]
        self._act(trainer, decision, check)

    def _act(self, trainer: pl.Trainer, decision: StopDecision, check: Check) -> None:
        trial = self._trial if trainer.is_global_zero else None
        if trial is not None:
            for key, value in decision.attrs.items():
                trial.set_system_attr(key, value)
        if self.verbose and not decision.stops and check is Check.REPORT and trainer.is_global_zero:
            log.info(f"{type(self).__name__}: {self.monitor}={self._values[trainer.global_step]:.6g} at step "
                     f"{trainer.global_step}, best {self.best_score}; training goes on.")
        if decision.decision is Decision.PAUSE:
            if self._at_epoch_end(trainer, check):
                self._pending_pause = decision  # saved in on_train_end, once the epoch is complete
            else:
                self._save_pause(trainer, decision)
        if decision.stops:
            trainer.should_stop = True
            self._stopped = decision
            self.stopped_epoch = trainer.current_epoch
            self.stopping_reason = decision.reason
            self.stopping_reason_message = decision.describe()
            if trainer.is_global_zero:
                log.info(f"{type(self).__name__} stopped training at epoch {trainer.current_epoch}, step "
                         f"{trainer.global_step} ({decision.decision.value}): {decision.describe()}")
            if trial is not None:
                first = not isinstance(trial, ScriptTrial) or trial.stop is None  # policies sharing a run
                if first:
                    trial.set_system_attr("fw_stop", {"decision": decision.decision.value,
                                                      "reason": decision.reason.value, "step": trainer.global_step})
                if isinstance(trial, ScriptTrial) and first:
                    trial.stop = decision
                if decision.decision is Decision.FINISH:  # stored COMPLETE, with why it stopped early
                    trial.request_finish(decision.describe())
                else:
                    trial.request_prune(decision.describe())

    def _at_epoch_end(self, trainer: pl.Trainer, check: Check) -> bool:
        """Whether this check comes at the end of a training epoch (its last batch is done)."""
        if check is Check.START:
            return False
        batches = trainer.num_training_batches
        return self._epoch_check or (isinstance(batches, (int, float)) and math.isfinite(batches)
                                     and self._epoch_batches >= batches)

    def _save_pause(self, trainer: pl.Trainer, decision: StopDecision) -> None:
        path = self._pause_checkpoint_path(trainer, decision)
        self._saving_pause = True  # on_save_checkpoint keeps it loadable with weights_only=True
        try:
            trainer.save_checkpoint(path)  # every rank: saving is collective under DDP
        finally:
            self._saving_pause = False
        if self._trial is not None and trainer.is_global_zero:
            self._trial.set_system_attr("fw_checkpoint", str(path))
            steps = _epoch_steps(trainer)
            if steps is not None:  # how a promotion resuming it on steps bounds its Trainer (resume_limits)
                self._trial.set_system_attr("fw_epoch_steps", steps)

    def _trial_folder(self, trainer: pl.Trainer) -> Path:
        """The trial's folder (the runner's ``trial_dir``), else the Trainer's ``default_root_dir``."""
        if self._trial is not None and "trial_dir" in self._trial.system_attrs:
            return Path(self._trial.system_attrs["trial_dir"])
        return Path(trainer.default_root_dir)

    def _pause_checkpoint_path(self, trainer: pl.Trainer, decision: StopDecision) -> Path:
        root = self._trial_folder(trainer)
        rung = decision.attrs.get("fw_paused_at", trainer.global_step)
        name = f"paused-{rung}.ckpt"
        # Only rank 0 knows the trial dir; ranks agree on the name through the broadcast path.
        path = trainer.strategy.broadcast(str(root / "checkpoints" / name), src=0)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return Path(path)
