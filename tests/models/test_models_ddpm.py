"""DDPM: the denoising loss falls on a fixed seed; schedules; samples; logging."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from models import DDPM, DigitsDataModule
from models.ddpm import noise_schedule


def _loss(model: DDPM, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(model.denoising_loss(x, generator=torch.Generator().manual_seed(0)))
    model.train()
    return loss


@pytest.mark.parametrize(
    "kwargs, steps", [({"denoiser": "unet", "width": 8}, 40), ({"denoiser": "mlp", "width": 64, "depth": 2}, 150)]
)
def test_denoising_loss_falls_with_training(kwargs, steps, digits_val, quiet_trainer):
    pl.seed_everything(0)
    model = DDPM(timesteps=50, fid_every_n_epochs=0, **kwargs)
    before = _loss(model, digits_val)
    quiet_trainer(max_steps=steps, limit_val_batches=0).fit(model, datamodule=DigitsDataModule())
    after = _loss(model, digits_val)
    assert before == pytest.approx(1.0, abs=0.1)  # zero-initialised output: predicts no noise
    assert after < 0.6 * before, (before, after)


def test_logs_train_and_val_loss_and_fid(quiet_trainer):
    pl.seed_everything(0)
    model = DDPM(width=8, timesteps=10, fid_every_n_epochs=1, fid_num_samples=32)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(model, datamodule=DigitsDataModule())
    assert {"train_loss", "val_loss", "fid"} <= set(trainer.callback_metrics)
    assert all(torch.isfinite(v) for v in trainer.callback_metrics.values())


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("timesteps", [10, 100, 1000])
def test_schedules_destroy_the_signal_by_the_last_step(schedule, timesteps):
    betas = noise_schedule(schedule, timesteps)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert betas.shape == (timesteps,) and bool((betas > 0).all() and (betas < 1).all())
    assert float(alpha_bar[-1]) < 0.05  # x_T is (nearly) pure noise
    assert bool((alpha_bar[1:] < alpha_bar[:-1]).all())


@pytest.mark.parametrize("denoiser, image_size", [("unet", 8), ("unet", 16), ("mlp", 8)])
def test_samples_have_image_shape_and_unit_range(denoiser, image_size):
    model = DDPM(denoiser=denoiser, width=8, depth=1, timesteps=5, image_size=image_size)
    x = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert x.shape == (4, 1, image_size, image_size)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="sigmoid"):
        DDPM(schedule="sigmoid")
    with pytest.raises(ValueError, match="transformer"):
        DDPM(denoiser="transformer")
    with pytest.raises(ValueError, match="0"):
        DDPM(timesteps=0)
