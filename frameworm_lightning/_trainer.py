"""What a Trainer's settings explain, for the runner's reporter and the stopping policies alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["why_no_validation"]


def why_no_validation(trainer: pl.Trainer) -> str:
    """Why a fit in which no validation ran had none (the Trainer settings to blame), and the fix:
    the end of a :class:`~frameworm_lightning.MetricNotFoundError` for a validation metric."""
    if trainer.limit_val_batches == 0:
        return "limit_val_batches=0 turns validation off; let a validation run, or pick one of those."
    limits = (f"max_epochs={trainer.max_epochs}, max_steps={trainer.max_steps}, "
              f"check_val_every_n_epoch={trainer.check_val_every_n_epoch}, "
              f"val_check_interval={trainer.val_check_interval}")
    return f"No validation ran before training ended ({limits}); let a validation run, or pick one of those."
