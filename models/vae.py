"""A variational auto-encoder (Kingma & Welling, 2014) for the digits.

MLP encoder and decoder, a diagonal-Gaussian posterior and a standard-normal prior, on
pixels in [0, 1] (the :class:`~models.data.DigitsDataModule` scaling). Two likelihoods:

- ``"gaussian"`` (default): each pixel ~ N(sigmoid(decoder), obs_std²); the
  reconstruction term is a negative log *density*, so the negative ELBO can go below 0.
- ``"bernoulli"``: the binary cross-entropy summed over pixels. On grey (not binary)
  digits its irreducible entropy (~23 nats/image) dwarfs what the code can explain, so
  the posterior tends to collapse for the first epochs; kept for comparison.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import DigitsGenerativeModule

__all__ = ["VAE"]


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAE(DigitsGenerativeModule):
    """A β-VAE on digits; logs ``val_loss`` (the negative ELBO, nats per image).

    ``train_loss`` is the β-weighted objective ``recon + beta * kl`` that is minimised;
    ``val_loss`` is always the true negative ELBO ``recon + kl`` (β = 1), so trials
    with different β are compared on one scale. Also logged: ``train_recon``,
    ``train_kl``, ``val_recon``, ``val_kl`` and, when ``fid_every_n_epochs > 0``, ``fid``.
    Validation draws its posterior noise from ``sample_seed``, so it is deterministic.

    Args:
        hidden_dim: width of every hidden layer of the encoder and of the decoder.
        num_layers: hidden layers in the encoder and, mirrored, in the decoder (0 = linear).
        latent_dim: size of the latent code.
        likelihood: ``"gaussian"`` or ``"bernoulli"`` (see the module docstring).
        obs_std: standard deviation of the Gaussian likelihood, on the [0, 1] pixel scale.
        beta: weight of the KL term in the training objective.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        image_size: side of the input images; must match the datamodule's.
        fid_every_n_epochs: log ``fid`` every this many epochs (and at the last); 0 = never.
        fid_num_samples: generated images per Fréchet score.
        sample_seed: seed of the validation noise and of the FID samples.

    Example::

        >>> import lightning.pytorch as pl
        >>> from models import VAE, DigitsDataModule
        >>> model = VAE(hidden_dim=64, latent_dim=8)
        >>> trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, enable_checkpointing=False)
        >>> trainer.fit(model, datamodule=DigitsDataModule())  # doctest: +SKIP
        >>> tuple(model.sample(4).shape)
        (4, 1, 8, 8)
    """

    def __init__(
        self,
        hidden_dim: int = 256,
        num_layers: int = 2,
        latent_dim: int = 16,
        beta: float = 1.0,
        likelihood: str = "gaussian",
        obs_std: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        image_size: int = 8,
        fid_every_n_epochs: int = 0,
        fid_num_samples: int = 256,
        sample_seed: int = 0,
    ) -> None:
        super().__init__()
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {hidden_dim!r}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers!r}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim!r}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {likelihood!r}")
        if obs_std <= 0:
            raise ValueError(f"obs_std must be > 0, got {obs_std!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.save_hyperparameters()
        self._init_generative(image_size, fid_every_n_epochs, fid_num_samples, sample_seed)
        d = image_size * image_size
        self.latent_dim = latent_dim
        self.beta = beta
        self.likelihood = likelihood
        self.obs_std = obs_std
        self.encoder = _mlp([d] + [hidden_dim] * num_layers + [2 * latent_dim])
        self.decoder = _mlp([latent_dim] + [hidden_dim] * num_layers + [d])
        self._val_gen: torch.Generator | None = None

    # -- the model ----------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance ``(B, latent_dim)`` of images ``(B, 1, S, S)``."""
        mu, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid pixel means ``(B, 1, S, S)`` of latent codes ``(B, latent_dim)``."""
        return self.decoder(z).view(-1, 1, self.image_size, self.image_size)

    def loss_terms(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch means of the reconstruction and KL terms (nats per image).

        Their sum is the negative ELBO; ``generator`` seeds the reparameterisation noise.
        """
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decode_logits(z)
        if self.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        else:
            sq = (torch.sigmoid(logits) - x).pow(2).sum()
            nll = sq / (2 * self.obs_std**2) + x.numel() * (math.log(self.obs_std) + 0.5 * math.log(2 * math.pi))
        recon = nll / x.shape[0]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum() / x.shape[0]
        return recon, kl

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images in [0, 1]: the decoder's pixel means at prior draws (no pixel noise)."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel means in [0, 1] decoded from the posterior means of ``x``."""
        mu, _ = self.encode(x)
        return torch.sigmoid(self.decode_logits(mu))

    # -- Lightning ----------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, _ = batch
        recon, kl = self.loss_terms(x)
        loss = recon + self.beta * kl
        self.log_dict({"train_loss": loss, "train_recon": recon, "train_kl": kl}, on_step=False, on_epoch=True, prog_bar=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._val_gen = self._sample_generator()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, _ = batch
        recon, kl = self.loss_terms(x, generator=self._val_gen)
        self.log_dict({"val_loss": recon + kl, "val_recon": recon, "val_kl": kl}, on_epoch=True, prog_bar=False)
        self._fid_update_real(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        return torch.optim.Adam(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
