"""Every example config parses, names real model arguments, and validates as a search;
the demo script starts as a new user starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from frameworm_lightning.cli import SearchCLI
from frameworm_lightning.cli._search_config import build_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_is_an_example_per_model() -> None:
    assert {p.stem for p in EXAMPLES} >= {"vae", "dcgan", "ddpm"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_an_example_is_a_valid_search(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["frameworm-search"])  # pytest's own arguments are not ours
    cli = SearchCLI(args=["-c", str(path), "--seed_everything", "0"], run=False)  # parse and build, no subcommand
    plan = build_plan(cli.config)
    assert plan.study_name == path.stem.upper()
    assert plan.datamodule_cls is not None and plan.datamodule_cls.__name__ == "DigitsDataModule"
    assert all(key.startswith(("model.", "data.", "trainer.")) for key in plan.space)
    assert cli.config.search.storage == f"sqlite:///runs/{path.stem}.db"


def test_nothing_in_examples_is_named_like_a_package_of_the_project() -> None:
    # `python examples/x.py` puts examples/ first on sys.path, where a folder named `models`
    # (even one without __init__.py) shadows the installed package of that name.
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages >= {"frameworm_lightning", "models"}
    clashes = sorted(p.name for p in (ROOT / "examples").iterdir() if p.name.removesuffix(".py") in packages)
    assert clashes == []


def test_the_demo_script_starts_as_a_new_user_runs_it(tmp_path: Path) -> None:
    # As scripts/demo.sh runs it: the installed project only, no PYTHONPATH (pytest's
    # pythonpath setting would hide the shadowing), from another directory.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "digits_search.py"), "--help"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--n-trials" in proc.stdout and "--epochs" in proc.stdout


def test_the_demo_runs_its_trials_in_worker_processes_with_n_jobs(tmp_path: Path) -> None:
    from frameworm_lightning import Study
    from frameworm_lightning.trial import TrialState

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "digits_search.py"), "--n-trials", "2", "--epochs",
                           "1", "--n-jobs", "2", "--sampler", "random", "--root-dir", "runs"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "best val_loss" in proc.stdout
    study = Study.load("digits-random", f"sqlite:///{tmp_path / 'runs' / 'frameworm.db'}")
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    workers = [t.system_attrs["worker"] for t in trials]
    assert all(w["executor"] == "process" for w in workers)
    assert len({w["pid"] for w in workers}) == 2  # a process per trial
