"""GPU slots for parallel trials: whole GPUs or fractions of one, placed by ``CUDA_VISIBLE_DEVICES``.

A trial asks for ``gpus_per_trial`` GPUs:

* ``None`` — the library does not manage GPUs: every worker inherits the search
  process's ``CUDA_VISIBLE_DEVICES``;
* ``0`` — CPU trials: GPUs are hidden from the worker (``CUDA_VISIBLE_DEVICES=""``);
* a fraction ``0 < g < 1`` — ``g`` of one GPU: ``1/g`` trials share a GPU (``0.5``: two
  small models per GPU). The fraction is a scheduling share, as in Ray: it is not a
  memory limit;
* an integer ``g >= 1`` — ``g`` whole GPUs, for a trial that runs DDP over them
  (``trainer.devices=g``).

Each worker process sees only its GPUs, renumbered from 0 by CUDA, so the trial's
``Trainer(accelerator="gpu", devices=1)`` lands on the GPU it was given. A lease is
returned when its trial ends, whatever way it ends.

Example:
    >>> pool = GpuPool(0.5, devices=["0", "1"])
    >>> [pool.acquire().visible for _ in range(4)], pool.capacity
    (['0', '1', '0', '1'], 4)
    >>> pool.acquire() is None
    True
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["GpuLease", "GpuPool", "validate_gpus_per_trial", "visible_gpus"]


def validate_gpus_per_trial(gpus_per_trial: float | None) -> float | None:
    """Return ``gpus_per_trial`` if valid (``None``, ``0``, a fraction below 1, or an integer).

    Raises:
        ValueError: naming the offending value.
    """
    if gpus_per_trial is None:
        return None
    if isinstance(gpus_per_trial, bool) or not isinstance(gpus_per_trial, (int, float)):
        raise ValueError(f"gpus_per_trial must be a number or None, but got gpus_per_trial={gpus_per_trial!r}.")
    if not math.isfinite(gpus_per_trial) or gpus_per_trial < 0:
        raise ValueError(f"gpus_per_trial must be >= 0, but got gpus_per_trial={gpus_per_trial!r}.")
    if gpus_per_trial > 1 and float(gpus_per_trial) != int(gpus_per_trial):
        raise ValueError(
            "gpus_per_trial above 1 must be a whole number of GPUs (a DDP trial over them), "
            f"but got gpus_per_trial={gpus_per_trial!r}."
        )
    return gpus_per_trial


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out: ``CUDA_VISIBLE_DEVICES`` if set, else every CUDA device."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch  # noqa: PLC0415 - only when GPUs are managed

        # device_count() does not create a CUDA context, so spawned workers stay free to.
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA means no GPUs to place
        return []


@dataclass(frozen=True)
class GpuLease:
    """GPUs held by one trial: the device ids it sees and its share of each."""

    devices: tuple[str, ...]
    share: Fraction

    @property
    def visible(self) -> str:
        """The value of the worker's ``CUDA_VISIBLE_DEVICES``."""
        return ",".join(self.devices)

    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": self.visible}


class GpuPool:
    """Hands out GPU leases of ``gpus_per_trial`` each over ``devices``.

    Fractional leases go to the GPU with the most room left (trials spread before they
    share); whole-GPU leases take the lowest-numbered free GPUs.

    Args:
        gpus_per_trial: as validated by :func:`validate_gpus_per_trial`, and above 0.
        devices: the GPU ids to use (default: :func:`visible_gpus`).

    Raises:
        ValueError: no GPU is visible, or a trial needs more GPUs than there are.
    """

    def __init__(self, gpus_per_trial: float, devices: Sequence[str] | None = None) -> None:
        validate_gpus_per_trial(gpus_per_trial)
        if not gpus_per_trial:
            raise ValueError(f"GpuPool needs gpus_per_trial > 0, but got gpus_per_trial={gpus_per_trial!r}.")
        self.devices = list(visible_gpus() if devices is None else devices)
        if not self.devices:
            raise ValueError(
                f"gpus_per_trial={gpus_per_trial!r} but no GPU is visible to this process "
                "(CUDA_VISIBLE_DEVICES is empty or torch sees no CUDA device); use gpus_per_trial=None or 0 on CPU."
            )
        # Fraction(str(...)) reads 0.1 as 1/10, not as its binary approximation.
        self.share = Fraction(str(gpus_per_trial)).limit_denominator(1000)
        self.whole = int(self.share) if self.share >= 1 else 0
        if self.whole > len(self.devices):
            raise ValueError(
                f"gpus_per_trial={gpus_per_trial!r} needs {self.whole} GPUs but only {len(self.devices)} "
                f"are visible ({','.join(self.devices)})."
            )
        self._free = {d: Fraction(1) for d in self.devices}

    @property
    def capacity(self) -> int:
        """How many trials can hold a lease at once."""
        if self.whole:
            return len(self.devices) // self.whole
        return len(self.devices) * int(Fraction(1) / self.share)

    def acquire(self) -> GpuLease | None:
        """A lease on free GPUs, or ``None`` while none is free."""
        if self.whole:
            free = [d for d in self.devices if self._free[d] == 1]
            if len(free) < self.whole:
                return None
            chosen = tuple(free[: self.whole])
            for d in chosen:
                self._free[d] = Fraction(0)
            return GpuLease(chosen, Fraction(1))
        roomy = [d for d in self.devices if self._free[d] >= self.share]
        if not roomy:
            return None
        best = max(roomy, key=lambda d: (self._free[d], -self.devices.index(d)))
        self._free[best] -= self.share
        return GpuLease((best,), self.share)

    def release(self, lease: GpuLease | None) -> None:
        """Give a lease's GPUs back (``None`` is ignored)."""
        if lease is None:
            return
        for d in lease.devices:
            self._free[d] = min(Fraction(1), self._free[d] + lease.share)

    def __repr__(self) -> str:
        return f"GpuPool(gpus_per_trial={float(self.share):g}, devices={self.devices!r})"
