"""A ``SearchCLI`` that adds callbacks the two ways LightningCLI apps do, besides ``trainer.callbacks`` (``tests/cli``).

* a callback group: ``parser.add_lightning_class_args(EarlyStopping, "early_stopping")``,
  configured in the config's ``early_stopping:`` section;
* ``trainer_defaults={"callbacks": [...]}``: callbacks every Trainer of the CLI gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, EarlyStopping

from frameworm_lightning.cli import SearchCLI


class Marker(Callback):
    """Writes ``marker.txt`` (the epochs trained) in the Trainer's ``default_root_dir`` when training ends."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        (Path(trainer.default_root_dir) / "marker.txt").write_text(str(trainer.current_epoch))


class CallbackCLI(SearchCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")


if __name__ == "__main__":
    CallbackCLI(trainer_defaults={"callbacks": [Marker()]})
