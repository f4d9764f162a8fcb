"""One protocol for a trial being run: the search's trial, its DDP follower and a script's run."""

from __future__ import annotations

from pathlib import Path

import pytest

from frameworm_lightning import LiveTrial, Real, Study
from frameworm_lightning.runner._trial_entry import FollowerTrial
from frameworm_lightning.stopping._script import ScriptTrial
from frameworm_lightning.trial import TrialState


def _kinds(tmp_path: Path) -> dict[str, LiveTrial]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = Study.create("live", {"x": Real(0, 1)}, metric="loss", storage=url)
    search_trial = study.ask()
    assert search_trial is not None
    follower = FollowerTrial(study, search_trial.snapshot(), rank=1, directory=tmp_path / "t")
    script = ScriptTrial.open(url, "script", "loss", "min", {"lr": 0.1})
    return {"search": search_trial, "follower": follower, "script": script}


@pytest.mark.parametrize("kind", ["search", "follower", "script"])
def test_each_kind_of_trial_implements_the_protocol(tmp_path: Path, kind: str) -> None:
    trial = _kinds(tmp_path)[kind]
    assert isinstance(trial, LiveTrial)
    assert trial.study.metric == "loss" and trial.study.mode == "min"
    trial.report(3, 0.5)
    assert trial.intermediate_values[3] == 0.5
    trial.request_prune("first")
    trial.request_prune("second")
    assert trial.should_prune() and trial.prune_reason == "first"


def test_the_outcome_is_stored_once_by_the_first_call(tmp_path: Path) -> None:
    kinds = _kinds(tmp_path)
    search, script = kinds["search"], kinds["script"]
    assert search.complete(0.25) is True and search.fail("late") is False
    assert script.complete(float("nan")) is True and script.complete(0.1) is False
    assert Study.load("live", f"sqlite:///{tmp_path / 's.db'}").trials[0].state is TrialState.COMPLETE
    scripted = Study.load("script", f"sqlite:///{tmp_path / 's.db'}").trials[0]
    assert scripted.state is TrialState.FAILED and "diverged" in (scripted.error or "")


def test_a_follower_never_writes_to_storage(tmp_path: Path) -> None:
    follower = _kinds(tmp_path)["follower"]
    follower.report(5, 1.0)
    assert follower.fail("rank 1 broke") is False
    stored = Study.load("live", f"sqlite:///{tmp_path / 's.db'}").trials[0]
    assert stored.state is TrialState.RUNNING and stored.intermediate_values == {}
    assert (tmp_path / "t" / "rank1.error").read_text() == "rank 1 broke"
