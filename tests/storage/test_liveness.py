"""Which worker owns a running trial, and when it counts as dead (the storage's liveness rules)."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import pytest

from frameworm_lightning import Integer, RandomSampler, Study, TrialState
from frameworm_lightning.storage import _sql, current_owner, open_storage


def _study(url, name):
    return Study.create(name, {"x": Integer(0, 1000)}, metric="loss", sampler=RandomSampler(seed=0), storage=url)


@contextmanager
def other_container():
    """Run the body as a worker in another PID namespace with the same hostname and an overlapping pid."""
    with pytest.MonkeyPatch.context() as mp:
        # Same hostname, same pid as this process (pid namespaces overlap), another namespace.
        mp.setattr(_sql, "_pid_namespace", lambda: "0badc0de-999")
        mp.setattr(_sql, "_process_start_time", lambda pid: "424242")
        mp.setattr(_sql, "_TOKEN", "0ther0ther0t")
        yield


def test_owner_is_a_token_renewed_after_fork():
    owner = current_owner()
    assert owner.startswith(f"{_sql.socket.gethostname()}:{os.getpid()}:")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child writes its identity and leaves at once
        os.write(write, current_owner().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 512).decode()
    os.close(read), os.close(write)
    assert child.split(":")[-1] != owner.split(":")[-1], "a forked child needs its own token"
    assert current_owner() == owner


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_same_hostname_other_pid_namespace_is_not_interrupted(backend, study_name, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'ns.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    here = _study(url, study_name)
    mine = here.ask(budget=10)
    with other_container():
        theirs = _study(url, study_name).ask(budget=10)  # a live trial of the other container, fresh heartbeat
    assert theirs.snapshot().state is TrialState.RUNNING
    # This container's recovery must leave the other container's live trial alone ...
    assert here.recover() == []
    # ... and the other container's recovery leaves this one's alone.
    with other_container():
        assert _study(url, study_name).recover() == []
        assert theirs.complete(1.0)
    assert mine.complete(2.0)
    assert [t.state for t in here.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_silent_owner_elsewhere_is_interrupted_after_heartbeat_timeout(tmp_path, study_name):
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    theirs = _study(url, study_name).ask(budget=10, heartbeat_interval=3600)
    store = open_storage(url, heartbeat_timeout=0.0)
    here = Study.create(study_name, {"x": Integer(0, 1000)}, metric="loss", sampler=RandomSampler(seed=0), storage=store)
    with other_container():  # recovering from another container: only the heartbeat tells, and it is stale
        assert here.recover() == [theirs.number]


def test_late_complete_after_a_takeover_is_logged(tmp_path, study_name, caplog):
    url = f"sqlite:///{tmp_path / 'late.db'}"
    slow = _study(url, study_name).ask(budget=10, heartbeat_interval=3600)
    store = open_storage(url, heartbeat_timeout=0.0)
    taker = Study.create(study_name, {"x": Integer(0, 1000)}, metric="loss", sampler=RandomSampler(seed=0), storage=store)
    with other_container():
        taker_owner = taker.owner
        assert taker.recover() == [slow.number]
        rerun = taker.ask(budget=10)
    assert rerun.params == slow.params
    with caplog.at_level(logging.ERROR, logger="frameworm_lightning.storage"):
        assert slow.complete(0.5) is False
    (record,) = [r for r in caplog.records if "taken over" in r.getMessage()]
    text = record.getMessage()
    assert f"trial {slow.number}" in text and f"trial {rerun.number}" in text and taker_owner in text
    with other_container():
        assert rerun.complete(0.25)
    assert taker.trials[rerun.number].value == 0.25


def test_finishing_twice_in_one_process_is_not_a_takeover(tmp_path, study_name, caplog):
    study = _study(f"sqlite:///{tmp_path / 'twice.db'}", study_name)
    trial = study.ask(budget=10)
    assert trial.interrupt("SIGTERM")
    with caplog.at_level(logging.ERROR, logger="frameworm_lightning.storage"):
        assert trial.complete(1.0) is False
    assert not [r for r in caplog.records if "taken over" in r.getMessage()]
