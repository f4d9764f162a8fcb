"""Exhaustive grid search."""

from __future__ import annotations

from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion
from frameworm_lightning.space import SearchSpace

__all__ = ["GridSampler"]


class GridSampler(Sampler):
    """Visits every point of the space's grid exactly once, across all workers.

    Points are claimed through storage (``claim_key="grid:<index>"``), so two processes
    on one study never evaluate the same point, and a resumed search continues where it
    stopped.

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

    def _order(self, n: int) -> list[int]:
        if not self.shuffle:
            return list(range(n))
        return [int(i) for i in self.rng(0, salt=1).permutation(n)]

    def ask(self, context: AskContext) -> Suggestion | None:
        n = self.max_trials(context.space)
        taken = {t.claim_key for t in context.trials if t.claim_key}
        for index in self._order(n):
            key = f"grid:{index}"
            if key not in taken:
                params = context.space.grid_point(index, self.grid_points)
                return Suggestion(params=params, claim_key=key, system_attrs={"grid_index": index})
        return None

    def __repr__(self) -> str:
        return f"GridSampler(grid_points={self.grid_points!r}, shuffle={self.shuffle!r}, seed={self.seed!r})"
