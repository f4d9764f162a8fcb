"""Every example config parses, names real model arguments, and validates as a search."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from frameworm_lightning.cli import SearchCLI
from frameworm_lightning.cli._search_config import build_plan

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


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
