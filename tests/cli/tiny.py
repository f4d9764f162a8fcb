"""A tiny LightningModule and datamodule the CLI tests search (importable as ``tiny``).

Regression of ``y = 3x`` with one linear layer: a trial of one short epoch takes well
under a second, and ``val_loss`` depends on ``lr`` so a search has something to find.
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch.utils.data import DataLoader, TensorDataset


class TinyData(pl.LightningDataModule):
    """64 points of ``y = 3x + noise``, 48 to train on and 16 to validate."""

    def __init__(self, batch_size: int = 16, n: int = 64) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.n = n

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.n, 1, generator=g)
        y = 3 * x + 0.1 * torch.randn(self.n, 1, generator=g)
        cut = self.n * 3 // 4
        self.train_set, self.val_set = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


class TinyModel(pl.LightningModule):
    """One linear layer; logs ``val_loss``.

    Args:
        lr: SGD learning rate.
        hidden: unused width (a categorical to search).
        sleep: seconds to sleep per training step (to interrupt a search mid-trial).
    """

    def __init__(self, lr: float = 0.1, hidden: int = 4, sleep: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.lr, self.sleep = lr, sleep
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        if self.sleep:
            time.sleep(self.sleep)
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class InjectedModel(TinyModel):
    """:class:`TinyModel` given its optimizer as LightningCLI's docs advise: an ``OptimizerCallable``
    argument, configured by ``class_path`` in ``model.init_args.optimizer``."""

    def __init__(self, optimizer: OptimizerCallable = torch.optim.SGD) -> None:
        super().__init__()
        self.optimizer = optimizer

    def configure_optimizers(self):
        return self.optimizer(self.parameters())
