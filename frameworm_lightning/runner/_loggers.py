"""Per-trial Lightning loggers: each trial gets its own logger instances, named after it.

A search's logger configuration (``SearchRunner(loggers=...)`` or a ``logger`` in
``trainer_kwargs``) is a recipe, not an instance, so that each trial logs to its own run:

* ``None`` or ``True``: a :class:`~lightning.pytorch.loggers.CSVLogger` (the default);
* ``False``: no logger;
* a name: ``"csv"``, ``"tensorboard"`` (or ``"tb"``), ``"mlflow"``, ``"wandb"``;
* a :class:`~lightning.pytorch.loggers.Logger` subclass, or a ``functools.partial`` of one
  carrying your own settings (``partial(WandbLogger, project="gan")``; the partial's
  arguments win over ours);
* any other callable ``f(context: TrialLogContext) -> Logger``;
* a ``Logger`` instance, used as it is (every trial then shares it);
* a list of any of these.

Trial ``n`` of study ``s`` is named as Lightning's loggers expect, with the number
zero-padded so runs sort in trial order (``trial_0002`` before ``trial_0010``): CSV and
TensorBoard write to ``root_dir/s/trial_000n`` (``name=s``, ``version="trial_000n"``,
the trial's own directory); MLflow uses the experiment ``s`` and the run ``trial_000n``
with the tags ``frameworm.study``/``frameworm.trial``; Weights & Biases the run
``s/trial_000n`` in the group ``s`` with the tags ``s`` and ``trial_000n``. The trial's
params are logged as hyperparameters by the runner.

When the trial has ended, :func:`finish_loggers` logs its outcome to every logger that
can compare runs: the objective (``search/objective``), the global step where it
stopped if pruned (``search/pruned_step``) and its final state. TensorBoard gets them as
the metrics of its HPARAMS tab (written once, at the end, with the params and a
``state`` hparam: never the ``hp_metric = -1`` placeholder); MLflow as metrics and the
tags ``frameworm.state``/``frameworm.study``/``frameworm.trial``; W&B in the run summary (with
``state``). MLflow and W&B get only the metrics a trial has (no NaN for a missing one).

Example:
    >>> ctx = TrialLogContext(study_name="demo", number=3, root_dir="runs")
    >>> logger = build_loggers("csv", ctx)[0]
    >>> logger.name, logger.version
    ('demo', 'trial_0003')
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["LOGGER_NAMES", "OUTCOME_METRICS", "TrialLogContext", "build_loggers", "check_loggers", "finish_loggers",
           "run_name"]

# The per-trial metrics a tracker compares runs by (TensorBoard's HPARAMS tab, MLflow's table).
OUTCOME_METRICS = ("search/objective", "search/pruned_step")


def run_name(number: int) -> str:
    """Trial ``number``'s run and folder name, zero-padded so names sort in trial order.

    Example:
        >>> [run_name(n) for n in (2, 10, 12345)]
        ['trial_0002', 'trial_0010', 'trial_12345']
    """
    return f"trial_{number:04d}"

# name -> (the Logger class, the module it needs)
LOGGER_NAMES: dict[str, tuple[type[Logger], str | None]] = {
    "csv": (CSVLogger, None),
    "tensorboard": (TensorBoardLogger, "tensorboard"),
    "tb": (TensorBoardLogger, "tensorboard"),
    "mlflow": (MLFlowLogger, "mlflow"),
    "wandb": (WandbLogger, "wandb"),
}


@dataclass(frozen=True)
class TrialLogContext:
    """What a logger factory knows about the trial it logs."""

    study_name: str
    number: int
    root_dir: str

    @property
    def version(self) -> str:
        return run_name(self.number)

    @property
    def trial_dir(self) -> str:
        return str(Path(self.root_dir) / self.study_name / self.version)

    @property
    def tags(self) -> dict[str, str]:
        return {"frameworm.study": self.study_name, "frameworm.trial": str(self.number)}


def _items(config: Any) -> list[Any]:
    return list(config) if isinstance(config, (list, tuple)) else [config]


def _is_logger_class(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, Logger)


def check_loggers(config: Any) -> None:
    """Raise ``ValueError`` for a configuration :func:`build_loggers` cannot use, and
    ``ModuleNotFoundError`` for a named logger whose package is not installed."""
    if config is None or isinstance(config, bool):
        return
    for item in _items(config):
        if isinstance(item, str):
            if item.lower() not in LOGGER_NAMES:
                raise ValueError(f"unknown logger {item!r}; use one of {', '.join(LOGGER_NAMES)}, "
                                 "a Logger class, or a factory.")
            module = LOGGER_NAMES[item.lower()][1]
            if module is not None and importlib.util.find_spec(module) is None and not (
                module == "tensorboard" and importlib.util.find_spec("tensorboardX") is not None
            ):
                raise ModuleNotFoundError(f"logger {item!r} needs the package {module!r}: pip install {module}.",
                                          name=module)
        elif not (isinstance(item, Logger) or _is_logger_class(item) or callable(item)):
            raise ValueError(f"a logger must be a name, a Logger class or instance, or a factory, but got {item!r}.")


def _standard_kwargs(cls: type[Logger], ctx: TrialLogContext) -> dict[str, Any]:
    """The naming arguments of ``cls`` for this trial."""
    if issubclass(cls, TensorBoardLogger):
        # No hp_metric placeholder: finish_loggers writes the hparams once, with the outcome.
        return {"save_dir": ctx.root_dir, "name": ctx.study_name, "version": ctx.version, "default_hp_metric": False}
    if issubclass(cls, CSVLogger):
        return {"save_dir": ctx.root_dir, "name": ctx.study_name, "version": ctx.version}
    if issubclass(cls, MLFlowLogger):
        return {"experiment_name": ctx.study_name, "run_name": ctx.version, "tags": ctx.tags}
    if issubclass(cls, WandbLogger):
        return {"name": f"{ctx.study_name}/{ctx.version}", "group": ctx.study_name,
                "tags": [ctx.study_name, ctx.version], "save_dir": ctx.trial_dir}
    accepted = set(inspect.signature(cls.__init__).parameters)
    ours = {"save_dir": ctx.root_dir, "name": ctx.study_name, "version": ctx.version}
    return {k: v for k, v in ours.items() if k in accepted}


def _finish_wandb_run() -> None:
    # Lightning's WandbLogger attaches to a run still in progress instead of starting
    # one, so a trial must not leave its run open for the next.
    if importlib.util.find_spec("wandb") is None:
        return
    import wandb  # noqa: PLC0415 - optional

    if wandb.run is not None:
        wandb.finish()


def _build(cls: type[Logger], ctx: TrialLogContext, args: Sequence[Any] = (), overrides: dict[str, Any] | None = None
           ) -> Logger:
    if issubclass(cls, WandbLogger):
        _finish_wandb_run()
    return cls(*args, **{**_standard_kwargs(cls, ctx), **(overrides or {})})


def _build_one(item: Any, ctx: TrialLogContext) -> list[Logger]:
    if isinstance(item, Logger):
        return [item]
    if isinstance(item, str):
        return [_build(LOGGER_NAMES[item.lower()][0], ctx)]
    if _is_logger_class(item):
        return [_build(item, ctx)]
    if isinstance(item, functools.partial) and _is_logger_class(item.func):
        return [_build(item.func, ctx, item.args, dict(item.keywords))]
    made = item(ctx)
    return [made] if isinstance(made, Logger) else list(made or [])


def build_loggers(config: Any, ctx: TrialLogContext) -> list[Logger] | bool:
    """The loggers of one trial (``False`` for none); see the module docstring for ``config``."""
    if config is False:
        return False
    if config is None or config is True:
        config = "csv"
    check_loggers(config)
    loggers: list[Logger] = []
    for item in _items(config):
        loggers += _build_one(item, ctx)
    return loggers


def outcome(trial: FrozenTrial) -> dict[str, float]:
    """The outcome metrics of a finished trial (NaN where there is none)."""
    value = trial.value if trial.value is not None else math.nan
    pruned = trial.last_step if trial.state is TrialState.PRUNED and trial.last_step is not None else math.nan
    return {"search/objective": float(value), "search/pruned_step": float(pruned)}


def _log_outcome(logger: Logger, trial: FrozenTrial, study_name: str) -> None:
    metrics = outcome(trial)
    if isinstance(logger, TensorBoardLogger):
        # The HPARAMS tab keeps the first hparams record of a run, so it is written here,
        # once, with the params (kept by log_hyperparams), the state and the metrics.
        params = {**dict(logger.hparams), "state": trial.state.value, "trial": trial.number, "study": study_name}
        logger.log_hyperparams(params, metrics=metrics)
        logger.experiment.flush()
        logger.experiment.close()
    elif isinstance(logger, MLFlowLogger):
        client, run_id = logger.experiment, logger.run_id
        for key, val in metrics.items():
            if math.isfinite(val):
                client.log_metric(run_id, key, val)
        for key, val in {"frameworm.state": trial.state.value, "frameworm.study": study_name,
                         "frameworm.trial": str(trial.number)}.items():
            client.set_tag(run_id, key, val)
        if trial.reason:
            client.set_tag(run_id, "frameworm.reason", trial.reason[:5000])
    elif isinstance(logger, WandbLogger):  # W&B keeps a NaN as null: only the outcome metrics there are
        finite = {key: val for key, val in metrics.items() if math.isfinite(val)}
        logger.experiment.summary.update({**finite, "state": trial.state.value})


def finish_loggers(loggers: Sequence[Logger], trial: FrozenTrial, study_name: str) -> None:
    """Log the finished ``trial``'s outcome (see the module docstring), then end what must
    not outlive the trial (a Weights & Biases run).

    A tracker that cannot take the outcome (a server gone away) is a warning: the trial
    is already stored, and the search goes on.
    """
    for logger in loggers:
        try:
            _log_outcome(logger, trial, study_name)
        except Exception as err:  # noqa: BLE001 - the trial is stored; a tracker's failure must not end the search
            warnings.warn(f"could not log trial {trial.number}'s outcome to {type(logger).__name__}: {err}",
                          RuntimeWarning, stacklevel=2)
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        _finish_wandb_run()
