"""Where a claimed trial runs: the ``Launcher`` protocol, and which launcher a search gets.

The run loop (:mod:`._loop`) claims trials; a launcher runs each one somewhere and says
how it ended. Three implementations, one module each:

* :class:`~._inline.InlineLauncher` — in the search process, one at a time;
* :class:`~._processes.ProcessLauncher` — one local process per trial, forked by the
  standard library's forkserver from a parent that imported torch and Lightning once;
* :class:`~._ray.RayLauncher` — one Ray task per trial (which runs the trial in a process
  of its own on its node, as locally).

A launcher never stores a trial's outcome itself: the trial (in whatever process it
runs) stores it; the loop stores what a worker that died without storing it left behind
(:func:`describe_exit`).

Example:
    >>> resolve_executor("auto", n_jobs=1)
    'inline'
    >>> resolve_executor("auto", n_jobs=1, trainer_kwargs={"strategy": "ddp", "devices": 2})
    'process'
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from frameworm_lightning.space import Categorical, SearchSpace
from frameworm_lightning.study import Trial

__all__ = ["EXECUTORS", "Launcher", "WorkerExit", "describe_exit", "resolve_executor", "validate_executor"]

EXECUTORS = ("auto", "inline", "process", "ray")


@dataclass
class WorkerExit:
    """How a trial's worker ended.

    Attributes:
        returncode: the exit status (negative: killed by that signal), or ``None`` when
            the launcher lost the worker (``detail`` says how).
        log_tail: the last lines of the worker's output.
        detail: the launcher's own report (a Ray error).
        extra: errors of DDP ranks above 0.
        log_path: where the worker's whole output is.
    """

    returncode: int | None
    log_tail: str = ""
    detail: str | None = None
    extra: list[str] = field(default_factory=list)
    log_path: str | None = None


class Launcher(Protocol):
    """Runs claimed trials somewhere and reports how their workers end.

    Attributes:
        blocking: ``start`` runs the trial to its end in this process (inline): signals
            then reach the trial's own code, and the loop never waits.
    """

    blocking: bool

    def start(self, trial: Trial, env: Mapping[str, str]) -> Any:
        """Start running ``trial`` (claimed, ``RUNNING``) with ``env`` added to its environment; a handle."""

    def poll(self, handle: Any) -> WorkerExit | None:
        """``None`` while the trial's worker runs, else how it ended (reaping it)."""

    def wait(self, handles: Sequence[Any], timeout: float, wake_fd: int) -> None:
        """Return when a worker may have ended, ``wake_fd`` is readable, or after ``timeout`` s."""

    def kill(self, handles: Sequence[Any]) -> None:
        """Stop these workers now (their trials' outcomes are already stored)."""

    def close(self) -> None:
        """Release what the launcher holds."""


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
