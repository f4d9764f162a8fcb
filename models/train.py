"""Train any of the models from a nested config: the ``train_fn`` of the seed's search API.

The seed's ``GridSearch`` / ``RandomSearch`` call ``train_fn(config)`` with a nested dict
whose dotted keys they set (``"model.lr"`` -> ``config["model"]["lr"]``).
:func:`train_from_config` is such a function for the models here::

    from frameworm_lightning.search import GridSearch
    from models.train import train_from_config

    config = {"model_class": "VAE", "model": {"hidden_dim": 64}, "data": {"batch_size": 64},
              "trainer": {"max_epochs": 3}}
    search = GridSearch(config, {"model.lr": [1e-3, 3e-3], "model.latent_dim": [4, 8]}, metric="val_loss")
    best_config, best_score = search.run(train_from_config)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl

from .data import DigitsDataModule

__all__ = ["MODEL_CLASSES", "train_from_config"]


def _model_classes() -> dict[str, type[pl.LightningModule]]:
    from .dcgan import DCGAN
    from .ddpm import DDPM
    from .vae import VAE

    return {"VAE": VAE, "DCGAN": DCGAN, "DDPM": DDPM}


#: The names ``config["model_class"]`` may take.
MODEL_CLASSES = ("VAE", "DCGAN", "DDPM")

_QUIET_TRAINER = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def train_from_config(config: Mapping[str, Any]) -> dict[str, float]:
    """Fit ``config["model_class"]`` on :class:`DigitsDataModule`; return the logged metrics.

    Keys: ``model_class`` (``"VAE"``, ``"DCGAN"`` or ``"DDPM"``), ``model`` (its
    ``__init__`` arguments), ``data`` (the datamodule's), ``trainer`` (the ``Trainer``'s;
    no logger, checkpoints or progress bar unless given) and ``seed`` (default 0, passed
    to ``seed_everything``). Returns ``trainer.callback_metrics`` as floats, e.g.
    ``{"val_loss": ..., "val_recon": ..., ...}`` for the VAE, ``{"fid": ...}`` for the GAN.
    """
    name = config.get("model_class", "VAE")
    classes = _model_classes()
    if name not in classes:
        raise ValueError(f"model_class must be one of {MODEL_CLASSES}, got {name!r}")
    pl.seed_everything(int(config.get("seed", 0)), verbose=False)
    model = classes[name](**dict(config.get("model") or {}))
    datamodule = DigitsDataModule(**dict(config.get("data") or {}))
    trainer = pl.Trainer(**{**_QUIET_TRAINER, **dict(config.get("trainer") or {})})
    trainer.fit(model, datamodule=datamodule)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
