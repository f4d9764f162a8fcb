"""Shared set-up for the model tests: the real ``models`` package, one thread, quiet trainers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

# Under a bare ``pytest`` (not ``python -m pytest``), pytest puts tests/ on sys.path for
# tests/conftest.py, and then ``import models`` finds this directory (tests/models, no
# __init__.py) as a namespace package before the editable install's finder is asked.
# Putting the repository root first makes the real package win.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
_stale = sys.modules.get("models")
if _stale is not None and getattr(_stale, "__file__", None) is None:
    del sys.modules["models"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine
    OpenMP's spinning threads can make them tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _quiet_trainer(**kwargs: Any) -> pl.Trainer:
    base: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    base.update(kwargs)
    return pl.Trainer(**base)


@pytest.fixture
def quiet_trainer():
    """A factory of CPU Trainers without logger, checkpoints, progress bar or model summary."""
    return _quiet_trainer


@pytest.fixture(scope="session")
def digits_val() -> torch.Tensor:
    """The default split's validation images, (359, 1, 8, 8) in [0, 1]."""
    from models import DigitsDataModule

    dm = DigitsDataModule()
    dm.setup("fit")
    return dm.val_dataset.tensors[0]
