"""Exhaustive grid search, enumerated lazily: grid point ``index`` is computed, never listed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from frameworm_lightning.exceptions import SpaceError
from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion
from frameworm_lightning.space import SearchSpace

__all__ = ["MAX_GRID_TRIALS", "GridSampler"]

# A whole grid larger than this is no sensible budget (a million trials of one second
# each is 11.6 days): n_trials=None with such a grid is an error, n_trials caps it.
MAX_GRID_TRIALS = 1_000_000

_MASK64 = (1 << 64) - 1
_FEISTEL_ROUNDS = 4


def _mix(x: int) -> int:
    """SplitMix64's finaliser: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def shuffled_index(i: int, n: int, key: int) -> int:
    """Position ``i`` of a keyed pseudo-random permutation of ``range(n)``, in O(1) memory.

    A balanced Feistel network permutes the ``2k``-bit numbers (``4**k >= n``); indices
    it maps outside ``range(n)`` are mapped again ("cycle walking"), which keeps it a
    bijection of ``range(n)``.

    Example:
        >>> sorted(shuffled_index(i, 10, key=7) for i in range(10)) == list(range(10))
        True
    """
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    low_mask = (1 << half) - 1
    x = i
    while True:
        left, right = x >> half, x & low_mask
        for r in range(_FEISTEL_ROUNDS):
            left, right = right, left ^ (_mix(key ^ (r << 56) ^ right) & low_mask)
        x = (left << half) | right
        if x < n:
            return x


class GridSampler(Sampler):
    """Visits every point of the space's grid exactly once, across all workers.

    Points are claimed through storage (``claim_key="grid:<index>"``), so two processes
    on one study never evaluate the same point, and a resumed search continues where it
    stopped. Point ``index`` is computed from the index alone, so a grid of 10^9 points
    costs no memory; searching a grid of more than ``MAX_GRID_TRIALS`` points to its end
    (``n_trials=None``) is refused as no sensible budget.

    Args:
        grid_points: the resolution of any ``Real`` without its own ``grid_points``.
        shuffle: visit the grid in a seeded random order instead of lexicographic order
            (useful when the search may be stopped early).
        seed: the seed of the shuffle.

    Example:
        >>> from frameworm_lightning import GridSampler, SearchSpace
        >>> GridSampler().max_trials(SearchSpace({"a": [1, 2], "b": ["x", "y", "z"]}))
        6
    """

    def __init__(self, grid_points: int | None = None, shuffle: bool = False, seed: int | None = None) -> None:
        super().__init__(seed=seed if seed is not None else 0)
        if grid_points is not None and (not isinstance(grid_points, int) or grid_points < 2):
            raise ValueError(f"grid_points must be an integer >= 2, but got grid_points={grid_points!r}.")
        self.grid_points = grid_points
        self.shuffle = bool(shuffle)

    def max_trials(self, space: SearchSpace) -> int:
        return space.grid_size(self.grid_points)

    def budget(self, space: SearchSpace, n_trials: int | None) -> int:
        size = self.max_trials(space)
        if n_trials is None and size > MAX_GRID_TRIALS:
            raise SpaceError(
                f"the grid has {size:,} points, more than any search can finish (at most {MAX_GRID_TRIALS:,} "
                "without n_trials); pass n_trials to search part of it (with shuffle=True for a spread-out part), "
                "or give the grid fewer points (grid_points=, fewer values)."
            )
        return size if n_trials is None else n_trials

    def _order(self, n: int) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(n))
        key = int(self.rng(0, salt=1).integers(0, 2**63))
        return (shuffled_index(i, n, key) for i in range(n))

    def ask(self, context: AskContext) -> Suggestion | None:
        n = self.max_trials(context.space)
        taken = {t.claim_key for t in context.trials if t.claim_key}
        for index in self._order(n):
            key = f"grid:{index}"
            if key not in taken:
                params = context.space.grid_point(index, self.grid_points)
                return Suggestion(params=params, claim_key=key, system_attrs={"grid_index": index})
        return None

    def identity(self) -> dict[str, Any]:
        """The grid's resolution and, when shuffled, its order (which points a partial search visits)."""
        return {**super().identity(), "grid_points": self.grid_points, "shuffle": self.shuffle,
                "seed": self.seed if self.shuffle else None}

    def __repr__(self) -> str:
        return f"GridSampler(grid_points={self.grid_points!r}, shuffle={self.shuffle!r}, seed={self.seed!r})"
