"""DDP on two CPU processes: the stop is decided once, on rank 0, and every rank obeys it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from frameworm_lightning import TrialState, open_storage

HERE = Path(__file__).parent


def _seed_earlier_run(url: str) -> None:
    """A finished run of the study that the DDP run will be compared with (0.1 at every step)."""
    store = open_storage(url)
    record = store.create_or_load_study("ddp", "val_loss", "min", {}, check_space=False)
    trial, _ = store.claim_trial(record.study_id, "earlier-run", None)
    store.set_trial_params(trial.trial_id, {"x": 0.0})
    for step in range(2, 17, 2):
        store.report(trial.trial_id, step, 0.1)
    store.finish_trial(trial.trial_id, TrialState.COMPLETE, value=0.1)
    store.close()


def _run_script(url: str, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")])}
    # a hang (a rank waiting in a collective the other never joins) fails here, not forever
    return subprocess.run([sys.executable, str(HERE / "_ddp_script.py"), url, str(out), *args], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_both_ranks_stop_at_the_same_step_and_the_trial_is_pruned_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    _seed_earlier_run(url)
    proc = _run_script(url, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 4 batches per rank and epoch, a validation every 2: the first check after the
    # grace period is at step 4, where rank 0's value (1.33) is worse than the median.
    assert [r["global_step"] for r in ranks] == [4, 4]
    assert all(r["should_stop"] for r in ranks)

    store = open_storage(url)
    trials = store.get_trials(store.load_study("ddp").study_id)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    pruned = trials[1]
    assert pruned.reason is not None and "worse than the median" in pruned.reason
    # Only rank 0 reported (rank 1's values are 100 lower) and its last value is stored.
    assert sorted(pruned.intermediate_values) == [2, 4]
    assert pruned.value == pytest.approx(1.0 + 1.0 / 2.0)
    assert pruned.system_attrs["fw_stop"]["step"] == 4


@pytest.mark.slow
def test_a_metric_missing_on_another_rank_is_not_read_there(tmp_path: Path) -> None:
    # Only rank 0 reads the metric; rank 1, which never logs it, follows rank 0's decisions.
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = _run_script(url, tmp_path, "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [json.loads((tmp_path / f"rank{r}.json").read_text())["global_step"] for r in (0, 1)] == [8, 8]
    store = open_storage(url)
    [trial] = store.get_trials(store.load_study("missing").study_id)
    assert trial.state is TrialState.COMPLETE and sorted(trial.intermediate_values) == [2, 4, 6, 8]


@pytest.mark.slow
def test_a_metric_missing_on_the_deciding_rank_stores_the_real_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    proc = _run_script(url, tmp_path, "0")
    assert proc.returncode != 0
    assert "MetricNotFoundError" in proc.stderr
    store = open_storage(url)
    [trial] = store.get_trials(store.load_study("missing").study_id)
    assert trial.state is TrialState.FAILED
    assert trial.reason.startswith("MetricNotFoundError: metric 'val_loss' was never logged"), trial.reason
