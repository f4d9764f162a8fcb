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

Trial ``n`` of study ``s`` is named as Lightning's loggers expect: CSV and TensorBoard
write to ``root_dir/s/trial_n`` (``name=s``, ``version="trial_n"``, the trial's own
directory); MLflow uses the experiment ``s`` and the run ``trial_n`` with the tags
``frameworm.study``/``frameworm.trial``; Weights & Biases the run ``s/trial_n`` in the
group ``s`` with the tags ``s`` and ``trial_n``. The trial's params are logged as
hyperparameters by the runner.

Example:
    >>> ctx = TrialLogContext(study_name="demo", number=3, root_dir="runs")
    >>> logger = build_loggers("csv", ctx)[0]
    >>> logger.name, logger.version
    ('demo', 'trial_3')
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

__all__ = ["LOGGER_NAMES", "TrialLogContext", "build_loggers", "check_loggers", "close_loggers"]

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
        return f"trial_{self.number}"

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
    if issubclass(cls, (CSVLogger, TensorBoardLogger)):
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


def close_loggers(loggers: Sequence[Logger]) -> None:
    """End what must not outlive the trial (a Weights & Biases run)."""
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        _finish_wandb_run()
