"""The trial entry point: ``python -m frameworm_lightning.runner._trial_entry <trial.pkl>``.

Every trial a worker process runs starts here, in a fresh interpreter, with the
already-claimed trial named in its payload file. The process attaches to that trial
in storage, runs it (:func:`~frameworm_lightning.runner._execute.execute_trial` for a
Lightning search, :func:`~frameworm_lightning.search._function.evaluate_function` for
the function API), stores the outcome and exits.

Why a module of its own: Lightning's DDP launcher starts ranks 1..n-1 by re-running
the command line of rank 0 (``python -m <__main__'s module> <argv>``). Here that
command line is this module and this trial's payload, so the extra ranks re-run only
this trial — never the search — and attach to it as *followers*: they train, and
their stopping callbacks agree with rank 0 through the strategy, but only rank 0
writes to storage.

The process watches its parent: if the search process (or the Ray worker) dies, the
trial's whole process group (DDP ranks, DataLoader workers) is killed, so nothing is
left behind.

``python -m frameworm_lightning.runner._trial_entry --zygote`` is the *zygote*: a clean
process that imports torch and Lightning once, then forks one fresh process per trial
on request (one JSON line on stdin: payload, log, the trial's whole environment). It never initialises
CUDA, opens a database or starts a thread of its own, so each forked trial starts as a
new interpreter would — its own CUDA context, its own process group — without paying
the seconds of imports. Its ``__main__`` is this module, so DDP relaunches still re-run
only the trial. It reports ``{"started": pid}`` and ``{"exit": pid, "code": c}`` lines
on stdout, and kills its trials when its stdin closes (the search process is gone).
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import select
import pickle
import runpy
import signal
import socket
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.exceptions import SIGTERMException

from frameworm_lightning.runner._parallel import ENTRY_MODULE, PAYLOAD_VERSION, STORAGE_URL_ENV
from frameworm_lightning.runner._signals import SIGTERM_EXIT, sigterm_stops_search
from frameworm_lightning.storage import open_storage
from frameworm_lightning.study import Study, Trial
from frameworm_lightning.trial import TrialState

__all__ = ["ENTRY_MODULE", "PAYLOAD_VERSION", "FollowerTrial", "load_target", "main"]

# Environment variable naming the process group of the trial (set by rank 0 when it leads one).
_PGID_ENV = "FRAMEWORM_TRIAL_PGID"
_PARENT_POLL_S = 0.5


def _watch_parent() -> None:
    """Kill this trial's process group as soon as the process that started us is gone."""
    parent = os.getppid()
    pgid = os.environ.get(_PGID_ENV)

    def loop() -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != parent:
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
    if kind == "path":
        module.__dict__.update(runpy.run_path(ref, run_name="__mp_main__"))
    else:
        module.__dict__.update(runpy.run_module(ref, run_name="__mp_main__", alter_sys=False))
    sys.modules["__mp_main__"] = module
    return module


def load_target(payload: dict[str, Any], target_bytes: bytes | None = None) -> tuple[Any, ...]:
    """Unpickle what the trial runs, with the search script standing in for ``__main__``.

    ``__main__`` is put back afterwards: Lightning's DDP launcher reads it to re-launch
    this module, not the search script.
    """
    for entry in reversed(payload.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if target_bytes is None:
        target_bytes = Path(payload["target_path"]).read_bytes()
    this_main = sys.modules["__main__"]
    fake_main = _load_main(payload.get("main"))
    try:
        if fake_main is not None:
            sys.modules["__main__"] = fake_main
        return pickle.loads(target_bytes)
    finally:
        sys.modules["__main__"] = this_main


def _follower_rank() -> int:
    """This process's local rank when Lightning's launcher started it (0 for the trial's own process)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def _run(payload: dict[str, Any], rank: int) -> int:
    cwd = payload.get("cwd")
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    target = load_target(payload)
    storage = open_storage(os.environ[STORAGE_URL_ENV], heartbeat_timeout=payload["heartbeat_timeout"])
    study = Study.load(payload["study_name"], storage)
    frozen = storage.get_trial(payload["trial_id"])
    if rank == 0 and frozen.state is not TrialState.RUNNING:
        # Interrupted or failed (a timeout) by the search process before we got here.
        print(f"trial {frozen.number} is {frozen.state.value}, not RUNNING: nothing to do", file=sys.stderr)
        return 0
    trial: Trial | FollowerTrial
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
        _execute(target, trial)
    except SIGTERMException:
        # Lightning's SIGTERM path (or ours, outside a fit): the trial runs again on resume.
        trial.interrupt("the trial's worker got signal SIGTERM")
        raise
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        trial.fail(f"the trial called sys.exit({stop.code!r})\n{traceback.format_exc()}",
                   reason=f"the trial called sys.exit({stop.code!r})")
        return code
    except KeyboardInterrupt:
        trial.interrupt("the trial's worker got signal SIGINT")
        return 128 + signal.SIGINT
    finally:
        storage.close()
    failed = getattr(trial, "failed_here", False)
    # A follower rank that failed exits non-zero: Lightning's launcher then stops the others,
    # instead of rank 0 waiting for it in a collective forever.
    return 1 if failed else 0


def _execute(target: tuple[Any, ...], trial: Any) -> None:
    kind = target[0]
    if kind == "lightning":
        from frameworm_lightning.runner._execute import execute_trial  # noqa: PLC0415

        execute_trial(target[1], trial)
    elif kind == "function":
        from frameworm_lightning.search._function import evaluate_function  # noqa: PLC0415

        _, train_fn, base_config, metric = target
        evaluate_function(train_fn, trial, base_config, metric)
    else:
        raise ValueError(f"unknown trial target kind {kind!r}")


class FollowerTrial(Trial):
    """The trial as DDP ranks above 0 see it: reads like the real one, never writes to storage.

    Rank 0 stores reports and the outcome. A follower that fails writes its error to
    ``rank<r>.error`` in the trial's folder, where the search process picks it up.
    """

    def __init__(self, study: Study, frozen: Any, *, rank: int, directory: Path) -> None:
        self.rank = rank
        self.directory = directory
        self.failed_here = False
        super().__init__(study, frozen)

    def _heartbeat(self, interval: float) -> None:
        return  # rank 0 keeps the trial alive

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
    if argv == ["--zygote"]:
        return zygote()
    if len(argv) != 1:
        print(f"usage: python -m {ENTRY_MODULE} <trial.pkl> | --zygote", file=sys.stderr)
        return 2
    faulthandler.enable()  # a segfault prints every thread's Python stack into the trial's log
    rank = _follower_rank()
    if rank == 0 and os.getpgid(0) == os.getpid():
        os.environ[_PGID_ENV] = str(os.getpid())  # inherited by the DDP ranks Lightning starts
    _watch_parent()
    try:
        # SIGTERM (the search stopping, or a scheduler preempting this worker): Lightning's own
        # handler runs inside the fit, synchronised across DDP ranks; see runner/_signals.py.
        with sigterm_stops_search("trial worker"):
            with open(argv[0], "rb") as f:
                payload = pickle.load(f)
            if payload.get("version") != PAYLOAD_VERSION:
                print(f"payload version {payload.get('version')!r} is not {PAYLOAD_VERSION}", file=sys.stderr)
                return 2
            return _run(payload, rank)
    except SIGTERMException:
        return SIGTERM_EXIT


# The zygote -------------------------------------------------------------------------------
_protocol_fd = 1  # the zygote's channel to the search process (its original stdout)


def _send(message: dict[str, Any]) -> None:
    os.write(_protocol_fd, (json.dumps(message) + "\n").encode())


def _forked_trial(command: dict[str, Any]) -> None:
    """In the forked child: become the trial's process, run it, never return."""
    code = 1
    try:
        os.close(_protocol_fd)  # only the zygote speaks to the search process
        os.setpgid(0, 0)  # its own process group: killed as one, deaf to the terminal's Ctrl-C
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        if "env" in command:  # the trial's whole environment, as a spawned process would get it
            os.environ.clear()
            os.environ.update(command["env"])
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            import torch  # noqa: PLC0415 - already imported by the zygote

            torch.set_num_threads(int(threads))  # OpenMP read the variable when the zygote started
        sys.argv = [sys.argv[0], command["payload"]]  # what Lightning re-runs for DDP ranks 1..n-1
        code = main([command["payload"]])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything, then leave
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# Imported lazily by a trial's first steps; imports alone never touch CUDA, threads or files.
_PRELOAD = (
    "frameworm_lightning.search._function", "frameworm_lightning.stopping", "lightning.pytorch.loggers.csv_logs",
    "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "psycopg", "torch.profiler",
)


def _preload() -> None:
    import importlib  # noqa: PLC0415

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional module missing only costs its trials the import
            pass


def _cpu_only_torch() -> bool:
    """Whether torch was built without CUDA: only then can a warm-up fit never reach a GPU driver."""
    import torch  # noqa: PLC0415

    return torch.version.cuda is None and not torch.backends.cuda.is_built()


def _warm_up() -> None:
    """Run one tiny CPU fit, so forked trials find Lightning's caches (ABC checks...) filled.

    A trial's first fit in a fresh process spends about half a second filling them.
    Only with a CPU-only torch: on a CUDA build a Lightning fit initialises the CUDA
    driver (seen on an H100: the forked trials then found no GPU), which a zygote must
    never do. The fit runs on one thread with tensors too small for an OpenMP team, so
    the zygote stays safe to fork; if threads were left behind anyway, the log says so.
    """
    import tempfile  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    import lightning.pytorch as pl  # noqa: PLC0415
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
    threads = torch.get_num_threads()
    before = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    torch.set_num_threads(1)
    import logging  # noqa: PLC0415

    quiet = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    try:
        loader = DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)
        with tempfile.TemporaryDirectory(prefix="fw-zygote-") as root, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, default_root_dir=root,
                                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
            trainer.fit(Tiny(), loader, loader)
    except Exception as err:  # noqa: BLE001 - a warm-up that fails only costs the trials their warm caches
        print(f"zygote warm-up skipped: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
        torch.set_num_threads(threads)
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
    after = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
    if after > before:
        print(f"zygote warm-up left {after - before} thread(s) running", file=sys.stderr)


def zygote() -> int:
    """Fork one trial process per command read from stdin; report starts and exits on stdout."""
    global _protocol_fd
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping is the search process's decision
    # Keep stdout for the protocol alone: anything printed goes to stderr (the zygote's log).
    _protocol_fd = os.dup(1)
    os.dup2(2, 1)
    _preload()
    if os.environ.get("FRAMEWORM_ZYGOTE_WARM_UP", "1") != "0" and _cpu_only_torch():
        _warm_up()
    children: set[int] = set()
    buffer = b""
    _send({"ready": os.getpid()})
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        if readable:
            data = os.read(0, 65536)
            if not data:  # the search process is gone: so are its trials
                for pid in children:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                return 0
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _forked_trial(command)
                try:
                    os.setpgid(pid, pid)  # also here, so the group exists before we report the pid
                except OSError:
                    pass
                children.add(pid)
                _send({"started": pid, "id": command.get("id")})
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            _send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
