"""The models, data sets and search spaces the curve tables are recorded on.

Three problems, each small enough that one configuration trains its whole budget of
epochs in about a second on one CPU thread:

- ``digits-mlp``: an MLP classifier on scikit-learn's 8x8 digits (1437 train / 360 val);
- ``cancer-mlp``: an MLP classifier on scikit-learn's breast-cancer (455 / 114, standardised);
- ``digits-vae``: the project's :class:`models.VAE` on :class:`models.DigitsDataModule`.

The classifiers report ``val_error`` (1 - accuracy on the validation split), the VAE its
``val_loss`` (negative ELBO, nats per image); both are minimised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from frameworm_lightning import Categorical, Integer, Real, SearchSpace
from models import VAE, DigitsDataModule
from models.data import load_digits_tensors, split_indices

__all__ = ["PROBLEMS", "MLPClassifier", "Problem", "TensorDataModule"]


class MLPClassifier(pl.LightningModule):
    """An MLP classifier with Adam; logs ``val_loss`` and ``val_error``."""

    def __init__(self, in_features: int, n_classes: int, hidden_dim: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, lr: float = 1e-3, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden_dim
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True)
        self.log("val_error", (logits.argmax(1) != y).float().mean(), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class TensorDataModule(pl.LightningDataModule):
    """Train and validation tensors in memory, shuffled by a seeded generator."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, val_fraction: float = 0.2,
                 seed: int = 0, standardise: bool = False) -> None:
        super().__init__()
        train, val = split_indices(len(x), val_fraction, seed)
        x = x.float()
        if standardise:  # with the training split's statistics only
            mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-8)
            x = (x - mean) / std
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=gen)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512)


def _digits_flat() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits_tensors()
    return x.flatten(1), y


def _cancer() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return torch.from_numpy(bunch.data.astype(np.float32)), torch.from_numpy(bunch.target.astype(np.int64))


@dataclass(frozen=True)
class Problem:
    """A model, its data and the space its configurations are drawn from."""

    name: str
    metric: str
    space: SearchSpace
    #: ``build(params) -> (module, datamodule)``
    build: Callable[[dict[str, Any]], tuple[pl.LightningModule, pl.LightningDataModule]]
    max_epochs: int = 27
    mode: str = "min"


_CLASSIFIER_SPACE = SearchSpace({
    "lr": Real(1e-4, 3e-1, log=True),
    "hidden_dim": Categorical([16, 32, 64, 128]),
    "num_layers": Integer(1, 3),
    "dropout": Real(0.0, 0.5),
    "weight_decay": Real(1e-6, 1e-1, log=True),
    "batch_size": Categorical([64, 128, 256]),
})


def _classifier(data: Callable[[], tuple[torch.Tensor, torch.Tensor]], n_classes: int, standardise: bool):
    def build(params: dict[str, Any]) -> tuple[pl.LightningModule, pl.LightningDataModule]:
        x, y = data()
        model_args = {k: v for k, v in params.items() if k != "batch_size"}
        module = MLPClassifier(x.shape[1], n_classes, **model_args)
        return module, TensorDataModule(x, y, batch_size=params["batch_size"], standardise=standardise)

    return build


def _vae(params: dict[str, Any]) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    model_args = {k: v for k, v in params.items() if k != "batch_size"}
    return VAE(**model_args), DigitsDataModule(batch_size=params["batch_size"])


PROBLEMS: dict[str, Problem] = {
    "digits-mlp": Problem("digits-mlp", "val_error", _CLASSIFIER_SPACE, _classifier(_digits_flat, 10, False)),
    "cancer-mlp": Problem("cancer-mlp", "val_error", _CLASSIFIER_SPACE, _classifier(_cancer, 2, True)),
    "digits-vae": Problem("digits-vae", "val_loss", SearchSpace({
        "lr": Real(1e-4, 3e-2, log=True),
        "hidden_dim": Categorical([32, 64, 128]),
        "num_layers": Integer(1, 2),
        "latent_dim": Categorical([2, 4, 8, 16]),
        "beta": Real(0.5, 2.0),
        "batch_size": Categorical([128, 256]),
    }), _vae),
}
