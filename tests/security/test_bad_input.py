"""Bad input: one clear error naming the problem, before anything trains, nothing stored touched."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from frameworm_lightning import (
    GridSampler,
    Integer,
    Real,
    SearchRunner,
    SearchSpace,
    SpaceError,
    StorageError,
    Study,
    TrialState,
)
from frameworm_lightning.samplers import AskContext
from frameworm_lightning.search import GridSearch, RandomSearch

from . import _snapshot
from ._models import QUIET, Tiny, TinyData

BILLION = {"a": Integer(0, 999), "b": Integer(0, 999), "c": Integer(0, 999)}  # 10^9 points


@pytest.fixture
def stored(tmp_path):
    """A SQLite study with a few trials, closed, as a previous search leaves it."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = Study.create("stored", {"x": Real(0, 1)}, metric="loss", storage=url)
    for value in (0.3, 0.1):
        study.ask().complete(value)
    study.storage.close()
    return url


# Grids --------------------------------------------------------------------------------------
def test_a_five_point_grid_over_a_billion_integers_allocates_nothing():
    space = SearchSpace({"n": Integer(0, 10**9)})
    sampler = GridSampler(grid_points=5)
    tracemalloc.start()
    try:
        points = []
        for number in range(6):
            s = sampler.ask(AskContext(space, "min", [_claimed(k) for k in points], number))
            if s is None:
                break
            points.append(s.claim_key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sampler.max_trials(space) == 5 and len(points) == 5
    assert [space.grid_point(i, 5)["n"] for i in range(5)] == [0, 250_000_000, 500_000_000, 750_000_000, 10**9]
    assert peak < 5_000_000, f"{peak:,} bytes"


def _claimed(key):
    from frameworm_lightning.trial import FrozenTrial

    return FrozenTrial(number=0, state=TrialState.COMPLETE, params={}, value=0.0, claim_key=key)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_billion_point_grid_capped_by_n_trials_runs_without_listing_it(shuffle):
    tracemalloc.start()
    try:
        search = GridSearch({"a": 0, "b": 0, "c": 0}, BILLION, metric="loss", n_trials=4, shuffle=shuffle,
                            random_state=3, verbose=False)
        search.run(lambda config: float(config["a"] + config["b"] + config["c"]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    keys = {t.claim_key for t in search.study.trials}
    assert len(search.study.trials) == 4 and len(keys) == 4
    assert peak < 20_000_000, f"{peak:,} bytes"
    if not shuffle:
        assert keys == {"grid:0", "grid:1", "grid:2", "grid:3"}


def test_a_grid_too_large_to_finish_is_a_space_error_before_anything_is_stored(stored, tmp_path):
    before = _snapshot.state(stored, tmp_path)
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, storage=stored,
                          study_name="huge", root_dir=str(tmp_path / "runs"), trainer_kwargs=QUIET, quiet=True)
    with pytest.raises(SpaceError, match=r"the grid has 1,000,000,000 points, more than any search can finish.*"
                                         r"pass n_trials"):
        runner.fit(Tiny, {"lr": Integer(1, 1000), "data.size": Integer(1, 1000), "trainer.max_steps": Integer(1, 1000)},
                   datamodule=TinyData)
    with pytest.raises(SpaceError, match=r"the grid has 1,000,000,000 points"):
        GridSearch({"a": 0, "b": 0, "c": 0}, BILLION, metric="loss", storage=stored, verbose=False).run(float)
    with pytest.raises(SpaceError, match=r"the grid has 1,000,000,000 points, too many to list"):
        SearchSpace(BILLION).grid()
    assert _snapshot.state(stored, tmp_path) == before
    assert not (tmp_path / "runs").exists()


# Storage ------------------------------------------------------------------------------------
def test_a_corrupt_sqlite_file_is_a_storage_error_and_stays_as_it_was(stored, tmp_path):
    path = tmp_path / "study.db"
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = bytes(range(256)) * ((len(data) - page) // 256)  # every page but the schema's
    path.write_bytes(bytes(data))
    before = _snapshot.files(tmp_path)
    for attempt in (lambda: Study.load("stored", stored),
                    lambda: Study.create("stored", {"x": Real(0, 1)}, metric="loss", storage=stored)):
        with pytest.raises(StorageError, match=r"study\.db.*the SQLite file is corrupt \(.*malformed.*\); restore it"):
            attempt()
    assert _snapshot.files(tmp_path) == before
    path.write_bytes(b"not a database at all" * 100)
    before = _snapshot.files(tmp_path)
    with pytest.raises(StorageError, match=r"the SQLite file is corrupt \(file is not a database\)"):
        Study.load("stored", stored)
    assert _snapshot.files(tmp_path) == before


@pytest.mark.parametrize("url", ["mysql://root:pw@db/studies", "mysql+pymysql://db/x", "oracle://db/x",
                                 "mssql+pyodbc://db/x"])
def test_an_unsupported_database_names_the_supported_backends(url, tmp_path):
    before = _snapshot.files(tmp_path)
    with pytest.raises(StorageError, match=r"which frameworm-lightning does not support; the supported backends "
                                           r"are SQLite and PostgreSQL: sqlite:///"):
        Study.create("s", {"x": Real(0, 1)}, metric="loss", storage=url)
    assert _snapshot.files(tmp_path) == before


def test_a_metric_of_none_says_what_is_wrong(stored, tmp_path):
    before = _snapshot.state(stored, tmp_path)
    with pytest.raises(StorageError, match=r"metric must be a non-empty string, but got metric=None"):
        Study.create("new", {"x": Real(0, 1)}, metric=None, storage=stored)
    assert _snapshot.state(stored, tmp_path) == before


# Spaces -------------------------------------------------------------------------------------
def test_a_real_whose_range_overflows_is_refused():
    with pytest.raises(SpaceError, match=r"Real bounds are too far apart: high - low overflows a float for "
                                         r"low=-1e\+308, high=1e\+308"):
        Real(-1e308, 1e308)


def test_a_real_with_a_huge_finite_range_samples_correctly():
    dim = Real(-8e307, 8e307)
    values = [dim.sample(np.random.default_rng(i)) for i in range(200)]
    assert all(math.isfinite(v) and -8e307 <= v <= 8e307 for v in values)
    assert min(values) < -1e307 and max(values) > 1e307
    assert dim.decode(dim.encode(1e307)) == pytest.approx(1e307)


# Warm starts --------------------------------------------------------------------------------
def test_a_failing_warm_start_is_a_failed_trial_like_any_other(tmp_path):
    url = f"sqlite:///{tmp_path / 'warm.db'}"
    calls = []

    def train(config):
        calls.append(config["x"])
        if config["x"] == 0.5:
            raise ValueError("the warm start diverges")
        return config["x"]

    def run(n_trials, retry_failed=False):
        search = RandomSearch({"x": 0.0}, {"x": Real(0, 1)}, metric="loss", n_trials=n_trials, storage=url,
                              study_name="warm", random_state=0, retry_failed=retry_failed, verbose=False)
        search.enqueue({"x": 0.5})
        search.run(train)
        return search.study.trials

    for n_trials in (2, 3, 4):
        trials = run(n_trials)
        assert calls.count(0.5) == 1, "a failed warm start is not re-queued by a re-run"
        assert len(trials) == n_trials and not [t for t in trials if t.state is TrialState.WAITING]
    assert [t.state for t in trials if t.params["x"] == 0.5] == [TrialState.FAILED]
    trials = run(5, retry_failed=True)
    assert calls.count(0.5) == 2, "retry_failed=True runs it again"
    assert [t.state for t in trials if t.params["x"] == 0.5] == [TrialState.FAILED, TrialState.FAILED]
