"""A denoising diffusion probabilistic model (Ho et al., 2020) for the digits.

The denoiser predicts the noise ε added to an image at step t (a small U-Net, or an
MLP); the loss is the mean squared error on ε. Sampling is ancestral: ``timesteps``
reverse steps from pure noise, each clipping its estimate of the clean image to
[-1, 1]. Images are modelled in [-1, 1] (``2 * x - 1`` of the [0, 1] datamodule
images); :meth:`DDPM.sample` maps them back to [0, 1].

Noise schedules: ``"linear"`` spaces β from ``beta_start`` to ``beta_end`` scaled by
``1000 / timesteps`` (Nichol & Dhariwal's scaling, so the paper's 1e-4..0.02 defaults
suit any number of steps), ``"cosine"`` is Nichol & Dhariwal's cosine schedule.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import DigitsGenerativeModule

__all__ = ["DDPM", "MLPDenoiser", "UNetDenoiser", "noise_schedule"]


def noise_schedule(
    schedule: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """The β_t of a schedule, a float64 tensor of length ``timesteps`` in (0, 1).

    >>> b = noise_schedule("cosine", 100)
    >>> b.shape[0], bool((b > 0).all() and (b < 1).all())
    (100, True)
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps!r}")
    if schedule == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), timesteps, dtype=torch.float64)
    if schedule == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embeddings ``(B, dim)`` of integer steps ``t`` (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.t_proj = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.t_proj(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNetDenoiser(nn.Module):
    """A small U-Net ε-predictor: ``width`` base channels, ``depth`` res-blocks per level.

    Levels halve the resolution down to 4x4 (one level per halving, channels doubling
    up to 4x ``width``), with skip connections and a two-block middle.

    >>> net = UNetDenoiser(image_size=8, width=16, depth=1)
    >>> tuple(net(torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 9])).shape)
    (3, 1, 8, 8)
    """

    def __init__(self, image_size: int = 8, width: int = 32, depth: int = 1) -> None:
        super().__init__()
        n_levels = max(1, int(math.log2(image_size)) - 1)  # 8 -> 2 levels (8x8, 4x4)
        chans = [width * min(2**i, 4) for i in range(n_levels)]
        self.t_dim = 4 * width
        self.t_mlp = nn.Sequential(nn.Linear(width, self.t_dim), nn.SiLU(), nn.Linear(self.t_dim, self.t_dim))
        self.width = width
        self.conv_in = nn.Conv2d(1, width, 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_ch = [width]
        c = width
        for i, ch in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(depth):
                blocks.append(_ResBlock(c, ch, self.t_dim))
                c = ch
                skip_ch.append(c)
            self.down.append(blocks)
            if i < n_levels - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skip_ch.append(c)
        self.mid = nn.ModuleList([_ResBlock(c, c, self.t_dim), _ResBlock(c, c, self.t_dim)])

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for _ in range(depth + 1):
                blocks.append(_ResBlock(c + skip_ch.pop(), ch, self.t_dim))
                c = ch
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)))
        self.norm_out = nn.GroupNorm(_groups(c), c)
        self.conv_out = nn.Conv2d(c, 1, 3, padding=1)
        # Start as "predict zero noise", a stable start for ε-prediction.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.t_mlp(timestep_embedding(t, self.width))
        h = self.conv_in(x)
        skips = [h]
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, temb)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        for block in self.mid:
            h = block(h, temb)
        for i, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MLPDenoiser(nn.Module):
    """An MLP ε-predictor on flattened pixels and a time embedding: ``depth`` layers of ``width``.

    >>> net = MLPDenoiser(image_size=8, width=64, depth=2)
    >>> tuple(net(torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 9])).shape)
    (3, 1, 8, 8)
    """

    def __init__(self, image_size: int = 8, width: int = 256, depth: int = 3) -> None:
        super().__init__()
        d = image_size * image_size
        self.image_size = image_size
        self.t_dim = min(width, 128)
        self.t_mlp = nn.Sequential(nn.Linear(self.t_dim, width), nn.SiLU())
        self.inp = nn.Linear(d, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, d)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.t_mlp(timestep_embedding(t, self.t_dim))
        h = self.inp(x.flatten(1)) + temb
        for layer in self.hidden:
            h = h + layer(F.silu(h))  # residual: deep MLPs still train from step 0
        return self.out(F.silu(h)).view(-1, 1, self.image_size, self.image_size)


class DDPM(DigitsGenerativeModule):
    """A DDPM on digits; logs ``train_loss``, ``val_loss`` (denoising MSE) and ``fid``.

    ``val_loss`` draws its steps and noise from ``sample_seed``, so it is deterministic
    and comparable across epochs and trials. Generating the ``fid_num_samples`` images
    for ``fid`` costs ``timesteps`` denoiser passes, often more than the epoch itself on
    a CPU: when searching on ``val_loss``, raise ``fid_every_n_epochs`` (or set it to 0).
    When searching on ``fid`` keep it at 1, as a ``SearchRunner`` reads the metric after
    every validation.

    Args:
        denoiser: ``"unet"`` or ``"mlp"``.
        width: U-Net base channels, or MLP hidden width (try 256 for the MLP).
        depth: U-Net res-blocks per level, or MLP hidden layers.
        timesteps: diffusion steps T (training and sampling).
        schedule: ``"linear"`` or ``"cosine"`` (see the module docstring).
        beta_start, beta_end: the linear schedule's end points, for T = 1000.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        image_size: side of the images (8, 16 or 32); must match the datamodule's.
        fid_every_n_epochs: log ``fid`` every this many epochs (and at the last); 0 = never.
        fid_num_samples: generated images per Fréchet score.
        sample_seed: seed of the validation noise and of the FID samples.

    Example::

        >>> from models import DDPM
        >>> model = DDPM(width=16, timesteps=20)
        >>> x = model.sample(4)
        >>> tuple(x.shape), bool(x.min() >= 0) and bool(x.max() <= 1)
        ((4, 1, 8, 8), True)
    """

    def __init__(
        self,
        denoiser: str = "unet",
        width: int = 32,
        depth: int = 1,
        timesteps: int = 100,
        schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        image_size: int = 8,
        fid_every_n_epochs: int = 1,
        fid_num_samples: int = 256,
        sample_seed: int = 0,
    ) -> None:
        super().__init__()
        if denoiser not in ("unet", "mlp"):
            raise ValueError(f"denoiser must be 'unet' or 'mlp', got {denoiser!r}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width!r}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        if not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got beta_start={beta_start!r}, beta_end={beta_end!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        betas = noise_schedule(schedule, timesteps, beta_start, beta_end)  # validates both
        self.save_hyperparameters()
        self._init_generative(image_size, fid_every_n_epochs, fid_num_samples, sample_seed)
        self.timesteps = timesteps
        if denoiser == "unet":
            self.denoiser = UNetDenoiser(image_size, width, depth)
        else:
            self.denoiser = MLPDenoiser(image_size, width, depth)
        alphas = 1.0 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        # Derived from the hyperparameters, so not saved in checkpoints (persistent=False).
        for name, value in {
            "betas": betas,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
            "post_coef_x0": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "post_coef_xt": (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
            "post_var": betas * (1 - alpha_bar_prev) / (1 - alpha_bar),
        }.items():
            self.register_buffer(name, value.float(), persistent=False)
        self._val_gen: torch.Generator | None = None

    @staticmethod
    def _at(buf: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return buf[t][:, None, None, None]

    def denoising_loss(self, x01: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean squared error of the predicted noise, for images ``x01`` in [0, 1].

        ``generator`` seeds the steps and the noise (deterministic when given).
        """
        x0 = 2.0 * x01 - 1.0
        t = torch.randint(0, self.timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        xt = self._at(self.sqrt_alpha_bar, t) * x0 + self._at(self.sqrt_one_minus_alpha_bar, t) * noise
        return F.mse_loss(self.denoiser(xt, t), noise)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, 1, S, S)`` in [0, 1] by ``timesteps`` ancestral steps."""
        s = self.image_size
        x = torch.randn(n, 1, s, s, generator=generator, device=self.device)
        for step in reversed(range(self.timesteps)):
            t = torch.full((n,), step, device=self.device, dtype=torch.long)
            eps = self.denoiser(x, t)
            x0 = ((x - self._at(self.sqrt_one_minus_alpha_bar, t) * eps) / self._at(self.sqrt_alpha_bar, t)).clamp(-1, 1)
            x = self._at(self.post_coef_x0, t) * x0 + self._at(self.post_coef_xt, t) * x
            if step > 0:
                noise = torch.randn(x.shape, generator=generator, device=self.device)
                x = x + self._at(self.post_var, t).sqrt() * noise
        return ((x.clamp(-1, 1) + 1.0) / 2.0)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, _ = batch
        loss = self.denoising_loss(x)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._val_gen = self._sample_generator()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, _ = batch
        self.log("val_loss", self.denoising_loss(x, generator=self._val_gen), on_epoch=True, prog_bar=True)
        self._fid_update_real(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.denoiser.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
