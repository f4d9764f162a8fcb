"""Filling Lightning's caches in the forkserver, so that no forked trial pays for it.

A process's first Lightning ``fit`` spends about half a second filling caches (mostly
Python's ABC subclass checks). The forkserver (``runner/_processes.py``) imports this
module among its Lightning preloads; the import runs one tiny CPU fit there, before
anything is forked. It does so only in the forkserver (``FRAMEWORM_FORKSERVER_WARM_UP=1``
in the environment it was started with), only once Lightning is loaded, and only with a
CPU-only torch: on a CUDA build a
Lightning fit initialises the CUDA driver (seen on an H100: the forked trials then found
no GPU), which a process that forks must never do. The fit runs on one thread with
tensors too small for an OpenMP team, so the forkserver stays safe to fork; if threads
were left behind anyway, its log says so. ``FRAMEWORM_FORKSERVER_WARM_UP=0`` when the
search starts turns it off.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from typing import Any

__all__ = ["ENV", "warm_up"]

ENV = "FRAMEWORM_FORKSERVER_WARM_UP"


def _cpu_only_torch() -> bool:
    import torch  # noqa: PLC0415 - preloaded by the forkserver before this module

    return torch.version.cuda is None and not torch.backends.cuda.is_built()


def _threads() -> int:
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0


def warm_up() -> None:
    """Run one tiny CPU fit with Lightning's info logs and warnings silenced."""
    import lightning.pytorch as pl  # noqa: PLC0415 - preloaded by the forkserver before this module
    import torch  # noqa: PLC0415
    from torch.utils.data import DataLoader, TensorDataset  # noqa: PLC0415

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self.layer(batch[0]).pow(2).mean()
            self.log("loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", self.layer(batch[0]).pow(2).mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters())

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    threads, before = torch.get_num_threads(), _threads()
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    torch.set_num_threads(1)
    quiet = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    try:
        loader = DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)
        with tempfile.TemporaryDirectory(prefix="fw-forkserver-") as root, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, default_root_dir=root,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
            trainer.fit(Tiny(), loader, loader)
    except Exception as err:  # noqa: BLE001 - a warm-up that fails only costs the trials their warm caches
        print(f"forkserver warm-up skipped: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
        torch.set_num_threads(threads)
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
    if _threads() > before:
        print(f"forkserver warm-up left {_threads() - before} thread(s) running", file=sys.stderr)


# In the forkserver, after its Lightning preloads; a forkserver without them (a function
# search's) imports this module too (through the run loop) and must not load Lightning here.
if os.environ.get(ENV) == "1" and "lightning.pytorch" in sys.modules and _cpu_only_torch():
    warm_up()
