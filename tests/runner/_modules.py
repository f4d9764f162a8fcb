"""Tiny LightningModules and datamodules for runner tests (CPU, well under a second per fit)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning.pytorch as pl


class Regression(pl.LightningModule):
    """Fits y = 3x - 1; the validation loss depends on ``lr`` (and ``hidden`` not at all)."""

    def __init__(self, lr: float = 0.05, hidden: int = 4, fail: bool = False, nan: bool = False,
                 log_metric: str = "val_loss") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        if self.hparams.fail:
            raise RuntimeError("this configuration crashes")
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.hparams.nan:
            loss = loss * float("nan")
        self.log(self.hparams.log_metric, loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class LineData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 16, n: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(0)
        x = torch.rand(n, 1, generator=g)
        self.data = TensorDataset(x, 3 * x - 1)

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=64)


class Interrupting(Regression):
    """Raises KeyboardInterrupt (as Ctrl+C would) or calls sys.exit at the given epoch."""

    def __init__(self, lr: float = 0.05, how: str = "ctrl-c") -> None:
        super().__init__(lr=lr)

    def on_train_epoch_end(self):
        if self.current_epoch == 1:
            if self.hparams.how == "ctrl-c":
                raise KeyboardInterrupt
            if self.hparams.how == "exit":
                import sys

                sys.exit(7)


class EpochLogged(Regression):
    """Also logs training metrics at the end of each epoch: ``fit_loss`` (``on_epoch=True``
    in ``training_step``) and ``epoch_end`` (in ``on_train_epoch_end``), while ``val_loss``
    comes from the validation loop."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("fit_loss", loss, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self):
        self.log("epoch_end", 10.0 - self.current_epoch)


class NeedsWidth(Regression):
    """A module with a required argument (no default)."""

    def __init__(self, width: int, lr: float = 0.05) -> None:
        super().__init__(lr=lr)
        self.width = width


class Nested(Regression):
    """A module configured by a mapping: ``optim.lr`` keys set an entry inside it."""

    def __init__(self, optim: dict | None = None) -> None:
        super().__init__(lr=(optim or {}).get("lr", 0.05))


@dataclass(frozen=True)
class Optim:
    lr: float = 0.05


@dataclass
class Config:
    hidden: int = 4
    optim: Optim = field(default_factory=Optim)


class Configured(Regression):
    """A module configured by a nested dataclass: ``cfg.optim.lr`` keys set a field inside it."""

    def __init__(self, cfg: Config = Config()) -> None:
        super().__init__(lr=cfg.optim.lr, hidden=cfg.hidden)
        self.save_hyperparameters(ignore=["cfg"])  # a checkpoint loads with weights_only=True: no pickled object
        self.cfg = cfg


class OwnData(Regression):
    """A :class:`Regression` with its own ``train_dataloader``/``val_dataloader`` (no datamodule)."""

    def train_dataloader(self):
        return LineData().train_dataloader()

    def val_dataloader(self):
        return LineData().val_dataloader()
