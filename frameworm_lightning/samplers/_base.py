"""The sampler protocol: one ``ask`` that proposes a configuration from the history.

A sampler never talks to storage and never claims trials: the :class:`~frameworm_lightning.study.Study`
reserves a trial number, calls :meth:`Sampler.ask` with everything the sampler may need,
and stores the answer atomically. A sampler that must not repeat a point (a grid, an
enqueued config) returns a ``claim_key``; storage guarantees that two workers never
store the same key, and the study asks again when a key was taken meanwhile.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frameworm_lightning.space import SearchSpace
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["AskContext", "Sampler", "Suggestion"]


@dataclass(frozen=True)
class AskContext:
    """Everything a sampler sees when asked for the next configuration.

    Attributes:
        space: the search space.
        mode: ``"min"`` or ``"max"``.
        trials: every stored trial of the study except the one being sampled: finished
            ones, running (pending) ones with their params and intermediate values,
            pruned and failed ones.
        number: the number reserved for the trial being sampled. Samplers derive their
            randomness from ``(seed, number)`` so that concurrent workers and resumed
            searches draw different, reproducible points.
    """

    space: SearchSpace
    mode: str
    trials: Sequence[FrozenTrial]
    number: int

    def trials_in(self, *states: TrialState) -> list[FrozenTrial]:
        """The trials in any of ``states`` that have params."""
        return [t for t in self.trials if t.state in states and t.has_params]

    @property
    def complete(self) -> list[FrozenTrial]:
        return self.trials_in(TrialState.COMPLETE)

    @property
    def pending(self) -> list[FrozenTrial]:
        """Trials being evaluated right now, or enqueued: their values are not known yet."""
        return self.trials_in(TrialState.RUNNING, TrialState.WAITING)


@dataclass(frozen=True)
class Suggestion:
    """A sampler's answer: the params, and a key no other trial of the study may hold."""

    params: dict[str, Any]
    claim_key: str | None = None
    system_attrs: dict[str, Any] = field(default_factory=dict)


class Sampler(ABC):
    """Proposes configurations. Subclasses implement :meth:`ask`.

    Args:
        seed: makes the sequence of suggestions reproducible.
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, but got seed={seed!r}.")
        self.seed = None if seed is None else int(seed)
        # Without a seed every process draws its own entropy once, then stays deterministic.
        self._entropy = self.seed if self.seed is not None else int(np.random.SeedSequence().entropy % (2**63))

    def rng(self, number: int, salt: int = 0) -> np.random.Generator:
        """A generator for trial ``number``, independent of which process asks."""
        return np.random.default_rng([self._entropy, number, salt])

    @abstractmethod
    def ask(self, context: AskContext) -> Suggestion | None:
        """Propose the next configuration, or ``None`` when the sampler has nothing left."""

    def max_trials(self, space: SearchSpace) -> int | None:
        """How many distinct trials this sampler can produce (``None``: unbounded)."""
        return None

    def budget(self, space: SearchSpace, n_trials: int | None) -> int:
        """The trial budget of a search asking for ``n_trials`` (``None``: all this sampler has).

        Raises:
            ValueError: ``n_trials=None`` for a sampler without an end (every one but a grid).
        """
        if n_trials is not None:
            return n_trials
        bound = self.max_trials(space)
        if bound is None:
            raise ValueError(f"n_trials=None needs a bounded sampler such as GridSampler, not {self!r}; pass n_trials.")
        return bound

    def identity(self) -> dict[str, Any]:
        """What decides which points a resumed search runs, stored with the study.

        Resuming a study whose stored identity differs is refused (another sampler would
        mix its points with the stored ones: a grid counts random trials against its
        budget, or a finer grid repeats points). Settings that only change the order or
        the draw, such as a random sampler's seed, are left out.

        Example:
            >>> from frameworm_lightning import RandomSampler
            >>> RandomSampler(seed=3).identity()
            {'sampler': 'RandomSampler'}
        """
        return {"sampler": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed!r})"
