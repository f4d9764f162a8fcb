"""Tiny Lightning pieces for the stopping tests: a module whose metric follows a script."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

QUIET: dict[str, Any] = dict(
    logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    num_sanity_val_steps=0, accelerator="cpu", devices=1, log_every_n_steps=1,
)


class CurveModule(pl.LightningModule):
    """Trains a one-weight model on 8 batches per epoch; logs a scripted ``val_loss``.

    The value logged at the ``k``-th validation is ``script[k]`` when ``script`` is given
    (the last one repeats), else ``x + 1 / (1 + epochs)``, so a smaller ``x`` is better at
    every step. ``train_loss`` is logged at every training batch: ``train_script[k]`` at
    batch ``k`` (counted over the run), else the real loss. ``rank_offset * rank`` is added
    to the value on each DDP rank, so ranks that decided on their own would disagree;
    ``missing_on_rank`` logs no ``val_loss`` on that rank.
    """

    def __init__(self, x: float = 0.0, script: Sequence[float] | None = None,
                 train_script: Sequence[float] | None = None, batches: int = 8, log_val: bool = True,
                 rank_offset: float = 0.0, train_on_epoch: bool = False,
                 missing_on_rank: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(1, 1)
        self.validations = 0
        self.train_batches = 0

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.ones(self.hparams.batches, 1)), batch_size=1)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = (self.layer(batch[0]) ** 2).mean()
        scripted = self.hparams.train_script
        if scripted is not None:
            value = scripted[min(self.train_batches, len(scripted) - 1)]
            self.log("train_loss", torch.tensor(float(value)), on_step=True, on_epoch=self.hparams.train_on_epoch)
        else:
            self.log("train_loss", loss, on_step=True, on_epoch=self.hparams.train_on_epoch)
        self.train_batches += 1
        return loss

    def metric(self) -> float:
        script = self.hparams.script
        if script is not None:
            return float(script[min(self.validations, len(script) - 1)])
        epochs = self.global_step / self.trainer.num_training_batches
        return float(self.hparams.x + 1.0 / (1.0 + epochs) + self.hparams.rank_offset * self.global_rank)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if self.hparams.log_val and self.global_rank != self.hparams.missing_on_rank:
            self.log("val_loss", torch.tensor(self.metric()))

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.validations += 1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class ScheduledModule(CurveModule):
    """A :class:`CurveModule` with a OneCycleLR planned over the whole run, that counts its
    ``on_train_epoch_end`` calls and records the learning rate it ended with (per ``x``)."""

    epoch_ends: dict[float, int] = {}
    final_lr: dict[float, float] = {}

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        total = int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_epoch_end(self) -> None:
        x = float(self.hparams.x)
        ScheduledModule.epoch_ends[x] = ScheduledModule.epoch_ends.get(x, 0) + 1

    def on_train_end(self) -> None:
        ScheduledModule.final_lr[float(self.hparams.x)] = self.trainer.optimizers[0].param_groups[0]["lr"]


class HoldsAModule(CurveModule):
    """A :class:`CurveModule` whose hyperparameters hold an ``nn.Module`` (Lightning only warns about it)."""

    def __init__(self, x: float = 0.0, head: nn.Module | None = None) -> None:
        super().__init__(x=x)
        self.save_hyperparameters()


def nan() -> float:
    return math.nan


def fit(policy: pl.Callback, model: CurveModule, **trainer_kwargs: Any) -> pl.Trainer:
    """Fit ``model`` for 3 quiet epochs (or as ``trainer_kwargs`` say) with ``policy`` first among the callbacks."""
    kwargs = {**QUIET, "max_epochs": 3, **trainer_kwargs}
    trainer = pl.Trainer(callbacks=[policy, *kwargs.pop("callbacks", [])], **kwargs)
    trainer.fit(model)
    return trainer
