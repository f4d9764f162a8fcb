"""A tiny module and datamodule the security tests build (importable by path, for worker processes)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader


class Tiny(BoringModel):
    """BoringModel with a learning rate, logging ``val_loss``."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch)
        self.log("val_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TinyData(pl.LightningDataModule):
    """Random 32-dimensional inputs, ``size`` samples per split."""

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.size = size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, self.size), batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(RandomDataset(32, self.size), batch_size=4)


QUIET = {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1, "enable_progress_bar": False,
         "enable_model_summary": False}


class PayloadProbe(Tiny):
    """Records, from inside a worker, the mode and contents of the payload file it was started with."""

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__(lr)
        import json
        import os
        import sys
        from pathlib import Path

        import sqlalchemy as sa

        payload = Path(sys.argv[-1])
        if payload.name == "trial.pkl":
            password = sa.engine.make_url(os.environ["FRAMEWORM_STORAGE_URL"]).password or ""
            probe = {"mode": oct(payload.stat().st_mode & 0o777), "has_password": bool(password),
                     "holds_password": password.encode() in payload.read_bytes()}
            (payload.parent / "probe.json").write_text(json.dumps(probe))
