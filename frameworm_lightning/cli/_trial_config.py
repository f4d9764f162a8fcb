"""What LightningCLI does for ``fit``, done for each trial of a ``frameworm-search`` search.

:class:`TrialConfig` is a Lightning callback the CLI gives every trial (the runner
deep-copies it per trial and binds it to the trial, in whichever process runs it):

* it records the trial's config: the search's config with the trial's params set and
  ``seed_everything`` set to the trial's seed, as the trial's :data:`CONFIG_ATTR` system
  attribute (what ``frameworm-search best`` writes) and as ``config.yaml`` in the trial's
  folder, the file LightningCLI's ``SaveConfigCallback`` writes for ``fit``, so that
  ``frameworm-search fit -c runs/<study>/trial_<n>/config.yaml`` trains that trial again
  (it replaces, in the ``setup`` hook, the runner's generic ``config.yaml`` written just
  before ``fit``: the CLI knows the config in LightningCLI's own terms, ``class_path``s
  included, where the runner only sees built objects);
* it builds the optimizer and LR scheduler of LightningCLI's ``optimizer:`` and
  ``lr_scheduler:`` sections (with the trial's ``optimizer.init_args.*`` and
  ``lr_scheduler.init_args.*`` params) and makes them the module's
  ``configure_optimizers``, as LightningCLI does before ``fit``; it declares those
  sections' classes in ``search_targets`` so the runner accepts their keys.
"""

from __future__ import annotations

from functools import partial, update_wrapper
from pathlib import Path
from types import MethodType
from typing import Any, Callable, Optional

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningCLI, instantiate_class

from frameworm_lightning.cli._search_config import section_class, trial_fit_config
from frameworm_lightning.runner._routing import CALLBACK_TARGETS
from frameworm_lightning.study import Trial

__all__ = ["CONFIG_ATTR", "TrialConfig"]

CONFIG_ATTR = "cli_config"


class TrialConfig(Callback):
    """Records each trial's LightningCLI config and sets up its ``optimizer:``/``lr_scheduler:``.

    Args:
        base: the search's config as ``fit`` takes it (a plain dict of the dumped
            subcommand config, without the ``search:`` section).
        seed: the search's seed; trial ``n`` runs under ``seed + n``.
        configure_optimizers: how the optimizer and scheduler become the module's
            ``configure_optimizers`` output (``LightningCLI.configure_optimizers`` or a
            subclass's override).
    """

    def __init__(self, base: dict[str, Any], seed: Optional[int],
                 configure_optimizers: Callable[..., Any] = LightningCLI.configure_optimizers) -> None:
        self.base = base
        self.seed = seed
        self.configure_optimizers = configure_optimizers
        self.config: dict[str, Any] = {}
        self.trial: Trial | None = None

    @property
    def search_targets(self) -> dict[str, type]:
        """The classes of the config's ``optimizer:`` and ``lr_scheduler:`` sections (runner key check)."""
        found = {name: section_class(self.base.get(name)) for name in CALLBACK_TARGETS}
        return {name: cls for name, cls in found.items() if cls is not None}

    def bind_trial(self, trial: Trial) -> None:
        """Called by the runner with the trial this copy belongs to: build and record its config."""
        self.trial = trial
        seed = None if self.seed is None else self.seed + trial.number
        self.config = trial_fit_config(self.base, trial.params, seed)
        trial.set_system_attr(CONFIG_ATTR, self.config)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.trial is None:
            return
        if trainer.is_global_zero:
            folder = Path(self.trial.system_attrs.get("trial_dir") or trainer.default_root_dir)
            text = f"# trial {self.trial.number} of study {self.trial.study.name!r}\n"
            (folder / "config.yaml").write_text(text + yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")
        self._set_optimizers(pl_module)

    def _set_optimizers(self, pl_module: pl.LightningModule) -> None:
        """LightningCLI's ``_add_configure_optimizers_method_to_model``, on this trial's module."""
        optimizer_init = self.config.get("optimizer")
        if not optimizer_init:
            return
        optimizer = instantiate_class(pl_module.parameters(), optimizer_init)
        scheduler_init = self.config.get("lr_scheduler")
        scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
        fn = partial(self.configure_optimizers, optimizer=optimizer, lr_scheduler=scheduler)
        update_wrapper(fn, self.configure_optimizers)
        pl_module.configure_optimizers = MethodType(fn, pl_module)  # type: ignore[method-assign]
