"""VAE: the negative ELBO falls on a fixed seed; samples; logged metrics; argument checks."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from models import VAE, DigitsDataModule


def _nelbo(model: VAE, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        recon, kl = model.loss_terms(x, generator=torch.Generator().manual_seed(0))
    model.train()
    return float(recon + kl)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_negative_elbo_falls_with_training(likelihood, digits_val, quiet_trainer):
    pl.seed_everything(0)
    model = VAE(hidden_dim=64, latent_dim=8, likelihood=likelihood, lr=3e-3)
    before = _nelbo(model, digits_val)
    quiet_trainer(max_steps=60, limit_val_batches=0).fit(model, datamodule=DigitsDataModule())
    after = _nelbo(model, digits_val)
    assert after < before - 0.1 * abs(before), (before, after)


def test_logs_val_loss_as_the_unweighted_negative_elbo(quiet_trainer):
    pl.seed_everything(0)
    model = VAE(hidden_dim=32, latent_dim=4, beta=4.0, fid_every_n_epochs=1, fid_num_samples=64)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3)
    trainer.fit(model, datamodule=DigitsDataModule())
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert {"train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "fid"} <= set(m)
    assert m["val_loss"] == pytest.approx(m["val_recon"] + m["val_kl"], rel=1e-4)  # beta does not weight it
    assert m["train_loss"] == pytest.approx(m["train_recon"] + 4.0 * m["train_kl"], rel=1e-4)
    assert m["fid"] > 0


def test_validation_is_deterministic(quiet_trainer):
    pl.seed_everything(0)
    model = VAE(hidden_dim=32, latent_dim=4)
    dm = DigitsDataModule()
    a = quiet_trainer(max_epochs=1, limit_train_batches=0).validate(model, datamodule=dm, verbose=False)
    b = quiet_trainer(max_epochs=1, limit_train_batches=0).validate(model, datamodule=dm, verbose=False)
    assert a[0]["val_loss"] == b[0]["val_loss"]


@pytest.mark.parametrize("image_size", [8, 16])
def test_samples_have_image_shape_and_unit_range(image_size):
    model = VAE(hidden_dim=32, latent_dim=4, image_size=image_size)
    x = model.sample(7, generator=torch.Generator().manual_seed(1))
    assert x.shape == (7, 1, image_size, image_size)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert model.reconstruct(torch.rand(2, 1, image_size, image_size)).shape == (2, 1, image_size, image_size)


def test_hyperparameters_are_saved_and_checked():
    model = VAE(latent_dim=12, beta=0.5)
    assert model.hparams.latent_dim == 12 and model.hparams.beta == 0.5
    with pytest.raises(ValueError, match="-3"):
        VAE(latent_dim=-3)
    with pytest.raises(ValueError, match="poisson"):
        VAE(likelihood="poisson")


def test_mismatched_image_size_fails_early_and_clearly(quiet_trainer):
    with pytest.raises(ValueError, match="image_size=8"):
        quiet_trainer(max_steps=1).fit(VAE(), datamodule=DigitsDataModule(image_size=16))
