"""Shared pieces of the security tests: a study with a complete trial, a pickle payload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from frameworm_lightning import Real, Study


class Payload:
    """Unpickling this creates ``marker``: what an attacker's checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (open, (self.marker, "w"))


def payload_checkpoint(path: Path, marker: Path) -> Path:
    """A file ``torch.load`` reads as a checkpoint, with a pickle payload inside."""
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0", "hyper_parameters": Payload(marker)}, path)
    assert not marker.exists()
    return path


@pytest.fixture
def stored_study(tmp_path: Path) -> tuple[Study, str]:
    """A SQLite study with one complete trial, as a shared study would hold."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = Study.create("shared", {"lr": Real(1e-3, 0.5, log=True)}, metric="val_loss", storage=url)
    trial = study.ask()
    trial.complete(0.5)
    return study, url


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "pwned"
    yield path
    if path.exists():
        os.unlink(path)
