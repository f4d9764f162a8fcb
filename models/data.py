"""scikit-learn's handwritten digits as a LightningDataModule.

The data ship inside scikit-learn (``sklearn/datasets/data/digits.csv.gz``), so nothing
is downloaded at run time: 1797 grey images of 8x8 pixels, each pixel an integer 0..16,
with a label 0..9.

Scaling (one convention for every model in :mod:`models`): pixels are divided by 16,
so images are ``float32`` tensors of shape ``(1, image_size, image_size)`` with values
in ``[0, 1]``. The VAE models them directly with a Bernoulli likelihood; the DCGAN and
the DDPM map them to ``[-1, 1]`` inside the model (``2 * x - 1``) and map their samples
back, so every model's :meth:`sample` returns images in ``[0, 1]`` that the Fréchet
score (:mod:`models.fid`) can compare with the real ones.
"""

from __future__ import annotations

from functools import lru_cache

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["DigitsDataModule", "load_digits_tensors", "split_indices"]

#: Largest pixel value in scikit-learn's digits; dividing by it maps pixels to [0, 1].
PIXEL_MAX = 16.0
#: Side of the images as shipped.
NATIVE_SIZE = 8
#: Sizes that the conv nets' stride-2 stages can reach (8 -> 16 -> 32).
ALLOWED_IMAGE_SIZES = (8, 16, 32)


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """Read the bundled digits once per process (the csv parse is the only cost)."""
    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def load_digits_tensors(image_size: int = NATIVE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as ``(images, labels)``: images ``(N, 1, S, S)`` float32 in [0, 1].

    ``image_size`` above 8 upsamples bilinearly (for conv nets that want more room on
    a GPU); the values stay in [0, 1] because bilinear interpolation never overshoots.

    >>> x, y = load_digits_tensors()
    >>> tuple(x.shape), float(x.min()), float(x.max()), tuple(y.shape)
    ((1797, 1, 8, 8), 0.0, 1.0, (1797,))
    """
    _check_image_size(image_size)
    images, labels = _raw_digits()
    x = torch.from_numpy(images / PIXEL_MAX).unsqueeze(1)
    if image_size != NATIVE_SIZE:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = x.clamp_(0.0, 1.0)
    return x.contiguous(), torch.from_numpy(labels)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into (train, val) index tensors.

    >>> tr, va = split_indices(10, 0.2, seed=0)
    >>> len(tr), len(va), sorted(tr.tolist() + va.tolist()) == list(range(10))
    (8, 2, True)
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    # A private generator: the split must not depend on (or disturb) the global RNG.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:], perm[:n_val]


def _check_image_size(image_size: int) -> None:
    if image_size not in ALLOWED_IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {ALLOWED_IMAGE_SIZES}, got {image_size!r}")


class DigitsDataModule(pl.LightningDataModule):
    """scikit-learn's 8x8 digits, scaled to [0, 1], split into train and validation.

    Batches are ``(images, labels)``: images ``(B, 1, image_size, image_size)`` float32
    in [0, 1] (pixel / 16), labels int64 in 0..9. The split is a seeded permutation, so
    the same ``seed`` gives the same validation set in every trial of a search.

    Args:
        batch_size: images per training and validation batch.
        val_fraction: share of the 1797 images held out for validation.
        seed: seed of the train/validation split (and of the training shuffle order).
        num_workers: DataLoader workers; 0 is fastest for data this small.
        image_size: 8 (as shipped), or 16/32 upsampled bilinearly for bigger conv nets.

    Example::

        >>> dm = DigitsDataModule(batch_size=32)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), len(dm.train_dataset), len(dm.val_dataset)
        ((32, 1, 8, 8), 1438, 359)
    """

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        image_size: int = 8,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
        _check_image_size(image_size)
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.num_workers = num_workers
        self.image_size = image_size
        self.num_classes = 10
        self.dims = (1, image_size, image_size)
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None

    def prepare_data(self) -> None:
        """Nothing to download: the digits ship inside scikit-learn."""

    def setup(self, stage: str | None = None) -> None:
        """Build the seeded train/validation split (idempotent)."""
        if self.train_dataset is not None:
            return
        x, y = load_digits_tensors(self.image_size)
        train_idx, val_idx = split_indices(len(x), self.val_fraction, self.seed)
        self.train_dataset = TensorDataset(x[train_idx], y[train_idx])
        self.val_dataset = TensorDataset(x[val_idx], y[val_idx])

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, the order seeded by ``seed`` and the epoch."""
        assert self.train_dataset is not None, "call setup() first"
        return DataLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            shuffle=True,
            # Drop a ragged last batch: BatchNorm in the GAN dislikes a batch of 1.
            drop_last=len(self.train_dataset) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        """Validation batches in a fixed order."""
        assert self.val_dataset is not None, "call setup() first"
        return DataLoader(
            self.val_dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def test_dataloader(self) -> DataLoader:
        """The validation set again: digits is too small to hold out a third split."""
        return self.val_dataloader()
