"""A two-process DDP trial (CPU, gloo) inside a parallel search: ranks re-run the trial, never the search."""

from __future__ import annotations

from pathlib import Path

import pytest

from frameworm_lightning import GridSampler, SearchRunner
from frameworm_lightning.stopping import ThresholdStopping
from frameworm_lightning.trial import TrialState

from parallel._models import SleepyModule, rank_reports, trainer_kwargs

pytestmark = pytest.mark.slow


def test_ddp_trials_stop_all_their_ranks_together(tmp_path: Path) -> None:
    runner = SearchRunner(
        metric="val_loss", sampler=GridSampler(), n_trials=None, n_jobs=2, quiet=True, save_checkpoints=False,
        root_dir=tmp_path / "runs", storage=f"sqlite:///{tmp_path / 'study.db'}",
        # 8 points, batches of 4, 2 ranks: one step per epoch, a validation after each.
        trainer_kwargs=trainer_kwargs(strategy="ddp", devices=2, max_steps=8),
        # val_loss is about `offset`: the 5.0 trial is worse than the bound once grace ends.
        callbacks=[ThresholdStopping(threshold=1.0, grace_steps=3)],
    )
    result = runner.fit(SleepyModule, {"offset": [5.0, 0.1]})

    by_offset = {t.params["offset"]: t for t in result.trials}
    pruned, complete = by_offset[5.0], by_offset[0.1]
    assert (pruned.state, complete.state) == (TrialState.PRUNED, TrialState.COMPLETE), [t.error for t in result.trials]
    assert len(result.trials) == 2  # the ranks did not claim trials of their own

    for trial, steps in ((pruned, 3), (complete, 8)):
        ranks = rank_reports(trial.system_attrs["trial_dir"])
        assert sorted(ranks) == [0, 1]
        assert all(r["world_size"] == 2 for r in ranks.values())
        # Both ranks stopped at the same step: the decision was agreed across them.
        assert ranks[0]["global_step"] == ranks[1]["global_step"] == steps
        assert ranks[0]["pid"] != ranks[1]["pid"]
    # Only rank 0 reported: one value per validation.
    assert sorted(pruned.intermediate_values) == [1, 2, 3]
    assert pruned.value == pytest.approx(5.0, abs=0.01)
