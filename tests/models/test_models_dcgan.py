"""DCGAN: manual optimisation improves the samples' Fréchet score; sample shapes; logging."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from models import DCGAN, DigitsDataModule, digits_fid


def _sample_fid(model: DCGAN, real: torch.Tensor) -> float:
    model.eval()
    metric = digits_fid()
    metric.update(real, real=True)
    metric.update(model.sample(256, generator=torch.Generator().manual_seed(0)), real=False)
    model.train()  # Lightning keeps the mode it is handed: give it back in training mode
    return float(metric.compute())


def test_training_lowers_the_discriminator_loss_and_the_fid(digits_val, quiet_trainer):
    pl.seed_everything(0)
    model = DCGAN(latent_dim=16, g_features=32, d_features=32, fid_every_n_epochs=0)
    dm = DigitsDataModule()
    dm.setup("fit")
    real = 2 * digits_val[:128] - 1
    z = torch.randn(128, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.eval()
        d_before = float(model.discriminator_loss(real, model.generator(z)))
    model.train()
    fid_before = _sample_fid(model, digits_val)
    quiet_trainer(max_epochs=4, limit_val_batches=0).fit(model, datamodule=dm)
    with torch.no_grad():
        model.eval()
        d_after = float(model.discriminator_loss(real, model.generator(z)))
    fid_after = _sample_fid(model, digits_val)
    assert d_after < d_before, (d_before, d_after)
    assert fid_after < 0.6 * fid_before, (fid_before, fid_after)


def test_uses_manual_optimisation_and_logs_losses_and_fid(quiet_trainer):
    pl.seed_everything(0)
    model = DCGAN(latent_dim=8, g_features=8, d_features=8, fid_num_samples=64)
    assert model.automatic_optimization is False
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3)
    trainer.fit(model, datamodule=DigitsDataModule())
    assert {"g_loss", "d_loss", "fid"} <= set(trainer.callback_metrics)
    assert trainer.global_step == 6  # two optimiser steps per batch
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())


@pytest.mark.parametrize("image_size", [8, 16, 32])
def test_samples_have_image_shape_and_unit_range(image_size):
    model = DCGAN(latent_dim=8, g_features=8, d_features=8, image_size=image_size)
    x = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert x.shape == (5, 1, image_size, image_size)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert model.discriminator(2 * x - 1).shape == (5,)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="1.5"):
        DCGAN(g_beta1=1.5)
    with pytest.raises(ValueError, match="-0.1"):
        DCGAN(d_lr=-0.1)
