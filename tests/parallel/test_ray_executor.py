"""The Ray executor end to end on a local Ray cluster: reports, pruning and crashes reach storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from frameworm_lightning import GridSampler, SearchRunner
from frameworm_lightning.stopping import ThresholdStopping
from frameworm_lightning.trial import TrialState

from parallel._models import SleepyModule, trainer_kwargs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_trials_report_prune_and_fail_like_local_ones(tmp_path: Path, ray_cluster: Any) -> None:
    runner = SearchRunner(
        metric="val_loss", sampler=GridSampler(), n_trials=None, n_jobs=2, executor="ray", quiet=True,
        save_checkpoints=False, root_dir=tmp_path / "runs", storage=f"sqlite:///{tmp_path / 'study.db'}",
        trainer_kwargs=trainer_kwargs(max_steps=8), callbacks=[ThresholdStopping(threshold=1.0, grace_steps=4)],
    )
    result = runner.fit(SleepyModule, {"offset": [0.1, 5.0], "crash": ["ok", "os_exit"]},
                        model_kwargs={"crash_step": 6})

    by_key = {(t.params["offset"], t.params["crash"]): t for t in result.trials}
    complete, pruned = by_key[(0.1, "ok")], by_key[(5.0, "ok")]
    assert complete.state is TrialState.COMPLETE, complete.error
    assert complete.value == pytest.approx(0.1, abs=0.01)
    assert sorted(complete.intermediate_values) == [2, 4, 6, 8]  # every validation reached storage
    # The 5.0 trials are pruned at step 4, before they could crash at step 6.
    for key in ((5.0, "ok"), (5.0, "os_exit")):
        assert by_key[key].state is TrialState.PRUNED, by_key[key].error
        assert max(by_key[key].intermediate_values) == 4
    crashed = by_key[(0.1, "os_exit")]
    assert crashed.state is TrialState.FAILED and crashed.reason == "worker exited with code 3"
    assert all(t.system_attrs["worker"]["executor"] == "ray" for t in result.trials)
