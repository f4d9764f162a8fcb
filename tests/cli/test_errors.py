"""Each mistake a user will meet: exit code 2, one ``error:`` line with the fix, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from frameworm_lightning import Study, TrialState
from tests.cli.conftest import Started, search_config, start_cli, write_config


def _unknown_key(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["space"]["model.init_args.lrr"] = [0.1, 0.2]


def _bad_dimension(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["space"]["model.init_args.lr"] = {"type": "real", "low": 0.5, "high": 0.1}


def _unknown_sampler(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["sampler"] = {"class_path": "frameworm_lightning.NoSuchSampler"}


def _unknown_policy(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["stopping"] = [{"class_path": "frameworm_lightning.NoSuchPolicy"}]


def _unwritable_storage(c: dict[str, Any], tmp: Path) -> None:
    (tmp / "a_file").write_text("not a folder")
    c["search"]["storage"] = f"sqlite:///{tmp / 'a_file' / 'study.db'}"


def _metric_never_logged(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["metric"] = "val_acc"


CASES: list[tuple[str, Callable[[dict[str, Any], Path], None], list[str]]] = [
    ("unknown space key", _unknown_key,
     ["unknown search.space key 'model.init_args.lrr'", "TinyModel has no argument 'lrr'",
      "Valid keys: model.init_args.hidden, model.init_args.lr, model.init_args.sleep, data.init_args.batch_size"]),
    ("bad dimension spec", _bad_dimension,
     ["bad search.space: model.init_args.lr: Real needs low < high", "{type: real, low:"]),
    ("unknown sampler", _unknown_sampler,
     ["unknown sampler 'frameworm_lightning.NoSuchSampler' in search.sampler",
      "known: frameworm_lightning.BayesianSampler, frameworm_lightning.GridSampler", "frameworm_lightning.SobolSampler"]),
    ("unknown policy", _unknown_policy,
     ["unknown stopping policy 'frameworm_lightning.NoSuchPolicy' in search.stopping", "stopping: [{class_path:"]),
    ("unwritable storage", _unwritable_storage,
     ["a_file", "Set search.storage to a writable sqlite:///"]),
    ("metric never logged", _metric_never_logged,
     ["search.metric: metric 'val_acc' was never logged; logged metrics: train_loss, val_loss"]),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Started]]:
    """Every case started at once (each is mostly Python start-up), waited for by its test."""
    started = {}
    for name, mistake, _ in CASES:
        tmp = tmp_path_factory.mktemp(name.replace(" ", "_"))
        config = search_config(tmp)
        mistake(config, tmp)
        path = write_config(tmp / "search.yaml", config)
        started[name] = (tmp, start_cli("search", "-c", str(path), cwd=tmp))
    return started


@pytest.mark.parametrize(("name", "expected"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_clear_line(runs: dict[str, tuple[Path, Started]], name: str, expected: list[str]) -> None:
    tmp, started = runs[name]
    run = started.wait()
    assert run.returncode == 2, (run.stdout[-2000:], run.stderr[-3000:])
    assert "Traceback" not in run.stderr
    assert len(run.error_lines) == 1, run.stderr[-3000:]
    for fragment in expected:
        assert fragment in run.error_lines[0], run.error_lines[0]
    if name == "metric never logged":
        # One trial ran and is stored; the search stopped there instead of failing every trial.
        study = Study.load("TinyModel", f"sqlite:///{tmp / 'study.db'}")
        assert [t.state for t in study.trials] == [TrialState.FAILED]
    elif name != "unwritable storage":
        assert not (tmp / "runs").exists()  # rejected before any training
