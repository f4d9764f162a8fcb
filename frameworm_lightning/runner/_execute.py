"""Running one trial: build the module, datamodule and Trainer, fit, store the outcome.

:class:`TrialSpec` is everything needed to run any trial of a search, and it pickles,
so a worker process (or a Ray task) can run :func:`execute_trial` exactly as the
search process does.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import os
import signal
import threading
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_helpers import is_overridden

from frameworm_lightning._trainer import why_no_validation
from frameworm_lightning.exceptions import MetricNotFoundError
from frameworm_lightning.runner._artifacts import write_trial_config
from frameworm_lightning.runner._loggers import TrialLogContext, build_loggers, finish_loggers, run_name
from frameworm_lightning.runner._rules import FATAL_ATTR
from frameworm_lightning.runner._routing import Routed, route_params
from frameworm_lightning.study import Study, Trial

__all__ = [
    "TrialCheckpoint",
    "TrialReporter",
    "TrialSpec",
    "checkpointing",
    "execute_trial",
    "read_metric",
    "resume_checkpoint",
    "resume_limits",
    "trainer_limits",
    "trial_dir",
]

# Errors that say the search is set up wrongly, when raised before the first training batch.
_CONFIG_ERRORS = (MisconfigurationException, TypeError, ValueError)

_log = logging.getLogger("frameworm_lightning")


def read_metric(trainer: pl.Trainer, metric: str, fix: str = "") -> float:
    """The current value of ``metric`` from ``trainer.callback_metrics``.

    Raises:
        MetricNotFoundError: listing the metrics that were logged (and ``fix``: what to do, if known).
    """
    metrics = trainer.callback_metrics
    if metric not in metrics:
        raise MetricNotFoundError(metric, set(metrics) | set(trainer.logged_metrics), fix)
    value = metrics[metric]
    return float(value.item() if hasattr(value, "item") else value)


class ReadAt(Enum):
    """When :class:`TrialReporter` reads the metric."""

    VALIDATION = "validation"
    EPOCH = "epoch"  # a training metric of the epoch; which of the next two is not known yet
    EPOCH_END = "epoch_end"  # in the callbacks' on_train_epoch_end
    AFTER_EPOCH = "after_epoch"  # after the module's own on_train_epoch_end


class TrialReporter(Callback):
    """Reports the monitored metric to the trial at every validation, keyed by global step.

    With ``val_check_interval < 1`` there are several validations per epoch; each is kept.
    A metric the first validation lacks (and every metric of a model with no validation
    loop) is a training metric of the epoch, reported once per epoch instead: one logged
    with ``on_epoch=True`` at the epoch's end; one the module logs in its own
    ``on_train_epoch_end`` (which Lightning calls after the callbacks') once that hook has
    run, at the next epoch's start or the end of training. A validation's stale copy of
    last epoch's value is never reported. Only global rank 0 writes, so a DDP trial
    reports once.
    """

    def __init__(self, trial: Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.trained = False  # whether a training batch started (errors before it are set-up errors)
        self.validated = False  # whether a validation ran (sanity checks aside)
        self.when: ReadAt | None = None  # None before the first validation or epoch end
        self.missing: MetricNotFoundError | None = None  # after_epoch: what was logged when the epoch ended
        self._epoch_ended = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.trained = True

    def no_validation(self, trainer: pl.Trainer) -> str:
        """Why no validation ran in this fit (the Trainer settings to blame) and the fix; ``""`` if one did."""
        return "" if self.validated else why_no_validation(trainer)

    def _report(self, trainer: pl.Trainer) -> None:
        value = read_metric(trainer, self.metric, self.no_validation(trainer))
        if trainer.is_global_zero:
            self.trial.report(trainer.global_step, value)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validated = True
        if self.when is None:
            self.when = ReadAt.VALIDATION if self.metric in trainer.callback_metrics else ReadAt.EPOCH
        if self.when is ReadAt.VALIDATION:
            self._report(trainer)

    @staticmethod
    def _validation_not_due(trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        """A validation loop exists but none was due this epoch (``check_val_every_n_epoch`` > 1): Lightning
        has not even loaded its dataloader (without a sanity check), so nothing says yet where the metric is."""
        every = trainer.check_val_every_n_epoch
        return (trainer.limit_val_batches != 0 and is_overridden("validation_step", pl_module)
                and (every is None or (trainer.current_epoch + 1) % every != 0))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.when is None and self.metric not in trainer.callback_metrics and self._validation_not_due(trainer, pl_module):
            return  # the first validation tells
        if self.when is None and not trainer.val_dataloaders and trainer.num_val_batches in ([], 0, [0]):
            self.when = ReadAt.EPOCH  # no validation loop
        if self.when is ReadAt.EPOCH:
            if self.metric in trainer.callback_metrics or not is_overridden("on_train_epoch_end", pl_module):
                self.when = ReadAt.EPOCH_END
            else:
                self.when = ReadAt.AFTER_EPOCH  # perhaps logged by the module's own on_train_epoch_end, which runs next
        if self.when is ReadAt.EPOCH_END:
            self._report(trainer)
        elif self.when is ReadAt.AFTER_EPOCH:
            self._epoch_ended = True
            metrics = trainer.callback_metrics
            self.missing = None if self.metric in metrics else MetricNotFoundError(
                self.metric, set(metrics) | set(trainer.logged_metrics), self.no_validation(trainer))

    def _report_after_epoch(self, trainer: pl.Trainer) -> None:
        if self.when is ReadAt.AFTER_EPOCH and self._epoch_ended:
            self._epoch_ended = False
            self._report(trainer)
            self.missing = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report_after_epoch(trainer)  # the module's on_train_epoch_end of the last epoch has run

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report_after_epoch(trainer)


class TrialCheckpoint(ModelCheckpoint):
    """The runner's checkpoint of a trial's best model (``checkpoints/best.ckpt``).

    A class of its own so that its ``state_key`` differs from any ``ModelCheckpoint`` the
    user adds: Lightning refuses two stateful callbacks with one key. A promoted trial's starts
    afresh in its own folder (a pause checkpoint leaves its state out, see ``StoppingCallback``).
    """


def trial_callbacks(callbacks: Sequence[Any], trainer_kwargs: Mapping[str, Any]) -> list[Any]:
    """Every callback a trial's Trainer gets from the search: ``callbacks=`` and ``trainer_kwargs``'s own
    (a list, or one callback as ``Trainer(callbacks=...)`` takes it).

    A halving policy passed either way pauses trials, so either way its scheduler must
    promote them.
    """
    own = trainer_kwargs.get("callbacks") or []
    return [*callbacks, *(own if isinstance(own, (list, tuple)) else [own])]


def trainer_limits(callbacks: Sequence[Any]) -> dict[str, Any]:
    """What the callbacks' ``trainer_limits()`` set in a trial's Trainer: how long a scheduler lets
    trials train (a halving policy's ``max_epochs``/``max_steps`` from its ``max_resource``)."""
    limits: dict[str, Any] = {}
    for cb in callbacks:
        of = getattr(cb, "trainer_limits", None)
        if callable(of):
            limits.update(of())
    return limits


def resume_limits(callbacks: Sequence[Any], trial: Trial) -> dict[str, Any]:
    """What the callbacks' ``resume_limits(attrs)`` set in place of their :func:`trainer_limits` in a trial
    that resumes a pause checkpoint (a promoted trial on steps: ``max_epochs`` instead of ``max_steps``)."""
    limits: dict[str, Any] = {}
    if resume_checkpoint(trial) is None:
        return limits
    for cb in callbacks:
        of = getattr(cb, "resume_limits", None)
        if callable(of):
            limits.update(of(dict(trial.system_attrs)))
    return limits


def checkpointing(trainer_kwargs: Mapping[str, Any]) -> bool:
    """Whether the user's Trainer arguments allow checkpoints (``enable_checkpointing`` not ``False``)."""
    return trainer_kwargs.get("enable_checkpointing", True) is not False


def _best_checkpoint(spec: TrialSpec, study: Study, directory: Path, trainer_kwargs: Mapping[str, Any],
                     user_callbacks: Sequence[Callback]) -> tuple[ModelCheckpoint | None, bool]:
    """The callback whose best checkpoint is the trial's, and whether the runner must add it.

    None when checkpoints are off (``save_checkpoints=False``, ``enable_checkpointing=False``).
    A user's ``ModelCheckpoint`` that keeps the best of the search metric in the trial's own
    folder (no ``dirpath`` of its own, which every trial would share) is used as it is;
    otherwise the runner's :class:`TrialCheckpoint` sits beside the user's.
    """
    if not spec.save_checkpoint or not checkpointing(trainer_kwargs):
        return None, False
    for cb in user_callbacks:
        if (isinstance(cb, ModelCheckpoint) and cb.monitor == study.metric and cb.mode == study.mode
                and cb.save_top_k != 0 and cb.dirpath is None):
            return cb, False
    return TrialCheckpoint(
        dirpath=directory / "checkpoints", filename="best", monitor=study.metric, mode=study.mode,
        save_top_k=1, auto_insert_metric_name=False,
    ), True


def _note_early_stop(trainer: pl.Trainer, trial: Trial) -> None:
    """A user's own ``EarlyStopping`` that stopped the fit: the trial keeps why (``request_finish``).

    Our stopping policies are ``EarlyStopping``s too, bound to the trial; they have said so themselves.
    """
    if not trainer.should_stop:
        return
    for cb in trainer.early_stopping_callbacks:
        message = cb.stopping_reason_message
        if message and not callable(getattr(cb, "bind_trial", None)):
            trial.request_finish(f"{type(cb).__name__}: {message.removesuffix(' Signaling Trainer to stop.')}")


def _fatal(err: BaseException, reporter: TrialReporter | None) -> dict[str, Any] | None:
    """What makes ``err`` a failure every trial would share: a metric never logged, or a set-up error."""
    if (isinstance(err, MisconfigurationException) and reporter is not None and reporter.missing is not None
            and reporter.metric in str(err)):
        err = reporter.missing  # a ModelCheckpoint on the metric found it missing after the epoch, before we did
    if isinstance(err, MetricNotFoundError):
        return {"kind": "metric", "metric": err.metric, "available": err.available, "fix": err.fix}
    if isinstance(err, _CONFIG_ERRORS) and (reporter is None or not reporter.trained):
        return {"kind": "config", "error": f"{type(err).__name__}: {err}"}
    return None


def trial_dir(root_dir: str | os.PathLike[str], study_name: str, number: int) -> Path:
    """``root_dir/<study>/trial_000<n>``: the trial's logs, config and checkpoint."""
    return Path(root_dir) / study_name / run_name(number)


@dataclass
class TrialSpec:
    """How to build and judge any trial of a search (picklable).

    Attributes:
        module_cls: the LightningModule class.
        datamodule: a LightningDataModule class (``data.*`` keys configure it), an
            instance, or ``None`` when the module supplies its own dataloaders.
        model_kwargs / data_kwargs / trainer_kwargs: the base arguments trial params
            are applied onto.
        objective: ``"last"`` (the value at the end of training) or ``"best"`` (the best
            reported value) of the study's metric (the trial's ``study.metric`` and
            ``study.mode``: the study holds them, the spec does not).
        callbacks: extra callbacks, deep-copied for each trial; a callback with a
            ``bind_trial(trial)`` method is given the live trial (stopping policies).
        callback_factories: callables ``f(trial) -> Callback`` run for each trial.
        build_trial: ``f(trial) -> (module, datamodule)`` that builds a trial's module and
            datamodule in place of ``module_cls`` and ``datamodule`` (``SearchRunner.fit``).
        loggers: each trial's Lightning loggers, built for it by name, class or factory
            (see ``runner/_loggers.py``); ``None`` is a CSVLogger. A ``logger`` in
            ``trainer_kwargs`` takes precedence.
        quiet: no Lightning info logs. Progress bars and model summaries are off in every
            trial unless ``trainer_kwargs`` turn them on.
    """

    module_cls: type[pl.LightningModule]
    datamodule: Any = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    trainer_kwargs: dict[str, Any] = field(default_factory=dict)
    objective: str = "last"
    root_dir: str = "runs"
    study_name: str = "study"
    seed: int | None = 0
    callbacks: Sequence[Callback] = ()
    callback_factories: Sequence[Callable[[Trial], Callback]] = ()
    save_checkpoint: bool = True
    quiet: bool = False
    loggers: Any = None
    build_trial: Callable[[Trial], tuple[pl.LightningModule, Any]] | None = None

    def build(self, params: Mapping[str, Any], trial: Trial | None = None,
              ) -> tuple[Routed, pl.LightningModule, pl.LightningDataModule | None]:
        """A run of ``params``: the routed arguments, the module and the datamodule (``trial``'s, or
        ``SearchResult.retrain_best``'s). A datamodule class is built with the ``data.*`` params; an
        instance is copied, so runs never share its state. A trial's ``build_trial`` builds both."""
        routed = route_params(params, self.model_kwargs, self.data_kwargs, self.trainer_kwargs)
        if self.build_trial is not None and trial is not None:
            return routed, *self.build_trial(trial)
        return routed, self.module_cls(**routed.model), _build_datamodule(self, routed.data)


_shown_warnings: set[tuple[type[Warning], str]] = set()  # the distinct warnings trials of this process showed


def _show_once(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that passes each distinct (category, message) to ``show`` once."""
    def show_once(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        key = (category, str(message))
        if key not in _shown_warnings:
            _shown_warnings.add(key)
            show(message, category, *args, **kwargs)
    return show_once


@contextmanager
def _trial_output(quiet: bool) -> Iterator[None]:
    """What a trial prints: the runner prints one line per trial, so Lightning's per-trial
    info lines (accelerator, tips, why ``fit`` stopped) are hidden, and each distinct
    warning shows once per process, not once per trial (the warnings module forgets what
    it showed whenever the filters change, as they do at this ``catch_warnings`` each
    trial). ``quiet`` also hides two warnings every small trial raises.
    """
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters on exit
            warnings.showwarning = _show_once(warnings.showwarning)
            if quiet:
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
                warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _build_datamodule(spec: TrialSpec, data_kwargs: Mapping[str, Any]) -> pl.LightningDataModule | None:
    dm = spec.datamodule
    if dm is None:
        return None
    if inspect.isclass(dm):
        return dm(**data_kwargs)
    return copy.deepcopy(dm) if not data_kwargs else dm


def _objective(trial: Trial, trainer: pl.Trainer, spec: TrialSpec, reporter: TrialReporter) -> float:
    if spec.objective == "best":
        finite = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
        if finite:
            return min(finite) if trial.study.mode == "min" else max(finite)
        if trial.intermediate_values:
            return float("nan")
    return read_metric(trainer, trial.study.metric, reporter.no_validation(trainer))


def resume_checkpoint(trial: Trial) -> str | None:
    """The checkpoint a trial continues from (a promoted trial resumes its parent), if it exists."""
    path = trial.system_attrs.get("resume_checkpoint")
    return str(path) if path and Path(path).is_file() else None


def _fit(trainer: pl.Trainer, model: pl.LightningModule, datamodule: Any, ckpt_path: str | None) -> None:
    """``trainer.fit``, with Lightning's handling of Ctrl+C undone.

    On ``KeyboardInterrupt`` Lightning ignores SIGINT from then on and calls
    ``sys.exit(1)``: we turn that back into ``KeyboardInterrupt`` (so the trial is stored
    as interrupted and the search stops) and restore the caller's SIGINT handler.
    """
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    try:
        # The checkpoint's path comes from storage: tensors only, never pickled code (docs/trust.md).
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and handler is not None and signal.getsignal(signal.SIGINT) is not handler:
            signal.signal(signal.SIGINT, handler)


def execute_trial(spec: TrialSpec, trial: Trial) -> None:
    """Run one claimed trial to its end and store the outcome in the study.

    The trial is stored ``COMPLETE`` with its objective, ``PRUNED`` if a stopping
    callback asked for it, or ``FAILED`` with the traceback (an exception, a missing
    metric, a NaN/inf objective); a missing metric or a set-up error before the first
    training batch is marked :data:`FATAL_ATTR` (see ``runner/_rules.py``).
    ``KeyboardInterrupt`` and Lightning's ``SIGTERMException`` store it as interrupted
    (its params run again first on resume) and are re-raised.
    """
    directory = trial_dir(spec.root_dir, spec.study_name, trial.number)
    directory.mkdir(parents=True, exist_ok=True)
    trial.set_system_attr("trial_dir", str(directory))
    reporter: TrialReporter | None = None
    loggers: list[Any] = []
    try:
        with _trial_output(spec.quiet):
            if spec.seed is not None:
                pl.seed_everything(spec.seed + trial.number, workers=True, verbose=False)
            routed, model, datamodule = spec.build(trial.params, trial)
            trainer_kwargs = dict(routed.trainer)
            user_callbacks = [copy.deepcopy(cb) for cb in spec.callbacks]
            user_callbacks += [factory(trial) for factory in spec.callback_factories]
            user_callbacks += [copy.deepcopy(c) for c in trial_callbacks((), trainer_kwargs)]
            trainer_kwargs.pop("callbacks", None)
            reporter = TrialReporter(trial, trial.study.metric)
            checkpoint, ours = _best_checkpoint(spec, trial.study, directory, trainer_kwargs, user_callbacks)
            callbacks: list[Callback] = [reporter, *([checkpoint] if ours and checkpoint else []), *user_callbacks]
            for cb in callbacks:
                bind = getattr(cb, "bind_trial", None)
                if callable(bind):
                    bind(trial)
            limits = trainer_limits(callbacks)  # what the trial trains with, as config.yaml records it
            trainer_kwargs.update(limits)
            trainer_kwargs.update(resume_limits(callbacks, trial))
            trainer_kwargs["logger"] = build_loggers(trainer_kwargs.get("logger", spec.loggers),
                                                     TrialLogContext(spec.study_name, trial.number, spec.root_dir))
            trainer_kwargs.setdefault("default_root_dir", str(directory))
            # Quiet inside a search unless the user asks: one summary and one bar per trial is noise.
            trainer_kwargs.setdefault("enable_progress_bar", False)
            trainer_kwargs.setdefault("enable_model_summary", False)
            if not spec.save_checkpoint and not any(isinstance(cb, ModelCheckpoint) for cb in user_callbacks):
                trainer_kwargs.setdefault("enable_checkpointing", False)  # nor Lightning's default one
            trainer = pl.Trainer(callbacks=callbacks, **trainer_kwargs)
            loggers = list(trainer.loggers)
            for logger in trainer.loggers:
                logger.log_hyperparams({**trial.params, "trial": trial.number, "study": spec.study_name})
            # after the loggers made the folder theirs; the limits are what the trial trained with too
            write_trial_config(directory, spec, trial, replace(routed, trainer={**routed.trainer, **limits}))
            _fit(trainer, model, datamodule, resume_checkpoint(trial))
            if checkpoint is not None and checkpoint.best_model_path:
                # absolute: a user's ModelCheckpoint under a relative root_dir has a path relative to this folder
                trial.set_system_attr("checkpoint_path", os.path.abspath(checkpoint.best_model_path))
            if trial.should_prune():
                trial.prune(trial.prune_reason)
                return
            _note_early_stop(trainer, trial)
            value = _objective(trial, trainer, spec, reporter)
        trial.complete(value)
    except KeyboardInterrupt:
        trial.interrupt("the search was stopped by SIGINT")
        raise
    except SIGTERMException:
        # Lightning's own SIGTERM path (synchronised across DDP ranks): stop the search, never swallow it.
        trial.interrupt("the search was stopped by SIGTERM")
        raise
    except SystemExit as exit_:
        # sys.exit() in user code ends this trial, not the search.
        trial.fail(traceback.format_exc(), reason=f"the trial called sys.exit({exit_.code!r})")
    except Exception as err:  # noqa: BLE001 - any error of user code fails this trial only
        fatal = _fatal(err, reporter)
        if fatal is not None:
            trial.set_system_attr(FATAL_ATTR, fatal)
        trial.fail(traceback.format_exc())
    finally:
        finish_loggers(loggers, trial.snapshot(), spec.study_name)  # the stored outcome, to the trackers
