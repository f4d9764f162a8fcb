"""Trials in the search process itself, one after another: ``executor="inline"``.

The default with ``n_jobs=1`` when nothing needs a process of its own: a breakpoint in
``training_step`` stops where the user expects, classes defined in a notebook work, and
nothing is pickled. Signals reach the trial's own code: Ctrl-C is a
``KeyboardInterrupt`` inside the fit, SIGTERM goes through Lightning's handler
(``runner/_signals.py``); the trial stores itself interrupted and the loop lets the
exception end the search.

A trial that crashes the interpreter (a segfault in native code, the out-of-memory
killer) takes the search process with it the first time: nothing in a process can
outlive it. Storage notes the death when the search runs again (``Study.recover``) and
requeues the trial first, with its ``process_deaths``. From then on the study has shown
that its trials can crash the interpreter, so every trial of it runs *isolated*: in a
process of its own (``runner/_processes.py``), while the search waits for it as it waits
for an inline trial. A trial that crashes again kills only its process: it is stored
``FAILED`` with the signal and the tail of its output, and the search goes on. An
evaluation that cannot be pickled (a class defined in a notebook), or a study kept in
memory, cannot run elsewhere; trials then run inline again, with a warning, and
``storage.MAX_PROCESS_DEATHS`` deaths end a trial's re-runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from frameworm_lightning.runner._launcher import Launcher, WorkerExit
from frameworm_lightning.study import Trial
from frameworm_lightning.trial import FrozenTrial

__all__ = ["InlineLauncher", "crashed_before"]

_log = logging.getLogger("frameworm_lightning")
_WAIT_S = 1.0


def crashed_before(trial: Trial | FrozenTrial) -> bool:
    """Whether an earlier run of this trial's params died with its process (``process_deaths``)."""
    return bool(trial.system_attrs.get("process_deaths"))


class InlineLauncher:
    """Runs ``evaluate(trial)`` at once, in this process; ``start`` returns when the trial ended.

    Args:
        evaluate: the trial's evaluation.
        isolation: gives the launcher that runs each trial in a process of its own once a
            trial of the study has crashed the search process (:func:`crashed_before`);
            called when the first trial starts, if one has.
    """

    blocking = True

    def __init__(self, evaluate: Callable[[Trial], None],
                 isolation: Callable[[], Launcher | None] | None = None) -> None:
        self.evaluate = evaluate
        self.isolation = isolation
        self._isolated: Launcher | None = None
        self._wake_r, self._wake_w = -1, -1

    def start(self, trial: Trial, env: Mapping[str, str]) -> WorkerExit:
        if self.isolation is not None:  # the first trial: has the study crashed this process before?
            if crashed_before(trial) or any(crashed_before(t) for t in trial.study.trials):
                self._isolated = self.isolation()
                if self._isolated is None:
                    _log.warning("a trial of study %r crashed the search process before, but its trials cannot "
                                 "run in processes of their own; they run inline.", trial.study.name)
                else:
                    _log.warning("a trial of study %r crashed the search process before: each trial now runs in a "
                                 "process of its own (executor='process' does so from the start).", trial.study.name)
                    self._wake_r, self._wake_w = os.pipe()
            self.isolation = None
        if self._isolated is not None:
            return self._run_isolated(self._isolated, trial, env)
        self.evaluate(trial)
        return WorkerExit(0)

    def _run_isolated(self, launcher: Launcher, trial: Trial, env: Mapping[str, str]) -> WorkerExit:
        handle = launcher.start(trial, env)
        try:
            while (exit := launcher.poll(handle)) is None:
                launcher.wait([handle], _WAIT_S, self._wake_r)
        except BaseException:  # Ctrl-C, SIGTERM: the search stops, and so does the trial
            trial.interrupt("the search process stopped")
            launcher.kill([handle])
            launcher.poll(handle)
            raise
        return exit

    def poll(self, handle: WorkerExit) -> WorkerExit:
        return handle

    def wait(self, handles: Sequence[Any], timeout: float, wake_fd: int) -> None:
        return None

    def kill(self, handles: Sequence[Any]) -> None:
        return None

    def close(self) -> None:
        if self._isolated is not None:
            self._isolated.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._isolated = None
