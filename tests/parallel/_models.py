"""Tiny models for the parallel tests: module-level, so worker processes can import them.

``SleepyModule`` trains a linear layer on 8 random points and can sleep in each training
step (so two trials certainly overlap), crash in a chosen way, or never finish. Each
rank writes ``rank<r>.json`` into its trial folder: when it trained and the global step
at which it stopped.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

CRASHES = ("ok", "raise", "sys_exit", "os_exit", "segfault", "sigkill", "hang")


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 2, generator=g)
    return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=4)


class SleepyModule(pl.LightningModule):
    """A linear regression whose training step sleeps ``sleep`` seconds and may ``crash``.

    ``val_loss`` is ``offset`` plus a thousandth of the regression error, so tests know
    each trial's score (and whether a threshold prunes it) in advance.
    """

    def __init__(self, offset: float = 0.1, sleep: float = 0.0, crash: str = "ok", crash_step: int = 1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, 1)
        self._started = 0.0

    def on_fit_start(self) -> None:
        self._started = time.time()

    def _crash(self) -> None:
        crash = self.hparams.crash
        if crash == "raise":
            raise RuntimeError("boom: the model raised")
        if crash == "sys_exit":
            sys.exit(4)
        if crash == "os_exit":
            os._exit(3)
        if crash == "segfault":
            ctypes.string_at(0)
        if crash == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if crash == "hang":
            time.sleep(3600)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, D102
        if self.global_step >= self.hparams.crash_step:
            self._crash()
        if self.hparams.sleep:
            time.sleep(self.hparams.sleep)
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, D102
        x, y = batch
        mse = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("val_loss", self.hparams.offset + 1e-3 * mse, sync_dist=True)

    def configure_optimizers(self):  # noqa: D102
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader:
        return _loader()

    def val_dataloader(self) -> DataLoader:
        return _loader()

    def on_fit_end(self) -> None:
        out = Path(self.trainer.default_root_dir) / f"rank{self.trainer.global_rank}.json"
        out.write_text(json.dumps({
            "start": self._started, "end": time.time(), "global_step": self.trainer.global_step,
            "world_size": self.trainer.world_size, "pid": os.getpid(),
            "cuda": torch.cuda.is_available(), "device": str(self.device),
        }))


def square(config: dict) -> float:
    """A train_fn for the function API: sleeps a little, returns ``(x - 1)^2``."""
    time.sleep(config.get("sleep", 0.0))
    return (config["x"] - 1.0) ** 2


def churn_page_faults(config: dict) -> float:
    """A train_fn: the page faults of allocating and freeing buffers of 4 to 24 MB twice each.

    A process whose allocator keeps freed memory for reuse faults each page of the largest
    buffer once (24 MB: about 6,000 faults); one that maps each new size afresh and returns
    it at once, as glibc's allocator does until it has seen such sizes, faults them all
    (84 MB mapped and unmapped, then the reused heap: about 27,000).
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for mb in (4, 8, 12, 16, 20, 24):
        for _ in range(2):
            buffer = bytearray(mb << 20)  # zero-filled: every page written
            del buffer
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) + config["x"]


def metrics_dict(config: dict) -> dict:
    """A train_fn that returns a dict of metrics: ``{"loss": (x - 1)^2}``."""
    return {"loss": (config["x"] - 1.0) ** 2}


def trainer_kwargs(**overrides: object) -> dict:
    """A quiet CPU Trainer that validates after each epoch (2 batches of 4 points)."""
    return {"accelerator": "cpu", "devices": 1, "max_steps": 2, "enable_progress_bar": False,
            "enable_model_summary": False, "logger": False, **overrides}


def rank_reports(trial_dir: str | Path) -> dict[int, dict]:
    """The ``rank<r>.json`` files a trial's ranks wrote, by rank."""
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in Path(trial_dir).glob("rank*.json")}


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two ``[start, end]`` intervals share some time."""
    return a[0] < b[1] and b[0] < a[1]


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float, interval: float = 0.2):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it is truthy (returned) or ``timeout`` seconds pass (``None``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def _mark_started() -> None:
    """Write ``$FW_MARKER_DIR/<pid>`` (once per process): a trial is training now."""
    folder = os.environ.get("FW_MARKER_DIR")
    if folder:
        path = Path(folder) / str(os.getpid())
        if not path.exists():
            path.write_text(str(time.time()))


class StallingModule(SleepyModule):
    """A :class:`SleepyModule` that marks its first training step (``_mark_started``), for signal tests."""

    def training_step(self, batch, batch_idx):  # noqa: ANN001, D102
        _mark_started()
        return super().training_step(batch, batch_idx)


def stalling(config: dict) -> float:
    """A train_fn that marks its start, then takes ``config["sleep"]`` seconds; returns ``(x - 1)^2``."""
    _mark_started()
    time.sleep(config.get("sleep", 0.0))
    return (config["x"] - 1.0) ** 2


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children...), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def exit_marker(config: dict) -> float:
    """A train_fn that registers an ``atexit`` handler writing ``config['path']`` and notes its process.

    It also registers a ``weakref.finalize`` to run at exit (writing ``<path>.fin.<x>``), and
    notes how many finalizers were due at exit before it did (the forkserver's imports' are not).
    """
    import atexit  # noqa: PLC0415
    import gc  # noqa: PLC0415
    import multiprocessing  # noqa: PLC0415
    import os  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    from threadpoolctl import threadpool_info  # noqa: PLC0415

    facts = {"ppid": os.getppid(), "pgid": os.getpgid(0), "pid": os.getpid(),
             "lightning_before_trial": "lightning.pytorch.trainer" in sys.modules,
             "torch_before_trial": "torch" in sys.modules,
             "finalizers_due_at_exit": sum(f.atexit for f in weakref.finalize._registry),  # noqa: SLF001
             "main": sys.modules["__main__"].__name__, "process": multiprocessing.current_process().name,
             "frozen_objects": gc.get_freeze_count(),
             "openmp_threads": sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"}),
             "omp_num_threads": int(os.environ["OMP_NUM_THREADS"])}
    atexit.register(lambda: Path(config["path"]).with_suffix(f".{config['x']}").write_text(repr(facts)))
    _KEPT.append(kept := _Kept())
    weakref.finalize(kept, Path(config["path"]).with_suffix(f".fin.{config['x']}").write_text, "ran")
    return float(config["x"])


class _Kept:
    """An object alive until the process exits, for exit_marker's finalizer."""


_KEPT: list[_Kept] = []
