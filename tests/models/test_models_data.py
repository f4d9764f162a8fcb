"""DigitsDataModule: shapes, scaling, a seeded split, argument checks."""

from __future__ import annotations

import pytest
import torch

from models import DigitsDataModule
from models.data import load_digits_tensors


def test_batches_are_digits_scaled_to_unit_interval():
    dm = DigitsDataModule(batch_size=50)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (50, 1, 8, 8) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) <= set(range(10))
    full, _ = load_digits_tensors()
    assert float(full.min()) == 0.0 and float(full.max()) == 1.0
    # pixel / 16: every value is a multiple of 1/16
    assert torch.allclose(full * 16, (full * 16).round())


def test_split_is_seeded_disjoint_and_complete():
    a, b, c = DigitsDataModule(seed=0), DigitsDataModule(seed=0), DigitsDataModule(seed=1)
    for dm in (a, b, c):
        dm.setup("fit")
    assert len(a.train_dataset) + len(a.val_dataset) == 1797
    assert len(a.val_dataset) == round(1797 * 0.2)
    assert torch.equal(a.val_dataset.tensors[0], b.val_dataset.tensors[0])
    assert not torch.equal(a.val_dataset.tensors[0], c.val_dataset.tensors[0])
    train_rows = {tuple(r.tolist()) for r in a.train_dataset.tensors[0].flatten(1)}
    val_rows = [tuple(r.tolist()) for r in a.val_dataset.tensors[0].flatten(1)]
    # digits has a handful of exact duplicate images, so allow a few collisions only
    assert sum(r in train_rows for r in val_rows) < 10


def test_upsampled_images_keep_their_range():
    dm = DigitsDataModule(image_size=16, batch_size=8)
    dm.setup("fit")
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (8, 1, 16, 16)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


@pytest.mark.parametrize(
    "kwargs, bad",
    [({"batch_size": 0}, "0"), ({"val_fraction": 1.5}, "1.5"), ({"image_size": 12}, "12"), ({"num_workers": -1}, "-1")],
)
def test_bad_arguments_name_the_value(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        DigitsDataModule(**kwargs)
