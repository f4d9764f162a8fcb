"""A plain Lightning script trained with DDP on two CPU processes (gloo), for test_ddp.py.

Usage: ``python _ddp_script.py <storage-url> <out-dir> [<rank missing val_loss>]``. Each
rank writes ``<out-dir>/rank<r>.json`` with the global step it stopped at. Given a rank,
that rank logs no ``val_loss`` and a ``ThresholdStopping`` records the run in study "missing".
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl

from _models import CurveModule

from frameworm_lightning.stopping import MedianStopping, ThresholdStopping


class StepRecorder(pl.Callback):
    def __init__(self, out: str) -> None:
        self.out = out

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        record = {"rank": trainer.global_rank, "global_step": trainer.global_step, "should_stop": trainer.should_stop,
                  "epoch": trainer.current_epoch}
        Path(self.out, f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def main(url: str, out: str, missing: str | None = None) -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    if missing is None:
        policy = MedianStopping(monitor="val_loss", min_trials=1, grace_steps=3, storage=url, study="ddp")
        # Rank 1 sees a value 100 lower: deciding on its own it would never stop.
        model = CurveModule(x=1.0, rank_offset=-100.0)
    else:
        policy = ThresholdStopping(monitor="val_loss", threshold=10.0, storage=url, study="missing")
        model = CurveModule(x=1.0, missing_on_rank=int(missing))
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, val_check_interval=0.5,
        callbacks=[policy, StepRecorder(out)], logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
    )
    trainer.fit(model)


if __name__ == "__main__":
    main(*sys.argv[1:])
