"""Trials in the search process itself, one after another: ``executor="inline"``.

The default with ``n_jobs=1`` when nothing needs a process of its own: a breakpoint in
``training_step`` stops where the user expects, classes defined in a notebook work, and
nothing is pickled. Signals reach the trial's own code: Ctrl-C is a
``KeyboardInterrupt`` inside the fit, SIGTERM goes through Lightning's handler
(``runner/_signals.py``); the trial stores itself interrupted and the loop lets the
exception end the search.

A trial that crashes the interpreter (a segfault in native code) takes the search
process with it; each run of the search then re-runs it first, and after
``storage.MAX_PROCESS_DEATHS`` such deaths it is stored ``FAILED`` instead. Use
``executor="process"`` to keep such trials away from the search process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from frameworm_lightning.runner._launcher import WorkerExit
from frameworm_lightning.study import Trial

__all__ = ["InlineLauncher"]


class InlineLauncher:
    """Runs ``evaluate(trial)`` at once, in this process; ``start`` returns when the trial ended."""

    blocking = True

    def __init__(self, evaluate: Callable[[Trial], None]) -> None:
        self.evaluate = evaluate

    def start(self, trial: Trial, env: Mapping[str, str]) -> WorkerExit:
        self.evaluate(trial)
        return WorkerExit(0)

    def poll(self, handle: WorkerExit) -> WorkerExit:
        return handle

    def wait(self, handles: Sequence[Any], timeout: float, wake_fd: int) -> None:
        return None

    def kill(self, handles: Sequence[Any]) -> None:
        return None

    def close(self) -> None:
        return None
