"""What the three generative models share: sampling and the validation Fréchet score.

:class:`DigitsGenerativeModule` is a LightningModule whose subclasses implement
:meth:`~DigitsGenerativeModule.sample` (images in [0, 1]); it then logs ``fid`` at the
end of validation: the validation images are the real set, ``fid_num_samples``
generated images (from a fixed seed, so epochs compare like with like) the fake one.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from .data import ALLOWED_IMAGE_SIZES
from .fid import digits_fid

__all__ = ["DigitsGenerativeModule"]


class DigitsGenerativeModule(pl.LightningModule):
    """Base class: a digits generator that can report a Fréchet score while validating.

    Subclasses call :meth:`_init_generative` from ``__init__``, call
    :meth:`_fid_update_real` on each validation batch (images in [0, 1]) and implement
    :meth:`sample`. The score is computed every ``fid_every_n_epochs`` epochs and at the
    last epoch, never during Lightning's sanity check; ``fid_every_n_epochs=0`` turns it off.
    """

    image_size: int
    fid_every_n_epochs: int
    fid_num_samples: int
    sample_seed: int

    def _init_generative(self, image_size: int, fid_every_n_epochs: int, fid_num_samples: int, sample_seed: int) -> None:
        if image_size not in ALLOWED_IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {ALLOWED_IMAGE_SIZES}, got {image_size!r}")
        if fid_every_n_epochs < 0:
            raise ValueError(f"fid_every_n_epochs must be >= 0, got {fid_every_n_epochs!r}")
        if fid_num_samples < 2:
            raise ValueError(f"fid_num_samples must be >= 2 (a covariance needs two), got {fid_num_samples!r}")
        self.image_size = image_size
        self.fid_every_n_epochs = fid_every_n_epochs
        self.fid_num_samples = fid_num_samples
        self.sample_seed = sample_seed
        # Kept out of the module tree on purpose (object.__setattr__): the frozen classifier
        # then stays out of checkpoints, the model summary and the optimisers, and Lightning
        # does not warn that it sits in eval mode. It follows the model's device lazily.
        object.__setattr__(self, "_fid_metric", digits_fid() if fid_every_n_epochs > 0 else None)
        self._fid_due_now = False

    @property
    def fid(self) -> FrechetInceptionDistance | None:
        """The Fréchet-distance metric (on the model's device), or ``None`` when disabled."""
        metric = self._fid_metric
        if metric is not None and metric.device != self.device:
            metric.to(self.device)
        return metric

    # -- to implement -------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` generated images ``(n, 1, image_size, image_size)`` in [0, 1]."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------
    def _check_datamodule(self) -> None:
        """Fail early, with both sizes named, when data and model disagree on image size."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        size = getattr(dm, "image_size", None)
        if size is not None and size != self.image_size:
            raise ValueError(
                f"the datamodule gives {size}x{size} images but {type(self).__name__} was built for "
                f"image_size={self.image_size}; set both (e.g. model.image_size and data.image_size) to the same value"
            )

    def setup(self, stage: str) -> None:
        self._check_datamodule()

    def _is_last_epoch(self) -> bool:
        t = self.trainer
        if t.max_epochs is not None and t.max_epochs > 0 and self.current_epoch + 1 >= t.max_epochs:
            return True
        return t.max_steps is not None and t.max_steps > 0 and self.global_step >= t.max_steps

    def _fid_due(self) -> bool:
        if self.fid is None or self.trainer.sanity_checking:
            return False
        return (self.current_epoch + 1) % self.fid_every_n_epochs == 0 or self._is_last_epoch()

    def _sample_generator(self) -> torch.Generator:
        """A fresh generator on the model's device, seeded with ``sample_seed``."""
        return torch.Generator(device=self.device).manual_seed(self.sample_seed)

    def _fid_update_real(self, images01: torch.Tensor) -> None:
        if self._fid_due_now and self.fid is not None:
            self.fid.update(images01, real=True)

    def on_validation_epoch_start(self) -> None:
        self._fid_due_now = self._fid_due()
        if self.fid is not None:
            self.fid.reset()

    def on_validation_epoch_end(self) -> None:
        if not self._fid_due_now or self.fid is None:
            return
        self._fid_due_now = False
        gen = self._sample_generator()
        left = self.fid_num_samples
        with torch.no_grad():
            while left > 0:  # chunks keep memory flat for big sample counts
                n = min(left, 512)
                self.fid.update(self.sample(n, generator=gen), real=False)
                left -= n
        score = self.fid.compute()
        self.fid.reset()
        self.log("fid", score, prog_bar=True, sync_dist=True)
