"""The forkserver that forks every trial process: its start, its preloads, and what it does first.

``start_forkserver`` starts multiprocessing's forkserver (one per process, shared by
every search of the process) with ``set_forkserver_preload``: this package's light
modules, and torch and Lightning when the search's trials need them. Its last preload,
:mod:`._forkserver_start`, calls :func:`prepare_forkserver`, which then (and only there:
the environment variable ``FRAMEWORM_FORKSERVER=1`` is set for the forkserver alone):

* makes the forkserver ignore SIGTERM (it already does from its start, as SIGINT, so a
  signal during its imports cannot kill it: see ``start_forkserver``). A scheduler preempting a job signals all of its
  processes (SLURM), or its whole process group (``timeout``, a shell's job control):
  stopping is the search process's decision, which stores running trials interrupted
  and stops their processes; a forkserver killed first would fail the next trial's
  start. It exits on its own when the search process and its trials are gone;
* imports, with a CPU-only torch, the installed packages' modules (and this package's)
  the search process had imported when it started the forkserver
  (:func:`_modules_to_preload`): the libraries a
  search script imports at its top (scikit-learn, torchvision, pandas...) are then
  imported once, not again in every trial's process, where they cost a trial of the
  README's demo 0.4 s of scikit-learn imports against 0.25 s of training. Only modules
  from ``site-packages``: a library's import runs no user code, while the search script
  and the user's own modules (which may open connections or read the environment at
  import) are still imported by each trial. One that fails to import is skipped, one
  that starts a Python thread is reported; a CUDA build imports none of
  them (an import there could initialise CUDA, which a process that forks must never do);
* runs one tiny CPU fit, so no forked trial pays the half second a process's first
  Lightning ``fit`` spends filling caches (mostly Python's ABC subclass checks). Only
  once Lightning is preloaded, and only with a CPU-only torch: on a CUDA build a
  Lightning fit initialises the CUDA driver (seen on an H100: the forked trials then
  found no GPU), which a process that forks must never do. The fit runs on one thread
  with tensors too small for an OpenMP team, so the forkserver stays safe to fork; if
  threads were left behind anyway, its log says so. ``FRAMEWORM_FORKSERVER_WARM_UP=0``
  turns it off;
* takes the finalizers its imports registered for the interpreter's teardown off the
  exit list (:func:`~._trial_entry.keep_import_finalizers_from_exit`). A trial's process ends with
  ``os._exit`` after its ``atexit`` hooks (loggers flush there), never tearing the
  interpreter down; torch's ~180 finalizers unregistering its operator libraries cost
  each trial 40-90 ms there for nothing. Finalizers a trial registers itself still run;
* creates the file named by ``FRAMEWORM_FORKSERVER_READY``: the search process reads
  :func:`forkserver_ready` to know whether a trial started now would wait for these
  imports (``runner/_processes.py`` then forks it from the search process itself, when
  that is safe).
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from frameworm_lightning.runner._signals import STOP_SIGNALS, stop_signals_handled_by
from frameworm_lightning.runner._trial_entry import keep_import_finalizers_from_exit, preloaded_openmp_runtimes

__all__ = [
    "LIGHTNING_PRELOAD", "PRELOAD", "forkserver_ready", "prepare_forkserver", "start_forkserver", "warm_up",
]

_SERVER_ENV = "FRAMEWORM_FORKSERVER"
_WARM_UP_ENV = "FRAMEWORM_FORKSERVER_WARM_UP"
_READY_ENV = "FRAMEWORM_FORKSERVER_READY"
_MODULES_ENV = "FRAMEWORM_FORKSERVER_MODULES"
# The file the forkserver of this process creates once its imports are done (None: not started).
_ready_file: str | None = None
# Imported once by the forkserver, so no trial pays for them. Imports alone never touch
# CUDA, threads or files; a module that is not installed is skipped by multiprocessing.
PRELOAD = (
    "frameworm_lightning.runner._trial_entry", "frameworm_lightning.search._function", "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql", "psycopg",
    "frameworm_lightning.runner._forkserver_start",  # last: what the forkserver does first (see above)
)
# First, when the search's trials need Lightning (a plain train_fn's workers then start
# without its seconds of imports).
LIGHTNING_PRELOAD = (
    "torch", "lightning.pytorch", "frameworm_lightning.runner._execute", "frameworm_lightning.stopping",
    "lightning.pytorch.loggers.csv_logs", "torch.profiler",
)


def start_forkserver(lightning: bool | None = None) -> multiprocessing.context.BaseContext:
    """The forkserver context, its server started now (its imports run in the background).

    Called as soon as a search knows it will need worker processes, so the server's
    imports overlap the search's own set-up. The preload list, with
    :data:`LIGHTNING_PRELOAD` if ``lightning`` (default: this process has loaded
    Lightning), only counts for the first start in a process.
    """
    ctx = multiprocessing.get_context("forkserver")
    if lightning is None:
        lightning = "lightning.pytorch" in sys.modules
    ctx.set_forkserver_preload([*(LIGHTNING_PRELOAD if lightning else ()), *PRELOAD])
    global _ready_file
    if _ready_file is None:
        folder = tempfile.mkdtemp(prefix="fw-forkserver-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _ready_file = os.path.join(folder, "ready")
        with open(os.path.join(folder, "modules"), "w", encoding="utf-8") as f:
            json.dump({"sys_path": sys.path, "modules": _modules_to_preload()}, f)
    # The forkserver inherits this environment when it starts (trials get their own).
    server_env = {_SERVER_ENV: "1", _READY_ENV: _ready_file,
                  _MODULES_ENV: os.path.join(os.path.dirname(_ready_file), "modules")}
    previous = {k: os.environ.get(k) for k in server_env}
    os.environ.update(server_env)
    try:
        with _stop_signals_ignored_by_children():
            multiprocessing.forkserver.ensure_running()
    finally:
        for key, value in previous.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    return ctx


def _modules_to_preload() -> list[str]:
    """The modules of installed packages this process has imported, in the order it imported them.

    "Installed": loaded from a ``site-packages`` (or Debian's ``dist-packages``) folder,
    where pip puts libraries, and this package's own modules wherever it is (an editable
    install: the search script's ``from frameworm_lightning import BayesianSampler`` cost
    each trial 40 ms of our modules' and GPyTorch's imports). The standard library is
    cheap to import and the user's own modules are left to the trials (see the module's
    docstring). ``sys.modules`` keeps the order of the first imports, so importing the
    names in that order is a sequence that already worked here. None with a CUDA build of
    torch loaded (see the module's docstring), and none of Ray's: a Ray worker process
    starts a forkserver for its trials, which never use Ray, and its hundreds of modules
    would only delay the first trial.
    """
    if "torch" in sys.modules and not _cpu_only_torch():
        return []
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name.startswith("__") or name.endswith(".__main__") or name.partition(".")[0] == "ray":
            continue  # scripts (the search's own, a ``python -m`` target's); Ray's worker, which no trial uses
        parts = os.path.normpath(path).split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts or name.partition(".")[0] == __package__.split(".")[0]:
            names.append(name)
    return names


def _preload_installed_modules(names: list[str], search_path: list[str]) -> None:
    """Import ``names`` (:func:`_modules_to_preload` of the search process), skipping any that fails.

    ``search_path`` is the search process's ``sys.path``: what it lists and this process
    does not (a folder the script added) is appended, as a trial's payload adds it.
    """
    sys.path.extend(entry for entry in search_path if entry not in sys.path)
    before, failed = set(threading.enumerate()), []
    for name in names:
        if name in sys.modules:
            continue
        try:
            __import__(name)
        except BaseException as err:  # noqa: BLE001 - an optional import: the trial imports it (or fails) itself
            failed.append(f"{name} ({type(err).__name__}: {err})")
    if failed:
        print(f"forkserver: {len(failed)} module(s) of the search process did not import here, "
              f"left to the trials: {'; '.join(failed[:3])}{' ...' if len(failed) > 3 else ''}", file=sys.stderr)
    # A Python thread may hold a lock (the import lock, a logging handler's) when a trial is forked.
    # Native threads are the libraries' own (a BLAS pool, jemalloc's purging thread): each such
    # library handles a fork itself, as numpy's OpenBLAS pool, started by torch's import, always has here.
    started = [t.name for t in set(threading.enumerate()) - before]
    if started:
        print(f"forkserver: importing the search process's modules started Python thread(s) {', '.join(started)}: "
              "a trial forked while one holds a lock would wait forever", file=sys.stderr)


def forkserver_ready() -> bool:
    """Whether this process's forkserver has finished its imports (a trial started now waits for nothing)."""
    return _ready_file is not None and os.path.exists(_ready_file)


@contextmanager
def _stop_signals_ignored_by_children() -> Iterator[None]:
    """Processes started in this block begin with SIGTERM and SIGINT ignored (an ignored
    signal stays ignored across fork and exec; a handler does not).

    So a SIGTERM to the job, or a Ctrl-C to the terminal's process group, while the
    forkserver still imports torch (seconds) cannot kill it: it ignores SIGTERM itself
    once it has prepared itself (:func:`prepare_forkserver`) and SIGINT once
    multiprocessing's server loop runs; a trial's process restores both. The signals are blocked in this thread
    meanwhile, so one sent to this process then (the milliseconds of the spawn) stays
    pending and reaches the restored handler; only a thread of ours that does not block
    it could take it, and ignore it, in that window.
    """
    # Blocked around the handlers' change both ways: a signal in between waits for the handler put back.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    try:
        with stop_signals_handled_by(signal.SIG_IGN):
            yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


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


def prepare_forkserver() -> None:
    """What the forkserver does once all its preloads are imported, before it forks any trial.

    Called by :mod:`._forkserver_start`, the forkserver's last preload, which nothing else
    imports; only in the forkserver (``FRAMEWORM_FORKSERVER=1``). It ran at the first import of
    this module until 2026-11-30, which an earlier preload (the function API's) made halfway
    through importing the run loop (``tests/parallel/test_forkserver.py``).
    """
    if os.environ.get(_SERVER_ENV) != "1":
        return
    try:
        with open(os.environ.get(_MODULES_ENV, ""), encoding="utf-8") as f:
            search = json.load(f)
        _preload_installed_modules(search["modules"], search["sys_path"])
    except OSError:
        pass  # not started by start_forkserver (or its folder is gone): nothing to preload
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # after them (a library may set a handler); a trial restores it
    if os.environ.get(_WARM_UP_ENV) != "0" and "lightning.pytorch" in sys.modules and _cpu_only_torch():
        warm_up()
    keep_import_finalizers_from_exit()
    preloaded_openmp_runtimes()  # found once here, inherited by every trial
    if os.environ.get(_READY_ENV):
        try:
            with open(os.environ[_READY_ENV], "w"):
                pass
        except OSError:
            pass  # the search process has ended (and removed the file's folder) while we imported
