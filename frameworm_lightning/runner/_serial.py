"""Trials one after another in this process: ``SearchRunner.fit`` and pull workers with ``executor="inline"``."""

from __future__ import annotations

import time
from typing import Any

from frameworm_lightning.runner._artifacts import remove_checkpoints
from frameworm_lightning.runner._execute import TrialSpec, execute_trial, trial_budget
from frameworm_lightning.runner._rules import search_error
from frameworm_lightning.runner._signals import sigterm_stops_search, stopped
from frameworm_lightning.study import Study
from frameworm_lightning.trial import TrialState

__all__ = ["run_serial"]

_WAIT_POLL_S = 5.0


def run_serial(study: Study, spec: TrialSpec, budget: int | None, printer: Any, *, stop_on_error: bool = False,
               keep_best: bool = False, wait: bool = False) -> int:
    """Claim and run trials until the budget is spent; return how many this process ran.

    Args:
        printer: called with each finished trial.
        stop_on_error: the first failure ends the search (:class:`TrialFailed`).
        keep_best: delete the checkpoints of all but the best trial after each trial.
        wait: when nothing is left to claim but other processes' trials run, wait for them
            and re-run those whose process died (pull workers).

    Raises:
        SIGTERMException: (exit status 143) SIGTERM stopped the search; the running trial
            was stored interrupted. ``KeyboardInterrupt`` likewise for Ctrl-C.
        FramewormError: a finished trial ended the search (``runner/_rules.py``).
    """
    ran = 0
    with sigterm_stops_search() as stop:
        while stop.signum is None:
            trial = study.ask(budget=budget if budget is None else trial_budget(spec.callbacks, study, budget))
            if trial is None:
                if wait and study.trials_in(TrialState.RUNNING):
                    time.sleep(_WAIT_POLL_S)
                    study.recover()
                    continue
                break
            execute_trial(spec, trial)
            ran += 1
            frozen = trial.snapshot()
            printer(frozen)
            if keep_best:
                remove_checkpoints(study)
            error = search_error(study, frozen, stop_on_error)
            if error is not None:
                raise error
        if stop.signum is not None:
            raise stopped()
    return ran
