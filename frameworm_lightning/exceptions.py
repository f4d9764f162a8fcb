"""The exceptions raised by frameworm-lightning.

Every error we raise on purpose derives from one root, so ``except FramewormError``
catches all of them and nothing else::

    FramewormError
    ├── SpaceError (ValueError)            a bad dimension or search-space spec
    ├── ConfigKeyError (ValueError)        a dotted key with no place in the config / target
    ├── SamplerError (ValueError)          an unknown sampler or a bad sampler argument
    ├── StorageError                       the database cannot be opened, written or read
    │   └── StudyMismatchError (ValueError) a stored study disagrees with this search
    ├── MetricNotFoundError (KeyError)     the monitored metric was never logged
    └── TrialFailed                        a trial ended in an error (carries the cause)

Where an error is also a user-input mistake it subclasses :class:`ValueError` too, so
code written against plain Python conventions keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigKeyError",
    "FramewormError",
    "MetricNotFoundError",
    "SamplerError",
    "SpaceError",
    "StorageError",
    "StudyMismatchError",
    "TrialFailed",
]


class FramewormError(Exception):
    """Root of every error raised by frameworm-lightning."""


class SpaceError(FramewormError, ValueError):
    """A dimension or search space is badly specified (bad bounds, empty choices...)."""


class ConfigKeyError(FramewormError, ValueError):
    """A dotted key cannot be applied: its parent is missing, or no target accepts it."""


class SamplerError(FramewormError, ValueError):
    """An unknown sampler name or an invalid sampler argument."""


class StorageError(FramewormError):
    """The trial database cannot be opened, written or read."""


class StudyMismatchError(StorageError, ValueError):
    """A stored study disagrees with the search resuming it (space, metric or mode)."""


class MetricNotFoundError(FramewormError, KeyError):
    """The monitored metric was never logged; the message lists the metrics that were."""

    def __init__(self, metric: str, available: Iterable[str], fix: str = "") -> None:
        self.metric = metric
        self.available = sorted(available)
        self.fix = fix  # what to do, where Lightning's self.log is not it (no validation ran, a train_fn)
        shown = ", ".join(self.available) if self.available else "none"
        super().__init__(
            f"metric {metric!r} was never logged; logged metrics: {shown}. "
            + (fix or f"Log it with self.log({metric!r}, ...) or pick one of those.")
        )

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


class TrialFailed(FramewormError):
    """A trial ended in an error; ``cause`` holds the text stored with the trial."""

    def __init__(self, number: int, cause: str) -> None:
        self.number = number
        self.cause = cause
        super().__init__(f"trial {number} failed: {cause.strip().splitlines()[-1] if cause.strip() else cause}")
