"""The curve replay reproduces a recorded table through the real runner, callbacks and storage."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from benchmarks.curves.replay import REPLAY_TRAINER, ReplayModule, replay_fn, replay_space
from benchmarks.curves.table import DATA_DIR, Curve, Table, load_table
from frameworm_lightning import GridSampler, SearchRunner, TrialState
from frameworm_lightning.search import RandomSearch
from frameworm_lightning.stopping import ASHA, MedianStopping

SHIPPED = ["digits-mlp", "cancer-mlp", "digits-vae"]


@pytest.fixture
def small_table(tmp_path: Path) -> Path:
    """Eight configurations of the shipped breast-cancer table, saved apart (so the test
    reads a table file, as a search does)."""
    full = load_table("cancer-mlp")
    curves = [Curve(i, c.params, c.values[:9], c.seconds[:9]) for i, c in enumerate(full.curves[:8])]
    table = Table("cancer-small", full.metric, full.mode, 9, full.seed, full.space, curves)
    path = tmp_path / "cancer-small.json.gz"
    table.save(path)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tables_hold_full_curves_of_distinct_configurations(name: str) -> None:
    table = load_table(name)
    assert len(table) >= 50
    assert [c.index for c in table.curves] == list(range(len(table)))
    for c in table.curves:
        assert len(c.values) == len(c.seconds) == table.max_epochs
        assert all(s > 0 for s in c.seconds)
    assert len({json.dumps(c.params, sort_keys=True) for c in table.curves}) == len(table)
    assert (DATA_DIR / f"{name}.json.gz").stat().st_size < 3_000_000


def test_median_stopping_prunes_and_stores_exactly_the_recorded_values(small_table: Path, tmp_path: Path) -> None:
    table = load_table(small_table)
    runner = SearchRunner(metric=table.metric, mode=table.mode, sampler=GridSampler(), root_dir=tmp_path / "runs",
                          quiet=True, save_checkpoints=False,
                          callbacks=[MedianStopping(grace_steps=1, min_trials=2)],
                          trainer_kwargs={**REPLAY_TRAINER, "max_epochs": table.max_epochs})
    result = runner.fit(ReplayModule, replay_space(str(small_table)), model_kwargs={"table": str(small_table)})
    trials = result.trials
    assert len(trials) == len(table)
    assert any(t.state is TrialState.PRUNED for t in trials)
    assert any(t.state is TrialState.COMPLETE for t in trials)
    for t in trials:
        curve = table.curves[t.params["config"]]
        stored = t.intermediate_values
        assert stored, t
        # One batch per epoch: global step e + 1 is the end of epoch e + 1.
        assert stored == {e + 1: pytest.approx(curve.values[e]) for e in range(len(stored))}
        if t.state is TrialState.COMPLETE:
            assert len(stored) == table.max_epochs
            assert t.value == pytest.approx(curve.final)
        else:
            assert len(stored) < table.max_epochs


def test_asha_promotions_resume_the_replayed_curve(small_table: Path, tmp_path: Path) -> None:
    table = load_table(small_table)
    # A seeded random sampler draws the table's configurations without repeats (a finite space).
    runner = SearchRunner(metric=table.metric, mode=table.mode, n_trials=len(table), seed=0, root_dir=tmp_path / "runs",
                          quiet=True, callbacks=[ASHA(min_resource=1, max_resource=9, eta=3)],
                          trainer_kwargs=dict(REPLAY_TRAINER))
    trials = runner.fit(ReplayModule, replay_space(str(small_table)), model_kwargs={"table": str(small_table)}).trials
    promoted = [t for t in trials if "promoted_from" in t.system_attrs]
    assert promoted
    for t in trials:
        curve = table.curves[t.params["config"]]
        for step, value in t.intermediate_values.items():
            assert value == pytest.approx(curve.values[step - 1])
    full = [t for t in trials if t.state is TrialState.COMPLETE]
    assert full and all(t.value == pytest.approx(table.curves[t.params["config"]].final) for t in full)


def test_replay_fn_reports_each_epoch_through_the_function_api(small_table: Path) -> None:
    table = load_table(small_table)
    search = RandomSearch({"table": str(small_table), "config": 0}, {"config": list(range(len(table)))},
                          metric=table.metric, n_trials=3, verbose=False)
    search.run(replay_fn)
    for t in search.result.trials:
        curve = table.curves[t.params["config"]]
        assert t.intermediate_values == {e + 1: pytest.approx(v) for e, v in enumerate(curve.values)}
        assert t.value == pytest.approx(curve.final)


def test_bad_config_and_too_many_epochs_fail_with_one_line(small_table: Path) -> None:
    with pytest.raises(ValueError, match=r"config must be an index of table .* in \[0, 7\], but got config=8"):
        ReplayModule(str(small_table), 8)
    with pytest.raises(ValueError, match="time_scale must be >= 0"):
        ReplayModule(str(small_table), 0, time_scale=-1)
    with pytest.raises(FileNotFoundError, match="no curve table 'nope'; shipped tables:"):
        load_table("nope")


def test_saved_tables_are_byte_identical_for_the_same_curves(small_table: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.json.gz"
    load_table(small_table).save(again)
    assert gzip.decompress(again.read_bytes()) == gzip.decompress(small_table.read_bytes())
    assert again.read_bytes() == small_table.read_bytes()
