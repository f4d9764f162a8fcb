"""Checkpoints named in storage are weights only: a pickle payload inside one never runs.

``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` gives torch the default of torch < 2.6 (full
unpickling) wherever a caller does not pass ``weights_only`` itself, so these tests
fail unless every load says ``weights_only=True`` explicitly.
"""

from __future__ import annotations

import pytest
import torch

from frameworm_lightning import FramewormError, SearchResult, SearchRunner, Study, TrialState

from . import _snapshot
from ._models import QUIET, Tiny, TinyData
from .conftest import payload_checkpoint


def test_the_payload_runs_under_a_plain_unpickle(tmp_path, marker):
    """The premise of the tests below: this checkpoint does run code when fully unpickled."""
    path = payload_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(path)
    assert marker.exists()


@pytest.fixture(autouse=True)
def old_torch_default(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


def test_load_best_model_refuses_a_pickle_payload_checkpoint(stored_study, marker, tmp_path):
    study, url = stored_study
    path = payload_checkpoint(tmp_path / "evil.ckpt", marker)
    best = study.best_trial
    study.storage.set_trial_attr(best.trial_id, "checkpoint_path", str(path), system=True)
    before = _snapshot.state(url, tmp_path)
    with pytest.raises(FramewormError, match=r"evil\.ckpt' is not a plain weights file.*weights_only=True refused"):
        SearchResult(Study.load("shared", url)).load_best_model(Tiny)
    assert not marker.exists()
    assert _snapshot.state(url, tmp_path) == before


def test_a_queued_trial_never_resumes_from_a_pickle_payload_checkpoint(tmp_path, marker):
    """A promoted (or forged) trial's ``resume_checkpoint`` goes through Lightning with weights_only=True."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = {"lr": [0.1]}
    study = Study.create("resume", space, metric="val_loss", storage=url)
    path = payload_checkpoint(tmp_path / "evil.ckpt", marker)
    study.storage.enqueue(study.study_id, {"lr": 0.1}, system_attrs={"resume_checkpoint": str(path)})
    runner = SearchRunner(metric="val_loss", n_trials=1, storage=url, study_name="resume", root_dir=str(tmp_path / "runs"),
                          trainer_kwargs={**QUIET, "logger": False}, quiet=True)
    result = runner.fit(Tiny, space, datamodule=TinyData)
    (trial,) = result.trials
    assert trial.state is TrialState.FAILED and "Weights only load failed" in trial.error
    assert not marker.exists()
