"""Storage: every backend (memory, SQLite file, PostgreSQL) through the same tests."""

from __future__ import annotations

import math
import multiprocessing as mp

import pytest

from frameworm_lightning import (
    GridSampler,
    Integer,
    RandomSampler,
    Real,
    StorageError,
    Study,
    StudyMismatchError,
    TrialState,
    open_storage,
)
from frameworm_lightning.storage import MAX_PROCESS_DEATHS, DuplicateClaimError
from frameworm_lightning.storage import _sql as sql

from . import _workers


def make_study(url, name, sampler=None, space=None):
    return Study.create(name, space or {"x": Real(0, 1)}, metric="loss", sampler=sampler or RandomSampler(seed=0),
                        storage=url)


def test_trial_record_roundtrip(storage_url, study_name):
    study = make_study(storage_url, study_name)
    trial = study.ask(budget=5)
    trial.report(10, 0.5)
    trial.report(20, 0.25)
    trial.report(20, 0.2)  # the same step again overwrites
    trial.report(25, float("nan"))
    trial.set_user_attr("note", {"k": [1, 2]})
    assert trial.complete(0.2)
    assert not trial.complete(0.1), "a finished trial cannot finish twice"
    (t,) = study.trials
    assert t.state is TrialState.COMPLETE and t.value == 0.2 and t.number == 0
    assert list(t.intermediate_values) == [10, 20, 25]
    assert t.intermediate_values[20] == 0.2 and math.isnan(t.intermediate_values[25])
    assert t.user_attrs == {"note": {"k": [1, 2]}}
    assert 0 <= t.duration < 60 and t.datetime_start <= t.datetime_complete
    assert 0 <= t.params["x"] <= 1


def test_states_errors_and_budget(storage_url, study_name):
    study = make_study(storage_url, study_name)
    a, b, c = study.ask(budget=3), study.ask(budget=3), study.ask(budget=3)
    assert study.ask(budget=3) is None, "three running trials use the whole budget"
    a.complete(1.0)
    b.report(1, 3.0)
    b.prune("worse than median")
    c.fail("Traceback ...\nValueError: boom")
    states = {t.number: t for t in study.trials}
    assert states[1].state is TrialState.PRUNED and states[1].value == 3.0 and states[1].reason == "worse than median"
    assert states[2].state is TrialState.FAILED and "ValueError: boom" in states[2].error
    assert study.best_trial.number == 0
    assert study.ask(budget=3) is None


def test_nan_objective_fails_the_trial(storage_url, study_name):
    study = make_study(storage_url, study_name)
    t = study.ask()
    t.complete(float("nan"))
    assert study.trials[0].state is TrialState.FAILED and "nan" in study.trials[0].error


def test_resume_never_reruns_and_counts_stored_trials(tmp_path, study_name):
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = make_study(url, study_name, GridSampler(), {"a": [1, 2, 3, 4]})
    for _ in range(2):
        t = first.ask(budget=None)
        t.complete(float(t.params["a"]))
    first.storage.close()
    again = make_study(url, study_name, GridSampler(), {"a": [1, 2, 3, 4]})
    seen = []
    while (t := again.ask(budget=None)) is not None:
        seen.append(t.params["a"])
        t.complete(0.0)
    assert seen == [3, 4]
    assert [t.params["a"] for t in again.trials] == [1, 2, 3, 4]


def test_changed_space_or_mode_is_an_error_on_resume(storage_url, study_name):
    make_study(storage_url, study_name, space={"x": Real(0, 1)})
    with pytest.raises(StudyMismatchError, match="search space changed"):
        make_study(storage_url, study_name, space={"x": Real(0, 2)})
    with pytest.raises(StudyMismatchError, match="mode 'min' is stored"):
        Study.create(study_name, {"x": Real(0, 1)}, metric="loss", mode="max", storage=storage_url)
    with pytest.raises(StudyMismatchError, match="metric 'loss' is stored"):
        Study.create(study_name, {"x": Real(0, 1)}, metric="acc", storage=storage_url)


def test_enqueued_configs_run_first_and_once(storage_url, study_name):
    study = make_study(storage_url, study_name)
    study.enqueue({"x": 0.25})
    study.enqueue({"x": 0.25})  # skipped: already waiting
    study.enqueue({"x": 0.75})
    got = []
    while (t := study.ask(budget=3)) is not None:
        got.append(t.params["x"])
        t.complete(t.params["x"])
    assert got[:2] == [0.25, 0.75] and len(got) == 3
    study.enqueue({"x": 0.25})  # complete already: skipped on a re-run of the script
    assert study.ask(budget=4).params["x"] != 0.25


def test_claim_keys_are_unique(storage_url, study_name):
    study = make_study(storage_url, study_name)
    t1 = study.storage.claim_trial(study.study_id, "me", None)[0]
    t2 = study.storage.claim_trial(study.study_id, "me", None)[0]
    study.storage.set_trial_params(t1.trial_id, {"x": 0.1}, "grid:0")
    with pytest.raises(DuplicateClaimError):
        study.storage.set_trial_params(t2.trial_id, {"x": 0.1}, "grid:0")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_killed_process_trial_is_interrupted_and_rerun(backend, study_name, tmp_path, request):
    storage_url = f"sqlite:///{tmp_path / 'killed.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_workers.die_while_running, args=(storage_url, study_name, 2))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 3
    study = Study.create(study_name, {"x": Integer(0, 1000)}, metric="loss", sampler=RandomSampler(seed=0),
                         storage=storage_url)
    (running,) = study.trials_in(TrialState.RUNNING)
    assert study.recover() == [running.number]
    lost = study.trials[running.number]
    assert lost.state is TrialState.FAILED and lost.reason == "interrupted" and lost.interrupted
    assert "process is gone" in lost.error and lost.intermediate_values == {5: 1.0}
    (waiting,) = study.trials_in(TrialState.WAITING)
    assert waiting.params == lost.params
    ran = []
    while (t := study.ask(budget=10)) is not None:
        ran.append(t.params)
        t.complete(1.0)
    assert ran[0] == lost.params, "the interrupted params run first"
    assert len(study.trials_in(TrialState.COMPLETE)) == 10, "the budget of completed trials is met"


def test_reruns_then_promotions_are_claimed_before_other_waiting_trials(storage_url, study_name):
    # A user enqueued three configs; the first is interrupted, and a scheduler enqueues a
    # promotion after the user's configs. The interrupted config runs first, the promotion
    # next (ASHA: promote when one is due, else start a new configuration), then the rest.
    study = make_study(storage_url, study_name)
    for x in (0.1, 0.2, 0.3):
        study.enqueue({"x": x})
    first = study.ask(budget=None)
    assert first.params == {"x": 0.1}
    first.interrupt("preempted")
    study.storage.enqueue(study.study_id, {"x": 0.9}, claim_key="promote:7:1", skip_if_exists=False,
                          system_attrs={"promoted_from": 7})
    order = []
    while (t := study.ask(budget=None)) is not None and t.params["x"] in (0.1, 0.2, 0.3, 0.9):
        order.append(t.params["x"])
        t.complete(t.params["x"])
        if len(order) == 4:
            break
    assert order == [0.1, 0.9, 0.2, 0.3]


def test_a_trial_whose_process_keeps_dying_is_failed_after_three_runs(storage_url, study_name, monkeypatch):
    # A trial that crashes the interpreter (a segfault in the default inline mode) leaves it RUNNING;
    # each recover() used to requeue it first, so every re-run of the search died on it again.
    monkeypatch.setattr(sql, "_owner_alive", lambda owner: False)  # every claimed trial's process "died"
    study = make_study(storage_url, study_name, GridSampler(), {"a": [1, 2]})
    for run in range(1, MAX_PROCESS_DEATHS + 1):
        t = study.ask(budget=None)
        assert t.params == {"a": 1}, f"run {run} re-runs the interrupted params first"
        assert study.recover() == [t.number]
    dead = study.trials[-1]
    assert dead.state is TrialState.FAILED and not dead.interrupted
    assert dead.reason == f"its process died {MAX_PROCESS_DEATHS} times (trials 0, 1, 2); not re-run"
    t = study.ask(budget=None)
    assert t.params == {"a": 2}, "the search goes on with the rest of the grid"
    t.complete(1.0)
    assert study.ask(budget=None) is None
    assert study.recover(retry_failed=True) == [dead.number], "retry_failed runs it again, with a fresh count"
    t = study.ask(budget=None)
    assert t.params == {"a": 1} and study.recover() == [t.number]
    assert study.trials[-1].state is TrialState.WAITING


def test_failed_trials_rerun_only_when_asked(storage_url, study_name):
    study = make_study(storage_url, study_name, GridSampler(), {"a": [1, 2]})
    t = study.ask(budget=None)
    t.fail("boom")
    t = study.ask(budget=None)
    t.complete(2.0)
    assert study.ask(budget=None) is None
    assert study.recover(retry_failed=False) == []
    assert study.ask(budget=None) is None
    assert study.recover(retry_failed=True) == [0]
    t = study.ask(budget=None)
    assert t.params == {"a": 1}
    t.complete(1.0)
    assert study.recover(retry_failed=True) == [], "a retried failure is not retried again"
    assert [(x.number, x.state.value) for x in study.trials] == [(0, "FAILED"), (1, "COMPLETE"), (2, "COMPLETE")]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_processes_share_a_grid_without_duplicates(backend, tmp_path, study_name, request):
    url = f"sqlite:///{tmp_path / 'grid.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_workers.grid_worker, [(url, study_name, 0.01), (url, study_name, 0.01)])
    study = Study.create(study_name, _workers.grid_space(), metric="loss", sampler=GridSampler(), storage=url)
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(params) == 30 == len(set(params)), "every grid point exactly once"
    assert all(results), f"both processes took part: {[len(r) for r in results]}"
    # A reservation whose last free point the other process took is released, so numbers may skip one.
    assert sorted(results[0] + results[1]) == sorted(t.number for t in study.trials)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_unwritable_sqlite_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the folder") as info:
        open_storage(f"sqlite:///{blocker / 'sub' / 's.db'}")
    assert "a-file" in str(info.value)


def test_not_a_url_is_a_clear_error():
    with pytest.raises(StorageError, match="not a database URL"):
        open_storage("runs/study.db")


def test_sqlite_uses_wal(tmp_path):
    store = open_storage(f"sqlite:///{tmp_path / 'w.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_stored_space_and_params_keep_their_order(tmp_path):
    url = f"sqlite:///{tmp_path / 'o.db'}"
    space = {"zeta": Real(0, 1), "alpha": [1, 2], "mid": Integer(0, 3)}
    study = Study.create("ordered", space, metric="loss", sampler=RandomSampler(seed=0), storage=url)
    study.ask().complete(1.0)
    loaded = Study.load("ordered", url)
    assert list(loaded.space) == ["zeta", "alpha", "mid"]
    assert list(loaded.trials[0].params) == ["zeta", "alpha", "mid"]


def test_a_rerun_keeps_what_the_trial_evaluates_not_how_it_ran(storage_url, study_name):
    study = make_study(storage_url, study_name)
    t = study.ask()
    for key, value in {"resume_checkpoint": "/ckpt/parent.ckpt", "fw_bracket": 1, "trial_dir": "/runs/t0"}.items():
        t.set_system_attr(key, value)
    assert t.interrupt("SIGTERM")
    (waiting,) = study.trials_in(TrialState.WAITING)
    assert waiting.system_attrs["resume_checkpoint"] == "/ckpt/parent.ckpt" and waiting.system_attrs["fw_bracket"] == 1
    assert "trial_dir" not in waiting.system_attrs and waiting.system_attrs["retry_of"] == t.number


def test_index_added_to_a_database_created_without_it(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_storage(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_fw_trials_study_state")
    store.close()
    reopened = open_storage(url)
    names = {ix["name"] for ix in sa.inspect(reopened.engine).get_indexes("fw_trials")}
    assert "ix_fw_trials_study_state" in names


def test_finished_trials_reports_are_read_once_and_everything_else_afresh(storage_url, study_name):
    study = make_study(storage_url, study_name)
    done, running = study.ask(budget=5), study.ask(budget=5)
    done.report(1, 0.5)
    done.complete(0.4)
    running.report(1, 0.9)
    known: dict[int, dict[int, float]] = {}
    storage = study.storage
    first = storage.get_trials(study.study_id, known_values=known)
    assert [t.intermediate_values for t in first] == [{1: 0.5}, {1: 0.9}]
    assert set(known) == {done.trial_id}  # only the finished trial's reports are kept
    with storage._tx() as conn:  # noqa: SLF001 - remove the stored reports behind the reader's back
        conn.execute(sql.trial_values.delete().where(sql.trial_values.c.trial_id == done.trial_id))
    running.report(2, 0.8)
    storage.set_trial_attr(done.trial_id, "promoted_to", 7, system=True)  # attributes written after the finish
    second = storage.get_trials(study.study_id, known_values=known)
    assert second[0].intermediate_values == {1: 0.5}  # not read again
    assert second[0].system_attrs["promoted_to"] == 7  # rows are read afresh
    assert second[1].intermediate_values == {1: 0.9, 2: 0.8}  # a running trial's reports are
    assert storage.get_trials(study.study_id)[0].intermediate_values == {}  # without the dict: all read


def test_a_changed_space_names_the_keys_that_changed(tmp_path):
    # The error printed both whole spaces, in two key orders, for the user to diff by eye.
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    make_study(url, "s", space={"lr": Real(1e-3, 1e-1, log=True), "hidden": [4, 8], "drop": [0.1, 0.2]})
    with pytest.raises(StudyMismatchError, match=r"the search space changed: 'lr' is stored as "
                                                 r'\{"high": 0\.1, "log": true, "low": 0\.001, "type": "real"\} and '
                                                 r'given as \{"high": 0\.1, "log": true, "low": 0\.0001, "type": '
                                                 r'"real"\}; ' r"'act' is new; 'drop' is gone\. Use another"):
        make_study(url, "s", space={"lr": Real(1e-4, 1e-1, log=True), "hidden": [4, 8], "act": ["relu"]})


def test_a_trial_process_opens_its_search_database_without_waiting_for_the_write_lock(tmp_path):
    # A trial's process opens a database its search made (create_tables=False): the tables'
    # check took SQLite's write lock, which other trials' reports hold, at each trial's start.
    import sqlite3
    import threading

    url = f"sqlite:///{tmp_path / 's.db'}"
    make_study(url, "held").ask()
    writer = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing
    opened: list[sql.Storage] = []
    thread = threading.Thread(target=lambda: opened.append(open_storage(url, create_tables=False)), daemon=True)
    thread.start()
    thread.join(timeout=20)  # with the check, it waited out SQLite's busy timeout (60 s)
    assert len(opened) == 1
    writer.rollback()
    assert opened[0].study_names() == ["held"]


def test_reads_never_wait_for_sqlites_write_lock(tmp_path):
    # Every transaction was BEGIN IMMEDIATE, reads included: a stopping policy's read of
    # the other trials, a sampler's history, a trial's own row waited for any process's
    # report or heartbeat (SQLite's busy handler sleeps up to 100 ms a try). In WAL mode
    # a read needs no lock; claims and other writes still take it up front.
    import sqlite3
    import threading

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = make_study(url, "held")
    trial = study.ask()
    trial.report(1, 0.5)
    trial.complete(0.5)  # its heartbeat thread, whose write would wait for the lock, is gone
    storage = study.storage
    history = sql.TrialHistory(study.study_id)
    writer = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing
    writer.execute("UPDATE fw_trial_values SET value = 9.0")  # not committed: no read may see it
    seen: list[object] = []

    def read() -> None:
        seen.append(storage.load_study("held").name)
        seen.append(storage.study_names())
        seen.append(storage.get_trials(study.study_id)[0].intermediate_values)
        seen.append(storage.get_trial(trial.trial_id).intermediate_values)
        seen.append([t.number for t in storage.read_history(history)])
        seen.append(storage.budget_used(study.study_id))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=20)  # with IMMEDIATE, each read waited out SQLite's busy timeout (60 s)
    alive = thread.is_alive()
    writer.rollback()
    thread.join()
    assert not alive
    assert seen == ["held", ["held"], {1: 0.5}, {1: 0.5}, [trial.number], 1]
