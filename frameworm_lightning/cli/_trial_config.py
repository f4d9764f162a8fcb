"""What LightningCLI does for ``fit``, done for each trial of a ``frameworm-search`` search.

A trial's config is the search's config with the trial's params set and
``seed_everything`` set to the trial's seed (``search.seed + number``; ``false`` when
``search.seed`` is null). Each trial is built from it by the search's own CLI class,
called again as ``MyCLI(args=config, run=False)`` in the trial's process
(:class:`TrialBuild`, which the runner calls in place of building the module itself).
So LightningCLI does for the trial exactly what ``fit -c config.yaml`` does: it parses the
config (applying ``parser.link_arguments`` links of ``apply_on="parse"``), seeds, runs the
CLI's ``before_instantiate_classes``, instantiates the classes (applying ``apply_on=
"instantiate"`` links) and makes the ``optimizer:``/``lr_scheduler:`` sections the module's
``configure_optimizers`` (through the CLI's ``configure_optimizers``, overrides included).

:class:`TrialConfig` is a Lightning callback the CLI gives every trial: it writes the
trial's config as ``config.yaml`` in the trial's folder, the file LightningCLI's
``SaveConfigCallback`` writes for ``fit`` (link targets left out, as there), so that
``frameworm-search fit -c runs/<study>/trial_<n>/config.yaml`` trains that trial again; and
it declares the ``optimizer:``/``lr_scheduler:`` classes in ``search_targets`` so the
runner accepts their keys.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import Callback

from frameworm_lightning.cli._errors import UsageError
from frameworm_lightning.cli._search_config import trial_fit_config
from frameworm_lightning.runner._execute import trainer_limits
from frameworm_lightning.study import Trial

__all__ = ["CONFIG_ATTR", "CLICall", "TrialBuild", "TrialConfig"]

CONFIG_ATTR = "cli_config"


@dataclass(frozen=True)
class CLICall:
    """How the search's CLI was called (its class and arguments), to call it again on a trial's config."""

    cls: type
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`UsageError` if the class cannot be called again with ``args=`` and ``run=``."""
        try:
            inspect.signature(self.cls).bind(*self.args, **{**self.kwargs, "args": {}, "run": False})
        except TypeError as err:
            name = self.cls.__name__
            raise UsageError(
                f"{name}(...) cannot be called again with args= and run= ({err}): each trial is built by "
                f"{name}(args=<the trial's config>, run=False), as LightningCLI builds fit's; let {name}.__init__ "
                "take args and run (or **kwargs) and pass them on to SearchCLI.__init__."
            ) from None

    def on(self, config: dict[str, Any]) -> Any:
        """The CLI built on ``config`` (parsed, seeded, its classes instantiated), without running a subcommand."""
        with warnings.catch_warnings():
            # LightningCLI warns that args= is given while sys.argv holds arguments: the search's own.
            warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
            return self.cls(*self.args, **{**self.kwargs, "args": config, "run": False})


class TrialBuild:
    """Builds a trial's module and datamodule with the search's CLI class (``SearchRunner.fit(build_trial=)``).

    Args:
        call: how the search's CLI was called.
        base: the search's config as ``fit`` takes it (a plain dict of the dumped
            subcommand config, without the ``search:`` section and link targets).
        seed: the search's seed; trial ``n`` runs under ``seed + n``.
    """

    def __init__(self, call: CLICall, base: dict[str, Any], seed: Optional[int]) -> None:
        self.call = call
        self.base = base
        self.seed = seed

    def config(self, trial: Trial) -> dict[str, Any]:
        """The trial's config, as ``fit`` takes it."""
        return trial_fit_config(self.base, trial.params, None if self.seed is None else self.seed + trial.number)

    def __call__(self, trial: Trial) -> tuple[pl.LightningModule, Any]:
        config = self.config(trial)
        trial.set_system_attr(CONFIG_ATTR, config)  # what `frameworm-search best` writes
        cli = self.call.on(copy.deepcopy(config))  # LightningCLI turns its dicts into Namespaces in place
        return cli.model, cli.datamodule


class TrialConfig(Callback):
    """Writes each trial's LightningCLI config as its ``config.yaml``; declares the ``optimizer:``/``lr_scheduler:`` classes.

    Args:
        search_targets: the classes of the config's ``optimizer:`` and ``lr_scheduler:``
            sections, which the runner checks ``optimizer.*``/``lr_scheduler.*`` keys against.
    """

    def __init__(self, search_targets: dict[str, type]) -> None:
        self.search_targets = dict(search_targets)
        self.trial: Trial | None = None

    def bind_trial(self, trial: Trial) -> None:
        """Called by the runner with the trial this copy belongs to."""
        self.trial = trial

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # In setup, after the runner's generic config.yaml, written just before fit: the CLI
        # knows the config in LightningCLI's own terms, class_paths included.
        if stage != "fit" or self.trial is None or not trainer.is_global_zero:
            return
        config = self.trial.system_attrs.get(CONFIG_ATTR)
        if config is None:
            return
        limits = trainer_limits(trainer.callbacks)  # a halving policy's budget (ASHA's max_resource)
        if limits and any(config.get("trainer", {}).get(k) != v for k, v in limits.items()):
            config = {**config, "trainer": {**config.get("trainer", {}), **limits}}
            self.trial.set_system_attr(CONFIG_ATTR, config)  # what the trial trains: `best` writes it
        folder = Path(self.trial.system_attrs.get("trial_dir") or trainer.default_root_dir)
        text = f"# trial {self.trial.number} of study {self.trial.study.name!r}\n"
        (folder / "config.yaml").write_text(text + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
