"""Trials in local processes: one process per trial, forked by the standard library's forkserver.

The first trial of a process starts multiprocessing's forkserver with
``set_forkserver_preload``: a clean parent that imported torch, Lightning and this
package once, never touched CUDA, a database or a thread, and forks one fresh process
per trial. Each trial process:

* is a ``multiprocessing.Process`` of its own (not a pool: a trial that crashes takes
  only itself down); the loop waits on the processes' sentinels
  (``multiprocessing.connection.wait``), not by polling;
* leads its own process group (its DDP ranks, DataLoader workers), so stopping a trial
  stops all of them;
* logs to ``<trial folder>/worker.log`` and gets the trial's whole environment
  (``CUDA_VISIBLE_DEVICES`` of its GPU lease, the storage URL, ``OMP_NUM_THREADS``);
* runs :func:`~._trial_entry.run_forked`, which makes the trial entry module its
  ``__main__`` and its payload its ``argv``: Lightning's DDP launcher then re-runs
  ``python -m frameworm_lightning.runner._trial_entry <trial.pkl>`` for the other ranks,
  never the search script;
* kills its process group if the process that launched it (the search) is gone.

The forkserver is shared by every search of the process and started once; its preload
list is fixed then (``runner/_forkserver.py``).

**The first trials of a cold start.** The forkserver's imports take seconds (torch and
Lightning: about 3 s on a 2-core machine). A trial started before they are done is forked
from the search process itself, which has loaded all of it, when that is safe
(:func:`can_fork_trial_here`): no CUDA context, no Python thread besides this one, and no
native thread beyond the pools of OpenBLAS (which stops its threads around a fork) and of
OpenMP, and the trial runs one intra-op thread (an OpenMP team made before a fork is
dead in the child: a child that asked it for two threads would wait on them forever), or
this process has no other thread at all. Such a trial starts in tenths of a second; it
clears the search process's exit handlers and builds everything else (storage, the
search script's module, its evaluation) from its payload, as a forkserver's trial does.
Otherwise the trial waits for the forkserver.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_info

from frameworm_lightning import _fork_safe as fork_safe
from frameworm_lightning.runner._forkserver import forkserver_ready, start_forkserver
from frameworm_lightning.runner._launcher import WorkerExit
from frameworm_lightning.runner._payload import PAYLOAD_FILE, STORAGE_URL_ENV, worker_env, write_private
from frameworm_lightning.runner._trial_entry import run_forked
from frameworm_lightning.study import Trial

__all__ = ["ProcessLauncher", "can_fork_trial_here", "kill_group", "log_tail", "rank_errors"]

_KILL_GRACE_S = 5.0     # SIGTERM to SIGKILL
_LOG_TAIL_LINES = 30
def kill_group(pgid: int, sig: int) -> None:
    """Signal a worker's process group (its DDP ranks, DataLoader workers); gone groups are ignored."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a worker's log ('' if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64_000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    all_lines = text.rstrip().splitlines()
    # A segfault's faulthandler dump lists the innermost frame first: keep its top.
    fatal = [i for i, line in enumerate(all_lines) if line.startswith("Fatal Python error")]
    if fatal:
        return "\n".join(all_lines[fatal[-1]: fatal[-1] + lines])
    return "\n".join(all_lines[-lines:])


def rank_errors(directory: Path) -> list[str]:
    """Errors that DDP ranks above 0 left in the trial folder."""
    out = []
    for path in sorted(directory.glob("rank*.error")):
        try:
            out.append(f"{path.stem}: " + "\n".join(path.read_text().rstrip().splitlines()[-_LOG_TAIL_LINES:]))
        except OSError:
            continue
    return out


def can_fork_trial_here(intra_op_threads: int) -> bool:
    """Whether a trial of ``intra_op_threads`` threads may be forked from this process (see above).

    Call it, and fork, under :func:`frameworm_lightning._fork_safe.paused`: the threads
    registered there (the heartbeats of the trials this process holds, the CLI's live
    view), idle then, are the only Python threads allowed besides this one. Native threads (``/proc/self/task``, so Linux only) are
    counted against the most that the pools known to survive a fork may hold: each
    OpenBLAS pool (stopped by its own fork handler), torch's pthreadpool (remade in a
    child by torch's fork handler) and each OpenMP runtime's team (dead in the child,
    harmless to a child of one thread: ``run_forked`` sets every OpenMP runtime's limit
    through threadpoolctl). Any other thread may hold a lock the child would wait on forever; one
    could hide in a pool not yet started, a risk taken only for a trial of one thread. ``tests/parallel/test_process_executor.py`` forks after OpenMP and OpenBLAS
    ran here.
    """
    beats = fork_safe.threads()
    if not os.path.isdir("/proc/self/task") or any(
            t is not threading.current_thread() and t not in beats for t in threading.enumerate()):
        return False
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return False
    native = len(os.listdir("/proc/self/task")) - len(beats)
    if native == 1:
        return True
    pools = sum(max(0, info["num_threads"] - 1) for info in threadpool_info()
                if info["internal_api"] in ("openblas", "openmp"))
    if torch is not None:
        pools += max(0, torch.get_num_threads() - 1)  # torch's own pthreadpool (set_num_threads makes it): remade in a child
    return intra_op_threads == 1 and native <= 1 + pools


@contextmanager
def _search_script_hidden() -> Iterator[None]:
    """Keep multiprocessing from running the search script again in the trial's process.

    ``Process.start`` sends the child the ``__main__`` module's file or name to import as
    ``__mp_main__`` (``multiprocessing.spawn.get_preparation_data`` reads
    ``sys.modules["__main__"]``); a search script without an ``if __name__ == "__main__":``
    guard would then run its whole search again in every trial. The trial needs the script
    only when its evaluation refers to a class or function defined there, and then
    :func:`~._trial_entry.load_evaluate` imports it itself (the payload's ``main``). So a
    module with no file and no spec stands in for ``__main__`` while the child is started
    (synchronously, in this thread); ``tests/runner/test_inline.py`` runs an unguarded script.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@dataclass
class ProcessHandle:
    """One trial's process."""

    process: multiprocessing.process.BaseProcess
    log_path: Path
    directory: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid


class ProcessLauncher:
    """Each trial in a process of its own on this machine.

    Args:
        payload: what every trial's payload holds (:func:`~._payload.base_payload`).
        storage_url: the study's storage, given to each worker in its environment.
        directory_of: the folder of trial ``n``.
        n_jobs: trials at once (sets each worker's thread count).
    """

    blocking = False

    def __init__(self, payload: Mapping[str, Any], storage_url: str, directory_of: Callable[[int], Path],
                 n_jobs: int) -> None:
        self.payload = dict(payload)
        self.storage_url = storage_url
        self.directory_of = directory_of
        self.n_jobs = n_jobs
        # A Ray worker never loads the search's classes itself: the payload says what trials need.
        self.context = start_forkserver(self.payload.get("lightning"))

    def start(self, trial: Trial, env: Mapping[str, str]) -> ProcessHandle:
        directory = self.directory_of(trial.number)
        payload = {**self.payload, "trial_id": trial.trial_id, "number": trial.number,
                   "directory": str(directory)}
        return self.launch(payload, directory, env)

    def launch(self, payload: dict[str, Any], directory: Path, env: Mapping[str, str]) -> ProcessHandle:
        """Start the process of the trial ``payload`` describes (also the body of a Ray task)."""
        directory.mkdir(parents=True, exist_ok=True)
        payload = {**payload, "watch_pid": os.getpid()}  # the trial dies with this process
        path = write_private(directory / PAYLOAD_FILE, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        log_path = directory / "worker.log"
        env = worker_env({STORAGE_URL_ENV: self.storage_url, **env}, self.n_jobs)
        name = f"frameworm-trial-{payload['number']}"
        threads = env.get("OMP_NUM_THREADS", "")
        if not forkserver_ready():
            with fork_safe.paused():
                if can_fork_trial_here(int(threads) if threads.isdigit() else 0):
                    process = multiprocessing.get_context("fork").Process(
                        target=run_forked, args=(str(path), str(log_path), env, True), name=name)
                    process.start()
                    return ProcessHandle(process, log_path, directory)
        process = self.context.Process(target=run_forked, args=(str(path), str(log_path), env), name=name)
        with _search_script_hidden():
            process.start()
        return ProcessHandle(process, log_path, directory)

    def poll(self, handle: ProcessHandle) -> WorkerExit | None:
        rc = handle.process.exitcode
        if rc is None:
            return None
        kill_group(handle.pid, signal.SIGKILL)  # ranks or loader workers it left behind
        handle.process.join()
        handle.process.close()
        (handle.directory / PAYLOAD_FILE).unlink(missing_ok=True)  # the trial is over: so is its payload
        return WorkerExit(rc, log_tail(handle.log_path), extra=rank_errors(handle.directory),
                          log_path=str(handle.log_path))

    def wait(self, handles: Sequence[ProcessHandle], timeout: float, wake_fd: int) -> None:
        multiprocessing.connection.wait([h.process.sentinel for h in handles] + [wake_fd], timeout)

    def kill(self, handles: Sequence[ProcessHandle]) -> None:
        """SIGTERM to each trial's own process, SIGKILL to its whole group after a grace period.

        Only the trial's process (DDP rank 0) gets SIGTERM: Lightning passes it on to the
        other ranks itself and stops them all at one step. A rank that got it twice (from
        us and from rank 0) would enter Lightning's handler, and its collective, twice and
        hang until the SIGKILL.
        """
        for h in handles:
            try:
                os.kill(h.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._join(handles)
        for h in handles:
            kill_group(h.pid, signal.SIGKILL)
        self._join(handles)

    @staticmethod
    def _join(handles: Sequence[ProcessHandle]) -> None:
        deadline = time.monotonic() + _KILL_GRACE_S
        for h in handles:
            h.process.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        pass  # the forkserver stays for the next search of this process
