"""A runner record written by someone else: class names in it are data, never imported or called."""

from __future__ import annotations

from pathlib import Path

import pytest

from frameworm_lightning import FramewormError, SearchResult, Study
from frameworm_lightning.runner._artifacts import RUNNER_ATTR

from ._models import QUIET, Tiny, TinyData
from . import _snapshot


def hostile_record(marker: Path, root: Path) -> dict:
    """The record of the issue: its datamodule "class" is ``subprocess:Popen`` running a shell command."""
    return {
        "version": 1, "module_cls": "subprocess:Popen", "datamodule": {"class": "subprocess:Popen"},
        "model_kwargs": {"args": f"touch {marker}", "shell": True},
        "data_kwargs": {"args": f"touch {marker}", "shell": True},
        "trainer_kwargs": {"max_epochs": 1}, "not_recorded": [], "metric": "val_loss", "mode": "min",
        "objective": "last", "seed": 0, "root_dir": str(root), "cwd": str(root),
    }


@pytest.fixture
def hostile(stored_study, marker, tmp_path) -> tuple[SearchResult, str]:
    study, url = stored_study
    study.storage.set_study_attr(study.study_id, RUNNER_ATTR, hostile_record(marker, tmp_path / "runs"))
    return SearchResult(Study.load("shared", url)), url


def test_retrain_best_without_classes_names_the_stored_ones_and_runs_nothing(hostile, marker, tmp_path):
    result, url = hostile
    before = _snapshot.state(url, tmp_path)
    with pytest.raises(FramewormError, match=r"pass module_cls=.*'subprocess:Popen'.*never imported"):
        result.retrain_best(max_epochs=1)
    assert not marker.exists()
    assert _snapshot.state(url, tmp_path) == before


def test_a_class_other_than_the_stored_name_is_an_error_naming_both(hostile, marker, tmp_path):
    result, url = hostile
    before = _snapshot.state(url, tmp_path)
    with pytest.raises(FramewormError, match=r"records module class 'subprocess:Popen', but '.*_tiny:Tiny' was passed"):
        result.retrain_best(max_epochs=1, module_cls=Tiny, datamodule=TinyData)
    with pytest.raises(FramewormError, match=r"records module class 'subprocess:Popen', but '.*_tiny:Tiny' was passed"):
        result.load_best_model(Tiny)
    with pytest.raises(FramewormError, match=r"pass module_cls=.*'subprocess:Popen'"):
        result.load_best_model()
    assert not marker.exists()
    assert _snapshot.state(url, tmp_path) == before


def test_a_datamodule_other_than_the_stored_name_is_an_error_naming_both(stored_study, marker, tmp_path):
    study, url = stored_study
    record = hostile_record(marker, tmp_path / "runs")
    record["module_cls"] = f"{Tiny.__module__}:Tiny"
    study.storage.set_study_attr(study.study_id, RUNNER_ATTR, record)
    result = SearchResult(Study.load("shared", url))
    before = _snapshot.state(url, tmp_path)
    with pytest.raises(FramewormError, match=r"pass datamodule=.*'subprocess:Popen'.*never imported"):
        result.retrain_best(max_epochs=1, module_cls=Tiny)
    with pytest.raises(FramewormError, match=r"records datamodule class 'subprocess:Popen', but '.*_tiny:TinyData'"):
        result.retrain_best(max_epochs=1, module_cls=Tiny, datamodule=TinyData)
    assert not marker.exists()
    assert _snapshot.state(url, tmp_path) == before


def test_a_script_class_recorded_as_main_matches_the_same_class_imported(stored_study, tmp_path):
    study, url = stored_study
    record = hostile_record(tmp_path / "unused", tmp_path / "runs")
    record.update(module_cls="__main__:Tiny", datamodule={"class": "__main__:TinyData"},
                  model_kwargs={}, data_kwargs={}, trainer_kwargs={**QUIET, "logger": False})
    study.storage.set_study_attr(study.study_id, RUNNER_ATTR, record)
    model = SearchResult(Study.load("shared", url)).retrain_best(module_cls=Tiny, datamodule=TinyData)
    assert isinstance(model, Tiny) and model.trainer.current_epoch == 1
