"""Parallel trials: worker processes supervised by the search process.

Design (see ``docs/parallel.md``): the search process claims each trial through
storage (``study.ask``: atomic, counted against the budget, so the sampler sees every
running trial as pending), then starts a **process of its own for that one trial**, the trial entry point
``python -m frameworm_lightning.runner._trial_entry <trial_dir>/trial.pkl``. The worker
attaches to the claimed trial, trains, reports every validation to storage and
stores the outcome. The search process only supervises:

* a worker that dies without storing an outcome (``os._exit``, a segfault, the OOM
  killer, ``sys.exit``) has its trial stored ``FAILED`` with the exit code or signal and
  the tail of its log; its GPU lease is returned and the search goes on;
* a worker past ``trial_timeout`` has its trial stored ``FAILED`` first, then its whole
  process group is killed (``finish_trial`` moves only ``RUNNING`` trials, so whichever
  of the two stores first wins and the other is a no-op);
* SIGINT/SIGTERM stop the search: no new claims, running trials stored interrupted
  (their params are re-enqueued and run first on the next run), each trial's process
  sent SIGTERM (Lightning stops the trial, all its DDP ranks, at its next batch), then
  its process group SIGKILL after a grace period; the search raises
  ``KeyboardInterrupt`` or ``SIGTERMException(143)``;
* a worker ended by SIGTERM from outside (a scheduler preempting it) has its trial
  stored interrupted, not failed;
* a finished trial that shows every trial would fail (``runner/_rules.py``), or any
  failure under ``stop_on_error``, stops the search the same way and raises that error;
* if the search process itself is killed, each worker notices its parent is gone and
  kills its group; the next run's ``study.recover()`` re-enqueues what was running.

One process per trial (rather than long-lived workers) buys isolation — a crash takes
one trial with it — and a command line that Lightning's DDP launcher can re-run per
rank. On Linux the process is forked from this search process's *zygote* (a clean
process that imported torch and Lightning once and never touched CUDA, a database or
threads) instead of a fresh interpreter: about 0.1 s per trial instead of seconds of imports
(``benchmarks/parallel.py``). ``FRAMEWORM_WORKER_START=spawn`` starts fresh ones.

Example:
    >>> resolve_executor("auto", n_jobs=1)
    'inline'
    >>> resolve_executor("auto", n_jobs=1, trainer_kwargs={"strategy": "ddp", "devices": 2})
    'process'
"""

from __future__ import annotations

import atexit
import dataclasses
import io
import json
import os
import pickle
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from frameworm_lightning.exceptions import FramewormError
from frameworm_lightning.runner._execute import TrialSpec, trial_budget, trial_dir
from frameworm_lightning.runner._gpus import GpuLease, GpuPool, validate_gpus_per_trial
from frameworm_lightning.runner._progress import TrialPrinter
from frameworm_lightning.runner._rules import search_error
from frameworm_lightning.runner._signals import SIGTERM_EXIT, stopped
from frameworm_lightning.space import Categorical, SearchSpace
from frameworm_lightning.storage import Storage
from frameworm_lightning.study import Study, Trial
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = [
    "EXECUTORS",
    "WorkerExit",
    "describe_exit",
    "dump_target",
    "resolve_executor",
    "run_function_parallel",
    "run_parallel",
    "validate_executor",
    "worker_env",
]

EXECUTORS = ("auto", "inline", "process", "ray")
# The trial entry point. Not imported here: ``python -m`` must find it not yet imported.
ENTRY_MODULE = "frameworm_lightning.runner._trial_entry"
PAYLOAD_VERSION = 1
PAYLOAD_FILE = "trial.pkl"
# The storage URL reaches a worker (and its DDP ranks) in its environment, never in a file:
# it may hold a password (docs/trust.md).
STORAGE_URL_ENV = "FRAMEWORM_STORAGE_URL"
# Variables of an enclosing distributed launch: a trial's worker must start its own.
_LAUNCH_ENV = (
    "LOCAL_RANK", "RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
    "MASTER_PORT", "TORCHELASTIC_RUN_ID", "FRAMEWORM_TRIAL_PGID", STORAGE_URL_ENV,
)
_POLL_S = 0.05          # how often running workers are checked
_LINGER_POLL_S = 5.0    # how often a pull worker with nothing to claim looks again
_KILL_GRACE_S = 5.0     # SIGTERM to SIGKILL
_LOG_TAIL_LINES = 30
_ZYGOTE_READY_S = 600.0  # its imports take seconds, minutes on a loaded machine


# Choosing an executor --------------------------------------------------------------------
def validate_executor(executor: str, n_jobs: int) -> str:
    """Return ``executor`` if it is one of :data:`EXECUTORS` and fits ``n_jobs``."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, but got executor={executor!r}.")
    if executor == "inline" and n_jobs != 1:
        raise ValueError(f"executor='inline' runs one trial at a time, but got n_jobs={n_jobs!r}.")
    return executor


def _launches_processes(trainer_kwargs: Mapping[str, Any] | None, space: SearchSpace | None) -> bool:
    """Whether a trial's Trainer may start processes of its own (DDP and friends)."""
    values: dict[str, list[Any]] = {k: [] for k in ("strategy", "devices", "num_nodes")}
    for key in values:
        if trainer_kwargs and key in trainer_kwargs:
            values[key].append(trainer_kwargs[key])
        dim = space.get(f"trainer.{key}") if space is not None else None
        if isinstance(dim, Categorical):
            values[key] += list(dim.choices)
        elif dim is not None:
            values[key].append(getattr(dim, "high", None))
    for s in values["strategy"]:
        name = s if isinstance(s, str) else type(s).__name__
        if any(tag in name.lower() for tag in ("ddp", "fsdp", "deepspeed")):
            return True
    for d in values["devices"]:
        if (isinstance(d, int) and not isinstance(d, bool) and d > 1) or (isinstance(d, (list, tuple)) and len(d) > 1):
            return True
        if isinstance(d, str) and "," in d.strip(","):
            return True
    return any(isinstance(n, int) and n > 1 for n in values["num_nodes"])


def resolve_executor(
    executor: str,
    n_jobs: int,
    *,
    trial_timeout: float | None = None,
    gpus_per_trial: float | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    space: SearchSpace | None = None,
) -> str:
    """The executor ``"auto"`` stands for: ``"inline"`` unless something needs worker processes.

    Worker processes are needed for ``n_jobs > 1``, a ``trial_timeout``, GPU placement
    (``gpus_per_trial``), and trials whose Trainer launches processes (a DDP strategy,
    ``devices > 1``): Lightning re-runs the command line per rank, which must be the
    trial entry point, never the search script.
    """
    validate_executor(executor, n_jobs)
    if executor == "inline" and (trial_timeout is not None or gpus_per_trial is not None):
        raise ValueError(
            "trial_timeout and gpus_per_trial need worker processes, but got executor='inline'; "
            "use executor='auto' or 'process'."
        )
    if executor != "auto":
        return executor
    if n_jobs > 1 or trial_timeout is not None or gpus_per_trial is not None:
        return "process"
    return "process" if _launches_processes(trainer_kwargs, space) else "inline"


# What a worker runs ---------------------------------------------------------------------
class _TargetPickler(pickle.Pickler):
    """Notes whether the pickle refers to ``__main__`` (a class or function of the search script)."""

    uses_main = False

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            self.uses_main = True
        return NotImplemented


def _main_reference() -> tuple[str, str]:
    main = sys.modules["__main__"]
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name and name != "__main__" and not name.endswith(".__main__"):
        return ("module", name)
    path = getattr(main, "__file__", None)
    if path:
        return ("path", os.path.abspath(path))
    raise ValueError(
        "worker processes cannot import classes or functions defined in an interactive session "
        "(a notebook or the REPL has no file to re-import). Move the LightningModule, datamodule "
        "and train_fn into a .py module and import them from there."
    )


def dump_target(target: tuple[Any, ...], what: str) -> tuple[bytes, tuple[str, str] | None]:
    """Pickle what each worker runs; return the bytes and how to re-import ``__main__`` if needed.

    Raises:
        ValueError: something does not pickle (a lambda, a nested function or class),
            or it lives in an interactive session; the message says what to change.
    """
    buf = io.BytesIO()
    pickler = _TargetPickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        pickler.dump(target)
    except Exception as err:  # noqa: BLE001 - pickling errors come in many types
        raise ValueError(
            f"worker processes run each trial in a fresh interpreter, so {what} must be picklable, "
            f"but pickling failed: {err}. Define classes and functions at module level (not a lambda, "
            "a nested function or a class inside a function)."
        ) from None
    return buf.getvalue(), (_main_reference() if pickler.uses_main else None)


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` readable and writable by this user only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file of that name keeps its mode through O_CREAT
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
    finally:
        os.close(fd)
    return path


def _portable_url(url: str) -> str:
    """The storage URL with a relative SQLite path made absolute (workers may start elsewhere)."""
    if not url.startswith("sqlite:"):
        return url
    import sqlalchemy as sa  # noqa: PLC0415

    parsed = sa.engine.make_url(url)
    if not parsed.database or parsed.database == ":memory:" or os.path.isabs(parsed.database):
        return url
    return parsed.set(database=os.path.abspath(parsed.database)).render_as_string(hide_password=False)


def worker_env(extra: Mapping[str, str] | None = None, n_jobs: int = 1) -> dict[str, str]:
    """The environment of a trial's worker: ours, minus any enclosing DDP launch, plus ``extra``.

    Each worker gets ``cpu_count // n_jobs`` intra-op threads unless ``OMP_NUM_THREADS``
    is already set, so k trials do not fight over the same cores.
    """
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, n_jobs))))
    env.update(extra or {})
    return env


def spawn_entry(payload_path: Path, log_path: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
    """Start the trial entry point in a new session (its own process group), logging to ``log_path``."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed when the worker is reaped
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", ENTRY_MODULE, str(payload_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(env),
            start_new_session=True, close_fds=True,
        )
    except BaseException:
        log.close()
        raise
    return proc, log


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


# How a worker ended ---------------------------------------------------------------------
@dataclass
class WorkerExit:
    """How a trial's worker ended.

    Attributes:
        returncode: the exit status (negative: killed by that signal), or ``None`` when
            the executor lost the worker (``detail`` says how).
        log_tail: the last lines of the worker's output.
        detail: the executor's own report (a Ray error).
        extra: errors of DDP ranks above 0.
    """

    returncode: int | None
    log_tail: str = ""
    detail: str | None = None
    extra: list[str] = field(default_factory=list)
    log_path: str | None = None


_SIGNAL_HINTS = {
    signal.SIGKILL: "killed outright: most often the out-of-memory killer, or a job scheduler",
    signal.SIGSEGV: "a segmentation fault in native code (CUDA, a C extension, a DataLoader worker)",
    signal.SIGABRT: "aborted by native code (a failed assertion, a CUDA error)",
    signal.SIGBUS: "a bus error: often /dev/shm too small for DataLoader workers",
    signal.SIGFPE: "an arithmetic fault in native code",
    signal.SIGILL: "an illegal instruction in native code",
    signal.SIGTERM: "terminated from outside",
    signal.SIGINT: "interrupted",
}


def describe_exit(exit: WorkerExit) -> tuple[str, str]:
    """``(reason, error)`` to store for a worker that ended without storing its trial's outcome."""
    rc = exit.returncode
    if rc is None:
        reason = exit.detail or "the executor lost the trial's worker"
    elif rc < 0:
        try:
            sig = signal.Signals(-rc)
            reason = f"worker killed by {sig.name}: {_SIGNAL_HINTS.get(sig, 'a signal')}"
        except ValueError:
            reason = f"worker killed by signal {-rc}"
    elif rc == 0:
        reason = "worker exited (code 0) without storing the trial's outcome"
    else:
        reason = f"worker exited with code {rc}"
    parts = [reason]
    if exit.detail and exit.detail != reason:
        parts.append(exit.detail)
    parts += exit.extra
    if exit.log_tail:
        where = f" ({exit.log_path})" if exit.log_path else ""
        parts.append(f"last lines of the worker's output{where}:\n{exit.log_tail}")
    return reason, "\n".join(parts)


# Launchers: how a worker is started, watched and stopped ---------------------------------
class Launcher(Protocol):
    """Starts trial workers somewhere (here, on Ray...) and reports how they end."""

    name: str

    def ready(self) -> None:
        """Block until workers can start (claims wait for it, so start times stay honest)."""

    def start(self, payload: dict[str, Any], directory: Path, env: Mapping[str, str]) -> Any:
        """Start the worker of one claimed trial; return a handle."""

    def poll(self, handle: Any) -> WorkerExit | None:
        """``None`` while the worker runs, else how it ended (reaping it)."""

    def kill(self, handles: Sequence[Any]) -> None:
        """Stop these workers now (their trials' outcomes are already stored)."""

    def close(self) -> None:
        """Release what the launcher holds."""


class _Zygote:
    """The search process's end of a zygote (see :mod:`._trial_entry`): start trials, learn their exits.

    One zygote serves every search of this process (:func:`shared_zygote`): each
    command carries the trial's whole environment, so a zygote started for one search
    is as good for the next.
    """

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", ENTRY_MODULE, "--zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, env=dict(env), start_new_session=True, close_fds=True,
        )
        self.exits: dict[int, int] = {}
        self.alive = True
        self._ready = threading.Event()
        self._started: queue.Queue[int] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True, name="fw-zygote-reader").start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours: the protocol is one JSON object a line
            if not isinstance(message, dict):
                continue
            if "ready" in message:
                self._ready.set()
            elif "started" in message:
                self._started.put(message["started"])
            elif "exit" in message:
                self.exits[message["exit"]] = message["code"]
        self.alive = False
        self._ready.set()
        self._started.put(-1)

    def wait_ready(self) -> None:
        if not self._ready.wait(_ZYGOTE_READY_S) or not self.alive:
            raise RuntimeError("the worker zygote did not start; its log: " + log_tail(Path(self._log.name)))

    def start(self, payload_path: Path, log_path: Path, env: Mapping[str, str]) -> int:
        """Fork a trial process; its pid (its process group too)."""
        self.wait_ready()
        with self._lock:
            assert self.proc.stdin is not None
            command = {"payload": str(payload_path), "log": str(log_path), "env": dict(env)}
            self.proc.stdin.write((json.dumps(command) + "\n").encode())
            self.proc.stdin.flush()
            pid = self._started.get(timeout=_ZYGOTE_READY_S)
            self.exits.pop(pid, None)  # an earlier child had this pid; its exit is old news
        if pid < 0:
            raise RuntimeError("the worker zygote died; its log: " + log_tail(Path(self._log.name)))
        return pid

    def close(self) -> None:
        self.alive = False
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # the zygote kills what is left and exits
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


@dataclass
class _LocalHandle:
    pid: int
    log_path: Path
    directory: Path
    proc: subprocess.Popen[bytes] | None = None  # spawned workers
    log: Any = None
    zygote: _Zygote | None = None  # forked workers

    def poll(self) -> int | None:
        if self.proc is not None:
            return self.proc.poll()
        assert self.zygote is not None
        if self.pid in self.zygote.exits:
            return self.zygote.exits[self.pid]
        if not self.zygote.alive:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return -int(signal.SIGKILL)  # its zygote died: it was killed with it
        return None


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def shared_zygote() -> _Zygote:
    """This process's zygote, started on first use (and again if it died), stopped at exit."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or not _zygote.alive or _zygote.proc.poll() is not None:
            log = Path(tempfile.gettempdir()) / f"frameworm-zygote-{os.getpid()}.log"
            _zygote = _Zygote(worker_env(), log)
            atexit.register(_zygote.close)
        return _zygote


def start_method() -> str:
    """How local workers start: ``"zygote"`` (fork from a clean pre-imported process, Linux) or ``"spawn"``.

    ``FRAMEWORM_WORKER_START=spawn`` forces a fresh interpreter per trial.
    """
    chosen = os.environ.get("FRAMEWORM_WORKER_START")
    if chosen in ("zygote", "spawn"):
        return chosen
    return "zygote" if sys.platform.startswith("linux") else "spawn"


class LocalLauncher:
    """Workers as processes of this machine, one process group each.

    Args:
        target_path: the pickled trial target every worker loads.
        n_jobs: trials at once (sets each worker's thread count).
        method: ``"zygote"`` or ``"spawn"`` (see :func:`start_method`).
    """

    name = "process"

    def __init__(self, target_path: Path, n_jobs: int, method: str | None = None) -> None:
        self.target_path = target_path
        self.n_jobs = n_jobs
        self.method = method or start_method()
        self.zygote = shared_zygote() if self.method == "zygote" else None

    def ready(self) -> None:
        if self.zygote is not None:
            self.zygote.wait_ready()

    def start(self, payload: dict[str, Any], directory: Path, env: Mapping[str, str]) -> _LocalHandle:
        directory.mkdir(parents=True, exist_ok=True)
        payload = {**payload, "target_path": str(self.target_path)}
        env = {**env, STORAGE_URL_ENV: payload.pop("storage_url")}  # the secret stays out of the file
        path = write_private(directory / PAYLOAD_FILE, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        log_path = directory / "worker.log"
        env = worker_env(env, self.n_jobs)
        if self.zygote is not None and not self.zygote.alive:
            self.zygote = shared_zygote()  # it died (the OOM killer?): a new one for the next trials
        if self.zygote is not None:
            return _LocalHandle(self.zygote.start(path, log_path, env), log_path, directory, zygote=self.zygote)
        proc, log = spawn_entry(path, log_path, env)
        return _LocalHandle(proc.pid, log_path, directory, proc=proc, log=log)

    def poll(self, handle: _LocalHandle) -> WorkerExit | None:
        rc = handle.poll()
        if rc is None:
            return None
        kill_group(handle.pid, signal.SIGKILL)  # ranks or loader workers it left behind
        (handle.directory / PAYLOAD_FILE).unlink(missing_ok=True)  # the trial is over: so is its payload
        if handle.log is not None:
            handle.log.close()
        return WorkerExit(rc, log_tail(handle.log_path), extra=rank_errors(handle.directory),
                          log_path=str(handle.log_path))

    def kill(self, handles: Sequence[_LocalHandle]) -> None:
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
        deadline = time.monotonic() + _KILL_GRACE_S
        while time.monotonic() < deadline and any(h.poll() is None for h in handles):
            time.sleep(0.05)
        for h in handles:
            kill_group(h.pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_GRACE_S
        while time.monotonic() < deadline and any(h.poll() is None for h in handles):
            time.sleep(0.05)

    def close(self) -> None:
        pass  # the zygote stays for the next search of this process


# The supervisor ---------------------------------------------------------------------------
@dataclass
class _Running:
    trial: Trial
    handle: Any
    lease: GpuLease | None
    started: float


@contextmanager
def _catch_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Supervisor:
    """Claims trials, starts one worker per trial (at most ``n_jobs`` at once) and watches them.

    Args:
        study: the study (its storage must be reachable from the workers).
        budget: the study's trial budget, or ``f(study) -> budget`` asked before each
            claim (schedulers that enqueue promotions raise it; ``0`` ends the search).
        n_jobs: trials at once.
        launcher: where workers run.
        make_payload: ``(trial, directory) -> payload`` for the trial entry point.
        directory_of: the folder of trial ``n``.
        printer: prints each finished trial.
        stop_on_error: the first failure stops the search (:class:`TrialFailed`).
        trial_timeout: seconds a worker may run before its trial is failed and it is killed.
        pool: GPU leases (``None``: GPUs are not placed by us).
        gpu_env: the worker environment when there is no pool (``{"CUDA_VISIBLE_DEVICES": ""}``).
        linger: when nothing can be claimed but other processes' trials still run, wait
            and recover the ones whose workers died (pull workers).
    """

    def __init__(
        self, study: Study, budget: int | None | Callable[[Study], int | None], n_jobs: int, launcher: Launcher, *,
        make_payload: Callable[[Trial, Path], dict[str, Any]], directory_of: Callable[[int], Path],
        printer: TrialPrinter | None = None, stop_on_error: bool = False, trial_timeout: float | None = None,
        pool: GpuPool | None = None, gpu_env: Mapping[str, str] | None = None, linger: bool = False,
    ) -> None:
        self.study = study
        self.budget = budget
        self.n_jobs = n_jobs if pool is None else min(n_jobs, pool.capacity)
        self.launcher = launcher
        self.make_payload = make_payload
        self.directory_of = directory_of
        self.printer = printer
        self.stop_on_error = stop_on_error
        self.trial_timeout = trial_timeout
        self.pool = pool
        self.gpu_env = dict(gpu_env or {})
        self.linger = linger
        self.running: list[_Running] = []
        self.started = 0
        self.finished: list[FrozenTrial] = []
        self._signal: int | None = None
        self._failure: FramewormError | None = None
        self._wake = threading.Event()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._signal is None:
            self._signal = signum
        self._wake.set()

    def run(self) -> int:
        """Run until the budget is spent (or a stop); return how many trials this process started."""
        with _catch_signals(self._on_signal):
            try:
                self._loop()
            except BaseException as err:
                self._shutdown(f"the search process stopped: {type(err).__name__}: {err}")
                raise
            finally:
                self.launcher.close()
        if self._signal is not None:
            if self._signal == signal.SIGINT:
                raise KeyboardInterrupt
            raise stopped()
        if self._failure is not None:
            raise self._failure
        return self.started

    # The loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        self.launcher.ready()
        exhausted = False
        while True:
            if self._reap():
                exhausted = False  # a slot or a GPU came free; the budget may have too
            if self._signal is not None:
                self._shutdown(f"the search was stopped by {signal.Signals(self._signal).name}")
                return
            if self._failure is not None:
                self._shutdown(f"the search stopped: {self._failure}")
                return
            while not exhausted and len(self.running) < self.n_jobs and self._signal is None:
                lease = self.pool.acquire() if self.pool is not None else None
                if self.pool is not None and lease is None:
                    break
                try:
                    budget = self.budget(self.study) if callable(self.budget) else self.budget
                    trial = self.study.ask(budget=budget)
                except BaseException:
                    self._release(lease)
                    raise
                if trial is None:
                    self._release(lease)
                    exhausted = True
                    break
                self._launch(trial, lease)
            if not self.running:
                if exhausted and self.linger and self._signal is None and self.study.trials_in(TrialState.RUNNING):
                    self._wake.wait(_LINGER_POLL_S)
                    self.study.recover()
                    exhausted = False
                    continue
                if self._signal is None:
                    return
            self._wake.wait(_POLL_S)

    def _release(self, lease: GpuLease | None) -> None:
        if self.pool is not None:
            self.pool.release(lease)

    def _launch(self, trial: Trial, lease: GpuLease | None) -> None:
        directory = self.directory_of(trial.number)
        env = lease.env() if lease is not None else dict(self.gpu_env)
        try:
            handle = self.launcher.start(self.make_payload(trial, directory), directory, env)
        except BaseException as err:
            self._release(lease)
            trial.fail(f"could not start the trial's worker: {type(err).__name__}: {err}")
            raise
        self.running.append(_Running(trial, handle, lease, time.monotonic()))
        self.started += 1

    def _reap(self) -> bool:
        reaped = False
        for run in list(self.running):
            exit = self.launcher.poll(run.handle)
            if exit is None:
                if self.trial_timeout is None or time.monotonic() - run.started <= self.trial_timeout:
                    continue
                reason = f"timed out: ran past trial_timeout={self.trial_timeout:g}s"
                # Store first: the worker's own store, if it races us, is then a no-op.
                run.trial.fail(f"{reason}; its worker was killed", reason=reason)
                self.launcher.kill([run.handle])
                exit = self.launcher.poll(run.handle) or WorkerExit(None)
            self._finish(run, exit)
            reaped = True
        return reaped

    def _finish(self, run: _Running, exit: WorkerExit) -> None:
        self.running.remove(run)
        self._release(run.lease)
        reason, error = describe_exit(exit)
        # No-ops when the worker stored the outcome itself (only RUNNING trials finish).
        if exit.returncode in (-int(signal.SIGTERM), SIGTERM_EXIT):
            run.trial.interrupt(f"its worker got SIGTERM (preempted?): {reason}")  # not the trial's fault
        run.trial.fail(error, reason=reason)
        frozen = run.trial.snapshot()
        self.finished.append(frozen)
        if self.printer is not None:
            self.printer(frozen)
        self._failure = self._failure or search_error(self.study, frozen, self.stop_on_error)

    def _shutdown(self, why: str) -> None:
        """Store every running trial as interrupted, then kill the workers."""
        running, self.running = self.running, []
        for run in running:
            try:
                run.trial.interrupt(why)
            except Exception:  # noqa: BLE001 - storage trouble must not leave workers running
                pass
        if running:
            self.launcher.kill([r.handle for r in running])
        for run in running:
            self.launcher.poll(run.handle)
            self._release(run.lease)
            if self.printer is not None:
                try:
                    self.printer(run.trial.snapshot())
                except Exception:  # noqa: BLE001
                    pass


# Storage the workers can open ----------------------------------------------------------
@contextmanager
def shareable_study(study: Study) -> Iterator[Study]:
    """The study on a storage other processes can open.

    An in-memory study (the function API's default) is copied to a temporary SQLite file
    for the run (SQLite's backup API, so the whole database moves) and copied back after,
    so the caller's study and its storage object see every trial the workers stored.
    """
    storage = study.storage
    if not storage.is_memory:
        yield study
        return
    folder = Path(tempfile.mkdtemp(prefix="frameworm-shared-"))
    path = folder / "study.db"
    with storage._lock:  # noqa: SLF001 - no transaction may run while the database is copied
        raw = storage.engine.raw_connection()
        try:
            dst = sqlite3.connect(path)
            raw.driver_connection.backup(dst)  # type: ignore[union-attr]
            dst.close()
        finally:
            raw.close()
    shared_storage = Storage(f"sqlite:///{path}", heartbeat_timeout=storage.heartbeat_timeout)
    shared = Study(study.name, study.space, study.metric, study.mode, study.sampler, shared_storage, study.study_id)
    try:
        yield shared
    finally:
        shared_storage.close()
        with storage._lock:  # noqa: SLF001
            src = sqlite3.connect(path)
            raw = storage.engine.raw_connection()
            try:
                src.backup(raw.driver_connection)  # type: ignore[arg-type]
            finally:
                raw.close()
                src.close()
        shutil.rmtree(folder, ignore_errors=True)


# Entry points ---------------------------------------------------------------------------
def _run(
    study: Study, target: tuple[Any, ...], what: str, budget: int | None | Callable[[Study], int | None],
    n_jobs: int, *,
    run_dir: Path, directory_of: Callable[[int], Path], printer: TrialPrinter | None, stop_on_error: bool,
    executor: str, gpus_per_trial: float | None, trial_timeout: float | None, ray_address: str | None,
    cpus_per_trial: float, linger: bool,
) -> int:
    validate_gpus_per_trial(gpus_per_trial)
    if trial_timeout is not None and not trial_timeout > 0:
        raise ValueError(f"trial_timeout must be a positive number of seconds, but got trial_timeout={trial_timeout!r}.")
    target_bytes, main = dump_target(target, what)
    with shareable_study(study) as shared:
        base_payload = {
            "version": PAYLOAD_VERSION, "storage_url": _portable_url(shared.storage.secret_url),
            "heartbeat_timeout": shared.storage.heartbeat_timeout, "study_name": shared.name,
            "sys_path": [p for p in sys.path if p], "main": main, "executor": executor, "cwd": os.getcwd(),
        }

        def make_payload(trial: Trial, directory: Path) -> dict[str, Any]:
            return {**base_payload, "trial_id": trial.trial_id, "number": trial.number, "directory": str(directory)}

        pool: GpuPool | None = None
        gpu_env: dict[str, str] = {}
        target_path: Path | None = None
        launcher: Launcher
        if executor == "ray":
            from frameworm_lightning.runner._ray import RayLauncher  # noqa: PLC0415 - optional extra

            launcher = RayLauncher(target_bytes, address=ray_address, num_cpus=cpus_per_trial,
                                   num_gpus=gpus_per_trial or 0, n_jobs=n_jobs)
        else:
            if gpus_per_trial:
                pool = GpuPool(gpus_per_trial)
            elif gpus_per_trial == 0:
                gpu_env = {"CUDA_VISIBLE_DEVICES": ""}
            run_dir.mkdir(parents=True, exist_ok=True)
            target_path = run_dir / f"target-{os.getpid()}-{time.time_ns()}.pkl"
            write_private(target_path, target_bytes)
            launcher = LocalLauncher(target_path, n_jobs)
        try:
            return Supervisor(
                shared, budget, n_jobs, launcher, make_payload=make_payload, directory_of=directory_of,
                printer=printer, stop_on_error=stop_on_error, trial_timeout=trial_timeout, pool=pool,
                gpu_env=gpu_env, linger=linger,
            ).run()
        finally:
            if target_path is not None:
                target_path.unlink(missing_ok=True)


def run_parallel(
    study: Study, spec: TrialSpec, budget: int | None, n_jobs: int, *, printer: TrialPrinter | None = None,
    stop_on_error: bool = False, executor: str = "process", gpus_per_trial: float | None = None,
    trial_timeout: float | None = None, ray_address: str | None = None, cpus_per_trial: float = 1,
    linger: bool = False,
) -> int:
    """Run a Lightning search's trials in worker processes (``executor="process"``) or Ray tasks.

    Returns how many trials this process started. Raises ``KeyboardInterrupt`` (SIGINT)
    or ``SIGTERMException(143)`` (SIGTERM) after storing running trials as interrupted,
    and the error of ``runner/_rules.py`` (``stop_on_error``, a wrong metric...).
    """
    if executor not in ("process", "ray"):
        raise ValueError(f"run_parallel runs executor 'process' or 'ray', but got executor={executor!r}.")
    root = Path(spec.root_dir).resolve()
    spec = dataclasses.replace(spec, root_dir=str(root))
    callbacks = spec.callbacks
    # Stopping schedulers raise the budget with their promotions, as in the serial loop.
    budget_of = budget if budget is None else (lambda st: trial_budget(callbacks, st, budget))  # type: ignore[arg-type]
    return _run(
        study, ("lightning", spec), "the LightningModule, datamodule and callbacks", budget_of, n_jobs,
        run_dir=root / spec.study_name / ".frameworm",
        directory_of=lambda n: trial_dir(root, spec.study_name, n),
        printer=printer, stop_on_error=stop_on_error, executor=executor, gpus_per_trial=gpus_per_trial,
        trial_timeout=trial_timeout, ray_address=ray_address, cpus_per_trial=cpus_per_trial, linger=linger,
    )


def run_function_parallel(
    study: Study, train_fn: Callable[..., Any], base_config: Mapping[str, Any] | None, budget: int | None,
    n_jobs: int, *, printer: TrialPrinter | None = None, stop_on_error: bool = False, executor: str = "process",
    gpus_per_trial: float | None = None, trial_timeout: float | None = None, ray_address: str | None = None,
    cpus_per_trial: float = 1,
) -> int:
    """Run the function API's trials, ``train_fn(config)``, in worker processes or Ray tasks.

    ``train_fn`` must be importable by name: a function defined at module level (in a
    module, or in the script that runs the search, behind ``if __name__ == "__main__":``).
    """
    if isinstance(train_fn, types.FunctionType) and (
        "<locals>" in train_fn.__qualname__ or train_fn.__name__ == "<lambda>"
    ):
        raise ValueError(
            "n_jobs > 1 runs train_fn in worker processes, which import it by name, so it must be a "
            f"function defined at module level; {train_fn.__qualname__!r} is a lambda or a nested function."
        )
    folder = Path(tempfile.mkdtemp(prefix=f"frameworm-{study.name}-"))
    try:
        return _run(
            study, ("function", train_fn, dict(base_config or {}), study.metric), "train_fn and base_config",
            budget, n_jobs, run_dir=folder, directory_of=lambda n: folder / f"trial_{n}", printer=printer,
            stop_on_error=stop_on_error, executor=executor, gpus_per_trial=gpus_per_trial,
            trial_timeout=trial_timeout, ray_address=ray_address, cpus_per_trial=cpus_per_trial, linger=False,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
