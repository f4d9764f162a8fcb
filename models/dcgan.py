"""A DCGAN (Radford et al., 2016) sized for the digits, trained with manual optimisation.

The generator projects a latent vector to a 2x2 map and doubles it with stride-2
transposed convolutions (BatchNorm + ReLU) up to ``image_size``, ending in ``tanh``; the
discriminator mirrors it with stride-2 convolutions (BatchNorm + LeakyReLU). Images are
modelled in [-1, 1] (``2 * x - 1`` of the [0, 1] datamodule images); :meth:`DCGAN.sample`
maps them back to [0, 1]. The losses are the non-saturating ones of Goodfellow et al.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import DigitsGenerativeModule

__all__ = ["DCGAN", "Discriminator", "Generator"]


def _n_stages(image_size: int) -> int:
    """Stride-2 stages between a 2x2 map and ``image_size`` (8 -> 2, 16 -> 3, 32 -> 4)."""
    return int(math.log2(image_size)) - 1


def _init_dcgan(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Latent ``(B, latent_dim)`` -> images ``(B, 1, S, S)`` in [-1, 1]; width ``features``."""

    def __init__(self, latent_dim: int, features: int, image_size: int) -> None:
        super().__init__()
        stages = _n_stages(image_size)
        ch = [features * 2 ** (stages - 1 - i) for i in range(stages)] + [1]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, ch[0], 2, 1, 0, bias=False),  # 1x1 -> 2x2
            nn.BatchNorm2d(ch[0]),
            nn.ReLU(True),
        ]
        for i in range(stages):
            last = i == stages - 1
            layers.append(nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(ch[i + 1]), nn.ReLU(True)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Images ``(B, 1, S, S)`` in [-1, 1] -> one real/fake logit each; width ``features``."""

    def __init__(self, features: int, image_size: int) -> None:
        super().__init__()
        stages = _n_stages(image_size)
        ch = [1] + [features * 2**i for i in range(stages)]
        layers: list[nn.Module] = []
        for i in range(stages):
            layers.append(nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1, bias=i == 0))
            if i > 0:  # no BatchNorm on the input layer, as in the DCGAN paper
                layers.append(nn.BatchNorm2d(ch[i + 1]))
            layers.append(nn.LeakyReLU(0.2, True))
        layers.append(nn.Conv2d(ch[-1], 1, 2, 1, 0))  # 2x2 -> 1x1
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class DCGAN(DigitsGenerativeModule):
    """A DCGAN on digits; logs ``g_loss``, ``d_loss`` (training) and ``fid`` (validation).

    Each training batch takes one discriminator step then one generator step, with two
    Adam optimisers (``automatic_optimization = False``). Search it on ``fid`` (lower is
    better): GAN losses do not measure sample quality. Because each batch makes two
    optimiser steps, Lightning's ``global_step`` (and ``max_steps``) counts both.

    Args:
        latent_dim: size of the generator's input noise.
        g_features: generator width (channels of its last hidden layer; doubled per stage).
        d_features: discriminator width (channels of its first layer; doubled per stage).
        g_lr, d_lr: Adam learning rates of the generator and of the discriminator.
        g_beta1, g_beta2, d_beta1, d_beta2: their Adam betas.
        image_size: side of the images (8, 16 or 32); must match the datamodule's.
        fid_every_n_epochs: log ``fid`` every this many epochs (and at the last); 0 = never.
        fid_num_samples: generated images per Fréchet score.
        sample_seed: seed of the FID samples (the same noise every epoch).

    Example::

        >>> from models import DCGAN
        >>> gan = DCGAN(latent_dim=16, g_features=32, d_features=32)
        >>> x = gan.sample(6)
        >>> tuple(x.shape), bool(x.min() >= 0) and bool(x.max() <= 1)
        ((6, 1, 8, 8), True)
    """

    def __init__(
        self,
        latent_dim: int = 32,
        g_features: int = 64,
        d_features: int = 64,
        g_lr: float = 1e-3,
        d_lr: float = 1e-3,
        g_beta1: float = 0.5,
        g_beta2: float = 0.999,
        d_beta1: float = 0.5,
        d_beta2: float = 0.999,
        image_size: int = 8,
        fid_every_n_epochs: int = 1,
        fid_num_samples: int = 256,
        sample_seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("g_features", g_features), ("d_features", d_features)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        for name, value in (("g_lr", g_lr), ("d_lr", d_lr)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name, value in (("g_beta1", g_beta1), ("g_beta2", g_beta2), ("d_beta1", d_beta1), ("d_beta2", d_beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        self.save_hyperparameters()
        self._init_generative(image_size, fid_every_n_epochs, fid_num_samples, sample_seed)
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.generator = Generator(latent_dim, g_features, image_size)
        self.discriminator = Discriminator(d_features, image_size)
        self.generator.apply(_init_dcgan)
        self.discriminator.apply(_init_dcgan)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generated images in [-1, 1] for latent codes ``z``."""
        return self.generator(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated images ``(n, 1, S, S)`` in [0, 1]."""
        z = torch.randn(n, self.latent_dim, generator=generator, device=self.device)
        return (self.generator(z) + 1.0) / 2.0

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """BCE of the discriminator on real (label 1) and fake (label 0) images in [-1, 1]."""
        logits_real = self.discriminator(real)
        logits_fake = self.discriminator(fake)
        return 0.5 * (
            F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
            + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
        )

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """Non-saturating generator loss: BCE of fakes against the "real" label."""
        logits = self.discriminator(fake)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, _ = batch
        real = 2.0 * x - 1.0
        opt_g, opt_d = self.optimizers()
        z = torch.randn(real.shape[0], self.latent_dim, device=self.device)

        # Discriminator step; the fakes are detached so the generator gets no gradient here.
        fake = self.generator(z)
        d_loss = self.discriminator_loss(real, fake.detach())
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        # Generator step against the freshly updated discriminator.
        g_loss = self.generator_loss(fake)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()

        self.log_dict({"g_loss": g_loss, "d_loss": d_loss}, on_step=False, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, _ = batch
        self._fid_update_real(x)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        h = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=h.g_lr, betas=(h.g_beta1, h.g_beta2))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=h.d_lr, betas=(h.d_beta1, h.d_beta2))
        return [opt_g, opt_d]
