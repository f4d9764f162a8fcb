"""A trial's heartbeat stops on every path that leaves the trial: finished, dropped, taken over, abandoned.

A heartbeat that outlives its trial keeps writing to storage from a thread nobody stops
(a notebook's search that stopped on an error, a user's ``study.ask()`` loop that gave up).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from frameworm_lightning import Integer, RandomSampler, Study, TrialState
from frameworm_lightning.search import GridSearch
from frameworm_lightning.storage import open_storage

_DEADLINE_S = 20.0  # generous: the beat is every 0.05 s; a loaded 2-core machine may still be slow


def _beating(number: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"fw-heartbeat-{number}" and t.is_alive()]


def _until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + _DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return True
        gc.collect()
        time.sleep(0.05)
    return condition()


def _study(url: str, name: str, **storage_kwargs: float) -> Study:
    storage = open_storage(url, **storage_kwargs) if storage_kwargs else url
    return Study.create(name, {"x": Integer(0, 1000)}, metric="loss", sampler=RandomSampler(seed=0), storage=storage)


def _row_heartbeat(study: Study, trial_id: int) -> float:
    import sqlalchemy as sa

    from frameworm_lightning.storage._sql import trials

    with study.storage._tx() as conn:
        return conn.execute(sa.select(trials.c.heartbeat_at).where(trials.c.trial_id == trial_id)).scalar_one()


def test_a_trial_dropped_unfinished_stops_beating(tmp_path: Path, study_name: str) -> None:
    study = _study(f"sqlite:///{tmp_path / 'hb.db'}", study_name)
    trial = study.ask(heartbeat_interval=0.05)
    number, trial_id = trial.number, trial.trial_id
    assert _until(lambda: _row_heartbeat(study, trial_id) > 0) and _beating(number)
    del trial  # a user's study.ask() loop that gave up on it
    assert _until(lambda: not _beating(number)), "the dropped trial's heartbeat thread still runs"
    last = _row_heartbeat(study, trial_id)
    time.sleep(0.3)
    assert _row_heartbeat(study, trial_id) == last


def test_a_trial_taken_over_stops_beating(tmp_path: Path, study_name: str) -> None:
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    slow = _study(url, study_name).ask(heartbeat_interval=0.05)
    # another worker found it silent and stored it interrupted (its params run again elsewhere)
    assert _study(url, study_name).storage.interrupt_trial(slow.trial_id, "no heartbeat for 130s")
    assert _until(lambda: not _beating(slow.number)), "the taken-over trial's heartbeat thread still runs"
    assert slow.snapshot().state is TrialState.FAILED and slow.snapshot().interrupted


class Abort(BaseException):
    """What no trial handler catches: a BaseException of the user's (or a signal between two handlers)."""


def test_a_search_stopped_by_what_its_trial_did_not_handle_stores_the_trial_interrupted(tmp_path: Path) -> None:
    def train_fn(config: dict) -> float:
        raise Abort

    search = GridSearch(base_config={"lr": 0.1}, search_space={"lr": [0.1, 0.2]}, verbose=False,
                        storage=f"sqlite:///{tmp_path / 'hb.db'}", study_name="abandoned")
    with pytest.raises(Abort):
        search.run(train_fn)
    trial, requeued = search.open_study().trials  # its params run first on resume
    assert trial.state is TrialState.FAILED and trial.interrupted, trial
    assert trial.error == "interrupted: the search process stopped: Abort: " and requeued.state is TrialState.WAITING
    assert _until(lambda: not _beating(trial.number)), "the abandoned trial's heartbeat thread still runs"
