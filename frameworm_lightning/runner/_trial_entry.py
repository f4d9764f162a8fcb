"""A trial's own process: :func:`run_forked` (forked by the forkserver) and ``python -m`` (DDP ranks).

Every trial a worker process runs starts here, with the already-claimed trial named in
its payload file (:mod:`._payload`). The process attaches to that trial in storage,
runs the pickled evaluation (``evaluate(trial)``: a Lightning trial or a function trial),
stores the outcome and exits.

Why a module of its own: Lightning's DDP launcher starts ranks 1..n-1 by re-running
the command line of rank 0 (``python -m <__main__'s module> <argv>``). A trial's process
makes this module its ``__main__`` and its payload file its ``argv``, so the extra ranks
run ``python -m frameworm_lightning.runner._trial_entry <trial.pkl>``: only this trial,
never the search, attached as *followers* — they train, and their stopping callbacks
agree with rank 0 through the strategy, but only rank 0 writes to storage.

The process watches the process that launched it: if the search process (or the Ray
worker) dies, the trial's whole process group (DDP ranks, DataLoader
workers) is killed, so nothing is left behind.
"""

from __future__ import annotations

import atexit
import ctypes
import faulthandler
import functools
import gc
import json
import logging
import os
import pickle
import platform
import runpy
import select
import signal
import socket
import sys
import threading
import time
import traceback
import types
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from threadpoolctl import ThreadpoolController

from frameworm_lightning.runner._payload import (
    ENTRY_MODULE,
    PAYLOAD_VERSION,
    SEARCH_ARGV_ENV,
    STORAGE_URL_ENV,
    importing_search_script,
)
from frameworm_lightning.runner._rules import FATAL_ATTR
from frameworm_lightning.runner._signals import SIGTERM_EXIT, is_sigterm, sigterm_stops_search
from frameworm_lightning.storage import open_storage
from frameworm_lightning.study import Study, Trial
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["FollowerTrial", "keep_import_finalizers_from_exit", "load_evaluate", "main", "preloaded_openmp_runtimes",
           "run_forked"]

# Environment variable naming the process group of the trial (set by rank 0 when it leads one).
_PGID_ENV = "FRAMEWORM_TRIAL_PGID"
_PARENT_POLL_S = 0.5


def _watch(pid: int | None) -> None:
    """Kill this trial's process group as soon as process ``pid`` (default: our parent) is gone.

    Rank 0 watches the process that launched it (the search process, or the Ray task),
    not its parent: that is the forkserver, which lives on while any trial does. On
    Linux a pidfd wakes the watcher when the process exits; elsewhere it polls.
    """
    parent = os.getppid()
    pgid = os.environ.get(_PGID_ENV)
    pidfd: int | None = None
    if pid is not None and hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # already gone (the first check below ends us) or no pidfds here: poll
            pidfd = None

    def gone() -> bool:
        if pid is None:
            return os.getppid() != parent
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def loop() -> None:
        while True:
            if pidfd is not None:
                select.select([pidfd], [], [])
            else:
                time.sleep(_PARENT_POLL_S)
            if pidfd is not None or gone():
                try:
                    if pgid and int(pgid) == os.getpgid(0):
                        os.killpg(int(pgid), signal.SIGKILL)
                finally:
                    os._exit(1)

    threading.Thread(target=loop, daemon=True, name="fw-parent-watch").start()


def _load_main(main: tuple[str, str] | None) -> types.ModuleType | None:
    """Load the search script as ``__mp_main__`` (as multiprocessing's spawn does), if needed."""
    if main is None:
        return None
    kind, ref = main
    module = types.ModuleType("__mp_main__")
    argv = sys.argv  # this module and the payload: what Lightning's DDP launcher re-runs
    search_argv = os.environ.get(SEARCH_ARGV_ENV)
    if search_argv:
        sys.argv = json.loads(search_argv)  # the script may parse the search's command line at import
    try:
        with importing_search_script(ref):
            if kind == "path":
                module.__dict__.update(runpy.run_path(ref, run_name="__mp_main__"))
            else:
                module.__dict__.update(runpy.run_module(ref, run_name="__mp_main__", alter_sys=False))
    finally:
        sys.argv = argv
    sys.modules["__mp_main__"] = module
    return module


def _is_script(module: types.ModuleType | None, main: tuple[str, str]) -> bool:
    """Whether ``module`` is the search script ``main`` names (``("path", file)`` or ``("module", name)``)."""
    if module is None:
        return False
    kind, ref = main
    if kind == "path":
        path = getattr(module, "__file__", None)
        return path is not None and os.path.abspath(path) == ref
    return getattr(getattr(module, "__spec__", None), "name", None) == ref


def load_evaluate(payload: Mapping[str, Any], evaluate_bytes: bytes | None = None) -> Callable[[Trial], None]:
    """Unpickle what the trial runs, with the search script standing in for ``__main__``.

    In a trial forked for the search process, multiprocessing already imported the
    search script as ``__mp_main__``; a DDP rank started by ``python -m``, or a trial
    forked for a Ray worker (whose ``__mp_main__`` is Ray's), imports it here. ``__main__``
    is this module afterwards: Lightning's DDP launcher reads it to re-launch this
    module, not the search script.
    """
    for entry in reversed(payload.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if evaluate_bytes is None:
        evaluate_bytes = Path(payload["evaluate_path"]).read_bytes()
    this = sys.modules[ENTRY_MODULE] if ENTRY_MODULE in sys.modules else sys.modules["__main__"]
    main = payload.get("main")
    script = sys.modules.get("__mp_main__")
    if main is not None and not _is_script(script, main):
        script = _load_main(main)  # a DDP rank, or a Ray worker (whose __mp_main__ is Ray's own)
    try:
        if script is not None:
            sys.modules["__main__"] = script
        return pickle.loads(evaluate_bytes)
    finally:
        sys.modules["__main__"] = this


def _follower_rank() -> int:
    """This process's local rank when Lightning's launcher started it (0 for the trial's own process)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def _run(payload: Mapping[str, Any], rank: int) -> int:
    cwd = payload.get("cwd")
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    storage = open_storage(os.environ[STORAGE_URL_ENV], heartbeat_timeout=payload["heartbeat_timeout"],
                           create_tables=False)  # the search made them
    try:
        evaluate = load_evaluate(payload)
    except Exception as err:  # noqa: BLE001 - stored: every trial of the search would fail the same way
        if rank == 0:
            error = f"{type(err).__name__}: {err}"
            storage.set_trial_attr(payload["trial_id"], FATAL_ATTR, {"kind": "config", "error": error}, system=True)
            storage.finish_trial(payload["trial_id"], TrialState.FAILED, error=traceback.format_exc(),
                                 reason=f"the trial could not load what it runs: {error}"[:500])
        storage.close()
        raise
    study = Study.load(payload["study_name"], storage)
    frozen = storage.get_trial(payload["trial_id"])
    if rank == 0 and frozen.state is not TrialState.RUNNING:
        # Interrupted or failed (a timeout) by the search process before we got here.
        print(f"trial {frozen.number} is {frozen.state.value}, not RUNNING: nothing to do", file=sys.stderr)
        return 0
    trial: Trial
    if rank == 0:
        trial = Trial(study, frozen)
        trial.set_system_attr("worker", {
            "host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "executor": payload.get("executor", "process"),
        })
    else:
        trial = FollowerTrial(study, frozen, rank=rank, directory=Path(payload["directory"]))
    try:
        evaluate(trial)
    except SystemExit as stop:
        if is_sigterm(stop):
            # Lightning's SIGTERM path (or ours, outside a fit): the trial runs again on resume.
            trial.interrupt("the trial's worker got signal SIGTERM")
            raise
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        trial.fail(f"the trial called sys.exit({stop.code!r})\n{traceback.format_exc()}",
                   reason=f"the trial called sys.exit({stop.code!r})")
        return code
    except KeyboardInterrupt:
        trial.interrupt("the trial's worker got signal SIGINT")
        return 128 + signal.SIGINT
    finally:
        storage.close()
    # A follower rank that failed exits non-zero: Lightning's launcher then stops the others,
    # instead of rank 0 waiting for it in a collective forever.
    return 1 if isinstance(trial, FollowerTrial) and trial.failed_here else 0


class FollowerTrial(Trial):
    """The trial as DDP ranks above 0 see it: reads like the real one, never writes to storage.

    Rank 0 stores reports and the outcome. A follower that fails writes its error to
    ``rank<r>.error`` in the trial's folder, where the search process picks it up.
    """

    def __init__(self, study: Study, frozen: FrozenTrial, *, rank: int, directory: Path) -> None:
        self.rank = rank
        self.directory = directory
        self.failed_here = False
        super().__init__(study, frozen)

    def _beat(self) -> bool:
        return False  # rank 0 keeps the trial alive

    def report(self, step: int, value: float) -> None:
        self.intermediate_values[int(step)] = float(value)

    def set_user_attr(self, key: str, value: Any) -> None:
        pass

    def set_system_attr(self, key: str, value: Any) -> None:
        self.system_attrs[key] = value

    def _finish(self, state: TrialState, **kwargs: Any) -> bool:
        self._stop.set()
        self._finished = True
        return False

    def complete(self, value: float, **system_attrs: Any) -> bool:
        return self._finish(TrialState.COMPLETE)  # rank 0 judges the value (a NaN included)

    def prune(self, reason: str | None = None, value: float | None = None) -> bool:
        return self._finish(TrialState.PRUNED)

    def fail(self, error: str, reason: str | None = None) -> bool:
        self.failed_here = True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / f"rank{self.rank}.error").write_text(error)
        except OSError:
            print(error, file=sys.stderr)
        return self._finish(TrialState.FAILED)

    def interrupt(self, why: str) -> bool:
        return self._finish(TrialState.FAILED)


def main(argv: list[str] | None = None) -> int:
    """Run the trial described by the payload file ``argv[0]``; return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m {ENTRY_MODULE} <trial.pkl>", file=sys.stderr)
        return 2
    faulthandler.enable()  # a segfault prints every thread's Python stack into the trial's log
    rank = _follower_rank()
    if rank == 0 and os.getpgid(0) == os.getpid():
        os.environ[_PGID_ENV] = str(os.getpid())  # inherited by the DDP ranks Lightning starts
    try:
        # SIGTERM (the search stopping, or a scheduler preempting this worker): Lightning's own
        # handler runs inside the fit, synchronised across DDP ranks; see runner/_signals.py.
        with sigterm_stops_search("trial worker"):
            with open(argv[0], "rb") as f:
                payload = pickle.load(f)
            _watch(payload.get("watch_pid") if rank == 0 else None)  # DDP ranks watch rank 0
            if payload.get("version") != PAYLOAD_VERSION:
                print(f"payload version {payload.get('version')!r} is not {PAYLOAD_VERSION}", file=sys.stderr)
                return 2
            return _run(payload, rank)
    except SystemExit as stop:
        if is_sigterm(stop):
            return SIGTERM_EXIT
        raise


def _openmp_runtimes() -> ThreadpoolController:
    """The OpenMP runtimes loaded in this process (torch's, and any other library's copy).

    Only OpenMP's: an OpenBLAS told its thread count in a forked child starts its pool of
    threads there and then (30-80 ms a trial, measured), and OpenBLAS's pool is safe across
    a fork anyway (it stops it around each fork itself).
    """
    return ThreadpoolController().select(user_api="openmp")


@functools.cache
def preloaded_openmp_runtimes() -> ThreadpoolController:
    """The OpenMP runtimes found once: the forkserver calls it after its imports, so its trials
    inherit the result (a scan in each trial costs it 14 ms)."""
    return _openmp_runtimes()


def keep_import_finalizers_from_exit() -> int:
    """Mark every live ``weakref.finalize`` not to run at exit; how many were marked.

    Called by the forkserver once its imports are done, and by a trial forked from the search
    process: what was registered before the trial tears down an interpreter, and a trial's
    process never tears its interpreter down. The stdlib
    keeps live finalizers in ``weakref.finalize._registry``, a private name, read here
    because the only public alternative is a scan of every object (``gc.get_objects``,
    0.1 s on the forkserver's 400,000); ``atexit`` is the finalizer's public attribute.
    ``tests/parallel/test_process_executor.py`` checks that a trial starts with none due at
    exit and that its own finalizers still run.
    """
    marked = 0
    for finalizer in list(weakref.finalize._registry):  # noqa: SLF001 - see the docstring
        if finalizer.atexit:
            finalizer.atexit = False
            marked += 1
    return marked


# glibc's mallopt parameters (malloc.h), and the largest mmap threshold its own dynamic
# rule reaches on a 64-bit system (DEFAULT_MMAP_THRESHOLD_MAX: 4 MiB * sizeof(long)).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_MMAP_THRESHOLD_MAX = 32 << 20


def _allocator_as_in_a_long_lived_process() -> bool:
    """Give glibc's allocator the thresholds it ends at in a process that has run a while.

    A fresh process maps each large allocation afresh and unmaps it when freed, raising
    its threshold only as it sees larger blocks freed; a trial's process is always fresh,
    so each new tensor size cost it a new mapping and a page fault per 4 KiB (14,000 to
    21,000 faults, 25 ms of kernel time, per CpuMLP trial of ``benchmarks/parallel.py``,
    against about 1,000 for the same trial in the search process). Blocks under 32 MiB
    now come from the heap, and up to 64 MiB of freed heap is kept for reuse: where glibc's
    own rule ends after a 32 MiB block is freed. Linux with glibc only (``False`` elsewhere:
    nothing is changed).
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_THRESHOLD_MAX))
    except (OSError, AttributeError):
        return False


def _streams_to_log() -> None:
    """``sys.stdout``/``sys.stderr`` on file descriptors 1 and 2 (the trial's log), and the
    logging handlers that wrote to the old ones on the new ones.

    In a trial forked from the search process they may be anything (pytest's capture, a
    user's tee, a progress bar's proxy), and would take the trial's output, tracebacks and
    faulthandler's stack away from its log.
    """
    old = {id(sys.stdout): "stdout", id(sys.stderr): "stderr"}
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler and id(handler.stream) in old:
                handler.setStream(getattr(sys, old[id(handler.stream)]))


def run_forked(payload_path: str, log_path: str, env: Mapping[str, str], from_search: bool = False) -> None:
    """The body of a trial's process: become the trial's process, run it, exit.

    Forked by the forkserver or, ``from_search``, by the search process itself before the
    forkserver is ready (``runner/_processes.py``): the search process's exit handlers
    and finalizers are then dropped (they are its own: its temporary folders, its
    loggers). Every OpenMP runtime is held to the trial's thread count (an OpenMP team
    the search process started did not survive the fork).
    """
    code = 1
    # Every object the process was forked with (torch's, Lightning's: 400,000) leaves the
    # collector's generations: a full collection would otherwise walk them all, writing to
    # each one's header, and copy every page of them from the parent (0.5 s once in each
    # trial, measured in benchmarks/parallel.py's trials). Objects the trial makes are
    # collected as usual.
    gc.freeze()
    _allocator_as_in_a_long_lived_process()  # and no page fault for each new tensor size
    if from_search:
        atexit._clear()  # noqa: SLF001 - the search process's hooks; tests/parallel checks they do not run here
        keep_import_finalizers_from_exit()
        # The search script is loaded afresh, as in a forkserver's trial (multiprocessing
        # names the running script __mp_main__): a trial behaves the same whichever process
        # forked it, and a script that searches when imported is refused by both.
        sys.modules.pop("__mp_main__", None)
    try:
        os.setpgid(0, 0)  # its own process group: killed as one, deaf to the terminal's Ctrl-C
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        if from_search:
            _streams_to_log()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()  # the trial's whole environment, as a fresh interpreter would get it
        os.environ.update(env)
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            # The runtimes read the variable when the forkserver (or the search process) loaded them.
            # A trial forked from the search process scans afresh: the search may have loaded more.
            (_openmp_runtimes() if from_search else preloaded_openmp_runtimes()).limit(limits=int(threads))
            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(int(threads))
        # What Lightning's DDP launcher re-runs for ranks 1..n-1: this module and the payload.
        sys.modules["__main__"] = sys.modules[ENTRY_MODULE]
        sys.argv = [sys.modules[ENTRY_MODULE].__file__ or "", payload_path]
        code = main([payload_path])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything, then leave
        traceback.print_exc()
    finally:
        # multiprocessing ends its children with os._exit, skipping atexit: loggers (W&B,
        # MLflow) flush there. _run_exitfuncs is private; tests/parallel checks it runs.
        atexit._run_exitfuncs()  # noqa: SLF001
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
