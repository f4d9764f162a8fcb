"""Train each model a few epochs on a GPU (if any) at a bigger size, and print what it logs.

    python scripts/gpu_check_models.py [--epochs 3] [--image-size 16]

A smoke test of the "scales up on a GPU" claim: every model, the Fréchet score's
classifier and the sampling noise must live on the model's device. Falls back to the
CPU with small sizes when no GPU is present.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import DCGAN, DDPM, VAE, DigitsDataModule  # noqa: E402


class EpochTimer(pl.Callback):
    """Prints each epoch's logged metrics and wall time."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        metrics = {k: round(float(v), 3) for k, v in trainer.callback_metrics.items()}
        print(f"  epoch {trainer.current_epoch}: {time.perf_counter() - self.t0:.2f} s {metrics}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=16)
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    size = args.image_size if gpu else 8
    print(f"torch {torch.__version__}, lightning {pl.__version__}, device {'cuda: ' + torch.cuda.get_device_name() if gpu else 'cpu'}")
    configs = {
        "VAE": (VAE, {"hidden_dim": 1024 if gpu else 128, "num_layers": 3, "latent_dim": 32, "fid_every_n_epochs": 1}),
        "DCGAN": (DCGAN, {"g_features": 128 if gpu else 16, "d_features": 128 if gpu else 16, "latent_dim": 64}),
        "DDPM": (DDPM, {"width": 64 if gpu else 8, "depth": 2 if gpu else 1, "timesteps": 100 if gpu else 10,
                        "fid_num_samples": 1024 if gpu else 64}),
    }
    for name, (cls, kwargs) in configs.items():
        pl.seed_everything(0, verbose=False)
        model = cls(image_size=size, **kwargs)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name}({kwargs}, image_size={size}): {n_params / 1e6:.2f} M parameters", flush=True)
        trainer = pl.Trainer(max_epochs=args.epochs, accelerator="gpu" if gpu else "cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, callbacks=[EpochTimer()])
        start = time.perf_counter()
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=256 if gpu else 64, image_size=size))
        model.to("cuda" if gpu else "cpu")  # fit() hands the model back on the CPU
        samples = model.sample(16, generator=torch.Generator(device=model.device).manual_seed(0))
        assert samples.shape == (16, 1, size, size) and samples.device == model.device, samples.shape
        assert 0.0 <= float(samples.min()) and float(samples.max()) <= 1.0
        assert model.fid is None or model.fid.device == model.device  # the metric follows lazily
        print(f"  {name} done in {time.perf_counter() - start:.1f} s; samples on {samples.device}, "
              f"fid {float(trainer.callback_metrics.get('fid', float('nan'))):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
