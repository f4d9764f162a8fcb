"""The ``search:`` section of a config, and its translation into ``SearchRunner`` terms.

:class:`SearchConfig` is what jsonargparse parses (so ``--print_config`` shows it, every
field has a ``--search.<field>`` flag, and ``sampler`` / ``stopping`` resolve
``class_path`` like any LightningCLI class argument). :class:`SearchPlan` is the
validated search, built from the parsed config before any class is instantiated.

Space keys are written as LightningCLI spells config entries and are mapped onto the
runner's routing (``runner_key``)::

    model.init_args.lr        ->  model.lr       (the LightningModule's ``lr`` argument)
    model.lr                  ->  model.lr       (jsonargparse's short form, accepted too)
    data.init_args.batch_size ->  data.batch_size
    trainer.max_epochs        ->  trainer.max_epochs
    optimizer.init_args.lr    ->  optimizer.lr   (LightningCLI's optimizer: section; lr_scheduler: alike)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import lightning.pytorch as pl
from jsonargparse import Namespace
from jsonargparse.typing import PositiveFloat, PositiveInt
from lightning.pytorch.callbacks import Callback

from frameworm_lightning.exceptions import ConfigKeyError, SpaceError
from frameworm_lightning.runner._routing import CALLBACK_TARGETS, TARGETS, init_arguments
from frameworm_lightning.samplers import Sampler
from frameworm_lightning.space import SearchSpace

__all__ = [
    "SearchConfig",
    "SearchPlan",
    "build_plan",
    "config_key",
    "dotted_key",
    "runner_key",
    "section_class",
    "trial_fit_config",
]

# The sections given as class_path/init_args; the optimizer and LR scheduler are LightningCLI's.
_CLASS_TARGETS = ("model", "data", *CALLBACK_TARGETS)
_HEADS = (*TARGETS, *CALLBACK_TARGETS)


@dataclass
class SearchConfig:
    """The ``search:`` section: what to optimise, over which space, with which sampler.

    Args:
        metric: the logged metric to optimise (``self.log(metric, ...)`` in the module).
        mode: ``min`` or ``max``.
        space: config keys to dimensions, e.g. ``model.init_args.lr: {type: real, low: 1e-4,
            high: 1e-2, log: true}``, ``model.init_args.latent_dim: [8, 16, 32]`` or
            ``{type: integer, low: 1, high: 4}``; ``data.init_args.*`` and ``trainer.*`` keys
            configure the datamodule and the Trainer.
        n_trials: the study's trial budget, counting stored trials; null runs a grid to its end.
        sampler: a frameworm_lightning Sampler (``class_path``/``init_args``); default
            RandomSampler(seed).
        stopping: stopping policies (Lightning callbacks) added to every trial.
        storage: database URL, e.g. ``sqlite:///runs/vae.db``; default ``<root_dir>/frameworm.db``.
            Running the same search again resumes the study stored there.
        study_name: the study's name in storage; default the model class name.
        root_dir: trials write logs and checkpoints to ``<root_dir>/<study>/trial_<n>/``.
        seed: trial n runs under ``seed_everything(seed + n)``; null for no seeding.
        objective: ``last`` (value at the end of training) or ``best`` (best value reported).
        n_jobs: trials run at once, each in its own process.
        retry_failed: on resume, run again the trials that failed by their own error.
        allow_sampler_change: resume a study another sampler (or grid resolution) searched.
        stop_on_error: end the search at the first failed trial.
        enqueue: configurations (space keys to values) to evaluate first.
        executor: where trials run: ``auto``, ``inline`` (this process), ``process`` (a
            worker process each) or ``ray``.
        gpus_per_trial: GPUs each trial gets (``0.5``: two trials per GPU; ``2``: a DDP
            trial); null leaves CUDA_VISIBLE_DEVICES alone.
        trial_timeout: seconds after which a trial is killed and stored FAILED.
        loggers: each trial's loggers: ``csv`` (default), ``tensorboard``, ``mlflow``,
            ``wandb``, a list of them, or false.
        keep_checkpoints: ``all``, or ``best`` to keep only the best trial's checkpoint.
    """

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    space: dict[str, Any] = field(default_factory=dict)
    n_trials: Optional[PositiveInt] = 20
    sampler: Optional[Sampler] = None
    stopping: list[Callback] = field(default_factory=list)
    storage: Optional[str] = None
    study_name: Optional[str] = None
    root_dir: str = "runs"
    seed: Optional[int] = 0
    objective: Literal["last", "best"] = "last"
    n_jobs: PositiveInt = 1
    retry_failed: bool = False
    allow_sampler_change: bool = False
    stop_on_error: bool = False
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    executor: Literal["auto", "inline", "process", "ray"] = "auto"
    gpus_per_trial: Optional[float] = None
    trial_timeout: Optional[PositiveFloat] = None
    loggers: Union[bool, str, list[str], None] = None
    keep_checkpoints: Literal["all", "best"] = "all"


# Keys ---------------------------------------------------------------------------------
def runner_key(key: str) -> str:
    """The runner's routing key of a config key: ``model.init_args.lr`` -> ``model.lr``."""
    parts = key.split(".")
    if len(parts) >= 3 and parts[0] in _CLASS_TARGETS and parts[1] == "init_args":
        del parts[1]
    return ".".join(parts)


def config_key(key: str) -> str:
    """The config key of a runner key (inverse of :func:`runner_key`): ``model.lr`` -> ``model.init_args.lr``."""
    head, _, rest = key.partition(".")
    if head not in _HEADS or not rest:
        head, rest = "model", key
    return f"{head}.init_args.{rest}" if head in _CLASS_TARGETS else f"{head}.{rest}"


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def section_class(section: Any) -> type | None:
    """The class a parsed or dumped ``class_path``/``init_args`` section names; ``None`` for none."""
    if isinstance(section, Namespace):
        section = section.as_dict()
    if not isinstance(section, Mapping) or not section.get("class_path"):
        return None
    return _import(section["class_path"])


def _class_and_kwargs(section: Any, fixed: type | None) -> tuple[type | None, dict[str, Any]]:
    """The class and init arguments of a parsed ``model:``/``data:`` section.

    ``fixed`` is the class a CLI was built with (``SearchCLI(MyModule)``), whose section
    holds the arguments directly; ``None`` when the config names it by ``class_path``.
    """
    if section is None:
        return fixed, {}
    data = section.as_dict() if isinstance(section, Namespace) else dict(section)
    if "class_path" not in data:
        return fixed, data
    return _import(data["class_path"]), dict(data.get("init_args") or {})


# The first argument of the optimizer and the LR scheduler, which LightningCLI passes itself.
_BOUND = {"optimizer": "params", "lr_scheduler": "optimizer"}


def _arguments(target: str, cls: type) -> tuple[set[str], bool]:
    names, var_kw = init_arguments(cls)
    return names - {_BOUND.get(target)}, var_kw


def _valid_keys(target: str, cls: type | None) -> list[str]:
    if cls is None:
        return []
    names, _ = _arguments(target, cls)
    return [config_key(f"{target}.{n}") for n in sorted(names)]


def check_space_keys(keys: list[str], targets: Mapping[str, type | None]) -> None:
    """Raise :class:`ConfigKeyError` for a key no target accepts, listing the valid keys."""
    for key in keys:
        head, _, rest = runner_key(key).partition(".")
        if head not in _HEADS or not rest:
            raise ConfigKeyError(
                f"search.space key {key!r} names no config section; write it as {config_key(runner_key(key))!r} "
                "(model.init_args.*, data.init_args.*, trainer.*, optimizer.init_args.* or lr_scheduler.init_args.*)."
            )
        cls = targets.get(head)
        if cls is None:
            raise ConfigKeyError(
                f"search.space key {key!r}: the config has no {head} class to configure; "
                f"add {head}: {{class_path: ...}} to the config or drop the key."
            )
        arg = rest.split(".", 1)[0]
        names, var_kw = _arguments(head, cls)
        if arg not in names and (not var_kw or arg == _BOUND.get(head)):
            if head == "trainer":
                valid = "any Trainer argument, e.g. trainer.max_epochs, trainer.gradient_clip_val"
            else:
                valid = ", ".join(
                    k for t in _CLASS_TARGETS for k in _valid_keys(t, targets.get(t))
                ) + ", or trainer.<Trainer argument>"
            raise ConfigKeyError(
                f"unknown search.space key {key!r}: {cls.__name__} has no argument {arg!r}. Valid keys: {valid}."
            )


# The plan -----------------------------------------------------------------------------
@dataclass
class SearchPlan:
    """A validated search: the classes, base arguments, space and where the study lives."""

    module_cls: type[pl.LightningModule]
    datamodule_cls: type[pl.LightningDataModule] | None
    model_kwargs: dict[str, Any]
    data_kwargs: dict[str, Any]
    space: SearchSpace | None  # runner keys; None when only reading a study stored without one
    enqueue: list[dict[str, Any]]
    study_name: str
    storage: str
    sections: dict[str, type] = field(default_factory=dict)  # the optimizer: / lr_scheduler: classes


def _default_storage(root_dir: str) -> str:
    return f"sqlite:///{Path(root_dir).resolve() / 'frameworm.db'}"


def build_plan(config: Namespace, model_class: type | None = None, datamodule_class: type | None = None,
               *, reading: bool = False, section_classes: Mapping[str, type] | None = None) -> SearchPlan:
    """Validate the ``search:`` section of a parsed (not yet instantiated) subcommand config.

    ``model_class`` / ``datamodule_class`` are the classes the CLI was built with, if any;
    ``section_classes`` the classes of ``optimizer:`` / ``lr_scheduler:`` groups given one
    class (``parser.add_optimizer_args(torch.optim.Adam)``), whose sections name none.
    ``reading``: the subcommand only reads a stored study (``trials``, ``plot``), which may
    have been recorded by stopping callbacks without a space: no space or model needed
    (``space`` is then ``None``), given ``search.study_name``.

    Raises:
        SpaceError: a bad dimension spec or an empty space (naming the key).
        ConfigKeyError: a space key that configures nothing (listing the valid keys).
    """
    search = config.search
    module_cls, model_kwargs = _class_and_kwargs(config.get("model"), model_class)
    data_cls, data_kwargs = _class_and_kwargs(config.get("data"), datamodule_class)
    if module_cls is None and not (reading and search.study_name):
        raise ConfigKeyError("a search needs a model: add model: {class_path: my_package.MyModule} to the config.")
    raw = search.space.as_dict() if isinstance(search.space, Namespace) else dict(search.space or {})
    if not raw and reading:
        return SearchPlan(module_cls, data_cls, model_kwargs, data_kwargs, None, [],  # type: ignore[arg-type]
                          study_name=search.study_name or module_cls.__name__,  # type: ignore[union-attr]
                          storage=search.storage or _default_storage(search.root_dir))
    if not raw:
        raise SpaceError(
            "search.space is empty: add at least one dimension, e.g. "
            "model.init_args.lr: {type: real, low: 1.0e-4, high: 1.0e-2, log: true}."
        )
    given = dict(section_classes or {})
    sections = {name: section_class(config.get(name)) or given.get(name) for name in CALLBACK_TARGETS}
    targets = {"model": module_cls, "data": data_cls, "trainer": pl.Trainer, **sections}
    check_space_keys(list(raw), targets)
    dims = SearchSpace(raw)  # errors name the key as the user wrote it
    rekeyed: dict[str, Any] = {}
    for key, dim in dims.items():
        rk = runner_key(key)
        if rk in rekeyed:
            raise SpaceError(f"search.space sets {config_key(rk)!r} twice (as {key!r} and in another spelling).")
        rekeyed[rk] = dim
    space = SearchSpace(rekeyed)
    enqueue = [{runner_key(k): v for k, v in dict(params).items()} for params in (search.enqueue or [])]
    for params in enqueue:
        space.validate(params)
    return SearchPlan(
        module_cls=module_cls,  # type: ignore[arg-type]
        datamodule_cls=data_cls,  # type: ignore[arg-type]
        model_kwargs=model_kwargs,
        data_kwargs=data_kwargs,
        space=space,
        enqueue=enqueue,
        study_name=search.study_name or module_cls.__name__,
        storage=search.storage or _default_storage(search.root_dir),
        sections={name: cls for name, cls in sections.items() if cls is not None},
    )


def trainer_overrides(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The instantiated ``trainer:`` section, less the arguments left at the Trainer's defaults.

    LightningCLI fills every Trainer argument; passing only the changed ones lets the
    runner add its own per-trial logger and checkpointing where the user set none.
    """
    params = inspect.signature(pl.Trainer.__init__).parameters
    out: dict[str, Any] = {}
    for name, value in trainer.items():
        param = params.get(name)
        if param is None or param.default is inspect.Parameter.empty:
            out[name] = value
            continue
        try:
            same = bool(value == param.default)
        except Exception:  # noqa: BLE001 - objects whose == is not a bool
            same = False
        if not same:
            out[name] = value
    return out


# best -> fit ---------------------------------------------------------------------------
def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    node = config
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def trial_fit_config(dump: Mapping[str, Any], params: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    """A trial's config as LightningCLI's ``fit`` takes it: the dumped config with ``params`` applied.

    Trainer arguments left at their defaults and empty sections are left out.

    Args:
        dump: the subcommand's config as a plain dict (``search`` and the subcommand's own
            options already removed).
        params: the trial's params, runner keys.
        seed: the trial's seed (``search.seed + number``), set as ``seed_everything``; ``None``
            (``search.seed: null``) sets ``seed_everything: false``.
    """
    config: dict[str, Any] = {k: v for k, v in _deep_copy(dict(dump)).items() if v is not None}
    if isinstance(config.get("trainer"), Mapping):
        config["trainer"] = trainer_overrides(config["trainer"])  # the arguments the user set
    for key, value in params.items():
        _set(config, dotted_key(config, key), list(value) if isinstance(value, tuple) else value)
    config["seed_everything"] = False if seed is None else seed
    return config


def dotted_key(config: Mapping[str, Any], key: str) -> str:
    """Where the runner key ``key`` sits in a dumped config: :func:`config_key`, less ``init_args``
    in the section of a class the CLI was built with (``SearchCLI(MyModule)``: ``model.lr``)."""
    dotted = config_key(key)
    head = dotted.split(".", 1)[0]
    section = config.get(head)
    if head in _CLASS_TARGETS and isinstance(section, Mapping) and "class_path" not in section:
        dotted = dotted.replace(".init_args.", ".", 1)
    return dotted


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
