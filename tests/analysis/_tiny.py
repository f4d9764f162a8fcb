"""A tiny LightningModule and datamodule for the runner integration tests (importable by path)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader


class Tiny(BoringModel):
    """BoringModel with a learning rate, logging ``val_loss``; ``extra`` is an argument JSON cannot hold."""

    def __init__(self, lr: float = 0.1, unused: float = 0.0, extra: Any = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["extra"])
        self.extra = extra

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch)
        self.log("val_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyData(pl.LightningDataModule):
    """Random 32-dimensional inputs; ``size`` samples per split."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.size = size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, self.size), batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, self.size), batch_size=4)
