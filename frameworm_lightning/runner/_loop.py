"""The run loop: every search, in every execution mode, runs its trials here.

``run_study(study, launcher, ...)`` claims trials through storage (``study.ask``: atomic,
counted against the budget, so the sampler sees every running trial as pending), hands
each to a launcher (:mod:`._launcher`: inline, local processes, Ray) and watches them:

* a worker that dies without storing an outcome (``os._exit``, a segfault, the OOM
  killer, ``sys.exit``) has its trial stored ``FAILED`` with the exit code or signal and
  the tail of its log; its GPU lease is returned and the search goes on;
* a worker past ``trial_timeout`` has its trial stored ``FAILED`` first, then its whole
  process group is killed (``finish_trial`` moves only ``RUNNING`` trials, so whichever
  of the two stores first wins and the other is a no-op);
* SIGINT/SIGTERM stop the search: no new claims, running trials stored interrupted
  (their params are re-enqueued and run first on the next run), each trial's process
  sent SIGTERM, then its process group SIGKILL after a grace period; the search raises
  ``KeyboardInterrupt`` or ``SIGTERMException(143)``. Inline, the signal reaches the
  trial's own code instead (``runner/_inline.py``), with the same end;
* a worker ended by SIGTERM from outside (a scheduler preempting it) has its trial
  stored interrupted, not failed;
* a finished trial that shows every trial would fail (``runner/_rules.py``), or any
  failure under ``stop_on_error``, stops the search the same way and raises that error;
* with ``linger`` (pull workers), when nothing is left to claim but other processes'
  trials still run, the loop waits and re-runs those whose process died.

Schedulers (:class:`Scheduler`: halving's promotions) set the budget before each claim
and tidy up when the search ends. :func:`run_search` is what the front ends call
(``SearchRunner.fit`` and ``.worker``, the CLI, ``GridSearch.run`` and friends): it
picks the launcher for an executor and runs the loop.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from frameworm_lightning.exceptions import FramewormError
from frameworm_lightning.runner._gpus import GpuLease, GpuPool, validate_gpus_per_trial
from frameworm_lightning.runner._inline import InlineLauncher
from frameworm_lightning.runner._launcher import Launcher, WorkerExit, describe_exit
from frameworm_lightning.runner._payload import base_payload, dump_evaluate, portable_url, write_private
from frameworm_lightning.runner._processes import ProcessLauncher
from frameworm_lightning.runner._rules import search_error
from frameworm_lightning.runner._signals import (SIGTERM_EXIT, is_sigterm, say_stopped, sigterm_stops_search,
                                                 stop_signals_handled_by, stopped)
from frameworm_lightning.study import Study, Trial
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["Scheduler", "recover_trials", "run_search", "run_study"]

_log = logging.getLogger("frameworm_lightning")

_WAIT_S = 1.0          # the longest a wait lasts before the loop looks again
_LINGER_S = 5.0        # how often a pull worker with nothing to claim looks again


class Scheduler(Protocol):
    """What the loop asks of a search's scheduler (halving's promotions, a search budget)."""

    def trial_budget(self, study: Study, n_trials: int) -> int:
        """The budget for the next claim: ``n_trials`` plus what the scheduler queued (promotions)."""

    def on_search_end(self, study: Study) -> None:
        """The search has ended (remove what no trial will resume from)."""


def schedulers_in(callbacks: Sequence[Any]) -> list[Scheduler]:
    """The schedulers of a search's callbacks: what each one's ``scheduler()`` returns, if anything.

    The scheduler is an object of its own: the callback given to ``SearchRunner`` is
    asked for it once, and each trial's Trainer runs a copy of the callback.
    """
    out = []
    for callback in callbacks:
        make = getattr(callback, "scheduler", None)
        scheduler = make() if callable(make) else None
        if scheduler is not None:
            out.append(scheduler)
    return out


@dataclass
class _Running:
    trial: Trial
    handle: Any
    lease: GpuLease | None
    started: float


class _Loop:
    def __init__(self, study: Study, launcher: Launcher, *, budget: int | None, schedulers: Sequence[Scheduler],
                 n_jobs: int, printer: Callable[[FrozenTrial], None] | None, stop_on_error: bool,
                 trial_timeout: float | None, pool: GpuPool | None, gpu_env: Mapping[str, str], linger: bool,
                 after_trial: Callable[[Study], None] | None) -> None:
        self.study = study
        self.launcher = launcher
        self.budget = budget
        self.schedulers = list(schedulers)
        self.n_jobs = n_jobs if pool is None else min(n_jobs, pool.capacity)
        self.printer = printer
        self.stop_on_error = stop_on_error
        self.trial_timeout = trial_timeout
        self.pool = pool
        self.gpu_env = dict(gpu_env)
        self.linger = linger
        self.after_trial = after_trial
        self.running: list[_Running] = []
        self.started = 0
        self._signal: int | None = None
        self._failure: FramewormError | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # Signals ----------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._signal is None:
            self._signal = signum
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """Inline: signals reach the trial (``runner/_signals.py``). Else: noted, and the loop stops."""
        if self.launcher.blocking:
            with sigterm_stops_search():
                yield
            return
        with stop_signals_handled_by(self._on_signal):
            yield

    def _sleep(self, timeout: float) -> None:
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if ready:
            os.read(self._wake_r, 4096)

    # The loop ---------------------------------------------------------------------------
    def run(self) -> int:
        try:
            with self._signals():
                try:
                    self._loop()
                except KeyboardInterrupt as err:  # inline: Ctrl-C reached the trial, which stored itself interrupted
                    self._shutdown(_why_stopped(err))
                    say_stopped(signal.SIGINT)
                    raise
                except BaseException as err:
                    self._shutdown(_why_stopped(err))
                    raise
                finally:
                    self.launcher.close()
        finally:
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self._signal is not None:
            if self._signal == signal.SIGINT:
                say_stopped(signal.SIGINT)
                raise KeyboardInterrupt
            raise stopped()
        if self._failure is not None:
            raise self._failure
        return self.started

    def _next_budget(self) -> int | None:
        budget = self.budget
        if budget is None:
            return None
        for scheduler in self.schedulers:
            budget = scheduler.trial_budget(self.study, budget)
        return budget

    def _loop(self) -> None:
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
                    trial = self.study.ask(budget=self._next_budget())
                except BaseException:
                    self._release(lease)
                    raise
                if trial is None:
                    self._release(lease)
                    exhausted = True
                    break
                self._start(trial, lease)
                if self.launcher.blocking:
                    break  # it has ended: reap it before the next claim
            if self.running:
                if not self.launcher.blocking:
                    self.launcher.wait([r.handle for r in self.running], self._wait_s(), self._wake_r)
                continue
            if not exhausted or self._signal is not None:
                continue
            if self.linger and self.study.trials_in(TrialState.RUNNING):
                self._sleep(_LINGER_S)
                recover_trials(self.study, self.printer)
                exhausted = False
                continue
            return

    def _wait_s(self) -> float:
        if self.trial_timeout is None:
            return _WAIT_S
        now = time.monotonic()
        return max(0.0, min([_WAIT_S] + [r.started + self.trial_timeout - now for r in self.running]))

    def _release(self, lease: GpuLease | None) -> None:
        if self.pool is not None:
            self.pool.release(lease)

    def _start(self, trial: Trial, lease: GpuLease | None) -> None:
        env = lease.env() if lease is not None else dict(self.gpu_env)
        started = time.monotonic()
        try:
            handle = self.launcher.start(trial, env)
        except BaseException as err:
            self._release(lease)
            if self.launcher.blocking:
                if not trial.finished:  # stopped outside the trial's own handling: its params run first on resume
                    trial.interrupt(_why_stopped(err))
                self._print_stored(trial)  # a signal: the trial stored itself interrupted
                raise
            # It never ran: its params run again first on resume.
            trial.interrupt(f"could not start the trial's worker: {type(err).__name__}: {err}")
            if not isinstance(err, Exception):
                raise
            raise FramewormError(
                f"could not start trial {trial.number}'s worker process: {type(err).__name__}: {err} (the forkserver "
                "that forks trial processes was killed, or the machine is out of processes or memory); it is stored "
                "interrupted and runs first when the search runs again."
            ) from err
        self.running.append(_Running(trial, handle, lease, started))
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
        if not self.launcher.blocking or exit.returncode != 0:  # inline: an isolated trial's process died
            reason, error = describe_exit(exit)
            # No-ops when the worker stored the outcome itself (only RUNNING trials finish).
            if exit.returncode in (-int(signal.SIGTERM), SIGTERM_EXIT):
                run.trial.interrupt(f"its worker got SIGTERM (preempted?): {reason}")  # not the trial's fault
            run.trial.fail(error, reason=reason)
        frozen = run.trial.snapshot()
        if self.printer is not None:
            self.printer(frozen)
        if self.after_trial is not None:
            self.after_trial(self.study)
        self._failure = self._failure or search_error(self.study, frozen, self.stop_on_error)

    def _print_stored(self, trial: Trial) -> None:
        """Print ``trial`` if it has stored its outcome (never an error of its own: the search is stopping)."""
        if self.printer is None:
            return
        try:
            frozen = trial.snapshot()
        except Exception:  # noqa: BLE001 - storage trouble must not hide why the search stopped
            return
        if frozen.state.is_finished:
            self.printer(frozen)

    def _shutdown(self, why: str) -> None:
        """Store every running trial as interrupted, then stop their workers."""
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
            self._print_stored(run.trial)


def _why_stopped(err: BaseException) -> str:
    """Why a trial the search stopped on ``err`` is stored interrupted."""
    if isinstance(err, KeyboardInterrupt):
        return "the search was stopped by SIGINT"
    if is_sigterm(err):
        return "the search was stopped by SIGTERM"
    return f"the search process stopped: {type(err).__name__}: {err}"


def recover_trials(study: Study, printer: Callable[[FrozenTrial], None] | None, *,
                   retry_failed: bool = False) -> list[int]:
    """Store the trials whose process died interrupted and requeue their params (``retry_failed``:
    failed trials' too); ``printer`` shows each interrupted one once, as the loop shows its own.

    A resumed search calls it before its first claim, a pull worker whenever it waits for others'
    trials. Returns the numbers of the trials recovered.
    """
    numbers = study.recover(retry_failed=retry_failed)
    if numbers and printer is not None:
        for frozen in study.trials:
            if frozen.number in numbers and frozen.interrupted:  # a retried failure was shown when it failed
                printer(frozen)
    return numbers


def run_study(
    study: Study, launcher: Launcher, *, budget: int | None, schedulers: Sequence[Scheduler] = (), n_jobs: int = 1,
    printer: Callable[[FrozenTrial], None] | None = None, stop_on_error: bool = False,
    trial_timeout: float | None = None, pool: GpuPool | None = None, gpu_env: Mapping[str, str] | None = None,
    linger: bool = False, after_trial: Callable[[Study], None] | None = None,
) -> int:
    """Claim and run ``study``'s trials with ``launcher`` until the budget is spent; how many this process ran.

    Args:
        budget: the study's trial budget (``None``: until the sampler is exhausted);
            each scheduler may raise it before a claim (``0`` ends the search).
        n_jobs: trials at once (1 for an inline launcher).
        printer: called with each finished trial.
        stop_on_error: the first failure ends the search (:class:`TrialFailed`).
        trial_timeout: seconds a worker may run before its trial is failed and it is killed.
        pool: GPU leases (``None``: GPUs are not placed by us); ``gpu_env`` is the
            worker environment when there is no pool (``{"CUDA_VISIBLE_DEVICES": ""}``).
        linger: when nothing can be claimed but other processes' trials still run, wait
            and recover the ones whose process died (pull workers).
        after_trial: called with the study after each finished trial (``keep_checkpoints="best"``).

    Raises:
        SIGTERMException: (exit status 143) SIGTERM stopped the search; running trials
            were stored interrupted. ``KeyboardInterrupt`` likewise for Ctrl-C.
        FramewormError: a finished trial ended the search (``runner/_rules.py``).
    """
    if launcher.blocking and n_jobs != 1:
        raise ValueError(f"an inline launcher runs one trial at a time, but got n_jobs={n_jobs!r}.")
    loop = _Loop(study, launcher, budget=budget, schedulers=schedulers, n_jobs=n_jobs, printer=printer,
                 stop_on_error=stop_on_error, trial_timeout=trial_timeout, pool=pool, gpu_env=gpu_env or {},
                 linger=linger, after_trial=after_trial)
    ran = loop.run()
    for scheduler in schedulers:  # only at a search's end: a stopped one resumes from what they keep
        scheduler.on_search_end(study)
    return ran


def run_search(
    study: Study, evaluate: Callable[[Trial], None], *, executor: str, budget: int | None, what: str,
    directory_of: Callable[[int], Path] | None = None, run_dir: Path | None = None, n_jobs: int = 1,
    schedulers: Sequence[Scheduler] = (), printer: Callable[[FrozenTrial], None] | None = None,
    stop_on_error: bool = False, trial_timeout: float | None = None, gpus_per_trial: float | None = None,
    ray_address: str | None = None, cpus_per_trial: float = 1, linger: bool = False,
    after_trial: Callable[[Study], None] | None = None,
) -> int:
    """Run ``study`` with ``evaluate(trial)`` for each trial on ``executor``'s launcher (see :func:`run_study`).

    Args:
        executor: ``"inline"``, ``"process"`` or ``"ray"`` (resolved already). Inline, a
            trial that crashed the search process before runs in a process of its own
            (``runner/_inline.py``).
        what: names what ``evaluate`` holds, for the error if it does not pickle.
        directory_of: the folder of trial ``n`` (a worker's payload and log go there;
            default: ``trial_<n>`` in ``run_dir``).
        run_dir: where the pickled evaluation is kept while the search runs (default: a
            temporary folder, removed at the end).
    """
    if executor not in ("inline", "process", "ray"):
        raise ValueError(f"executor must be 'inline', 'process' or 'ray', but got executor={executor!r}.")
    workers = _Workers(evaluate, what, directory_of, run_dir)
    try:
        if executor == "inline":
            return run_study(study, InlineLauncher(evaluate, lambda: workers.isolated(study)), budget=budget,
                             schedulers=schedulers, printer=printer, stop_on_error=stop_on_error, linger=linger,
                             after_trial=after_trial)
        validate_gpus_per_trial(gpus_per_trial)
        if trial_timeout is not None and not trial_timeout > 0:
            raise ValueError(
                f"trial_timeout must be a positive number of seconds, but got trial_timeout={trial_timeout!r}.")
        evaluate_bytes, main = dump_evaluate(evaluate, what)
        pool: GpuPool | None = None
        gpu_env: dict[str, str] = {}
        with study.storage.shareable() as storage:
            shared = study if storage is study.storage else Study(
                study.name, study.space, study.metric, study.mode, study.sampler, storage, study.study_id)
            launcher: Launcher
            if executor == "ray":
                from frameworm_lightning.runner._ray import RayLauncher  # noqa: PLC0415 - optional extra

                launcher = RayLauncher(shared, evaluate_bytes, main, workers.directory_of, address=ray_address,
                                       num_cpus=cpus_per_trial, num_gpus=gpus_per_trial or 0, n_jobs=n_jobs)
            else:
                if gpus_per_trial:
                    pool = GpuPool(gpus_per_trial)
                elif gpus_per_trial == 0:
                    gpu_env = {"CUDA_VISIBLE_DEVICES": ""}
                launcher = workers.processes(shared, evaluate_bytes, main, n_jobs)
            return run_study(shared, launcher, budget=budget, schedulers=schedulers, n_jobs=n_jobs, printer=printer,
                             stop_on_error=stop_on_error, trial_timeout=trial_timeout, pool=pool, gpu_env=gpu_env,
                             linger=linger, after_trial=after_trial)
    finally:
        workers.close()


class _Workers:
    """The files a search's worker processes share: the pickled evaluation and its folder."""

    def __init__(self, evaluate: Callable[[Trial], None], what: str, directory_of: Callable[[int], Path] | None,
                 run_dir: Path | None) -> None:
        self.evaluate = evaluate
        self.what = what
        self.run_dir = run_dir
        self._folder: Path | None = run_dir
        self._directory_of = directory_of
        self._evaluate_path: Path | None = None

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="frameworm-"))
        return self._folder

    def directory_of(self, number: int) -> Path:
        if self._directory_of is not None:
            return self._directory_of(number)
        return self.folder / f"trial_{number}"

    def processes(self, study: Study, evaluate_bytes: bytes, main: tuple[str, str] | None,
                  n_jobs: int) -> ProcessLauncher:
        """A process launcher for ``study`` (shareable storage) running the pickled evaluation."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"evaluate-{os.getpid()}-{time.time_ns()}.pkl"
        self._evaluate_path = write_private(path, evaluate_bytes)
        return ProcessLauncher(base_payload(study, str(path), main, "process"),
                               portable_url(study.storage.secret_url), self.directory_of, n_jobs)

    def isolated(self, study: Study) -> Launcher | None:
        """For an inline search: one process for a trial that crashed the search process before,
        or ``None`` when the evaluation cannot leave this process."""
        if study.storage.is_memory:
            return None
        try:
            evaluate_bytes, main = dump_evaluate(self.evaluate, self.what)
        except ValueError as err:
            _log.warning("%s", err)
            return None
        return self.processes(study, evaluate_bytes, main, 1)

    def close(self) -> None:
        if self._evaluate_path is not None:
            self._evaluate_path.unlink(missing_ok=True)
        if self.run_dir is None and self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
