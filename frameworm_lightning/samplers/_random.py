"""Random search: independent draws, uniform in the space's encoding."""

from __future__ import annotations

import json

from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion

__all__ = ["RandomSampler"]

# How many redraws to spend looking for an unseen point in a small discrete space.
_MAX_REDRAWS = 64


class RandomSampler(Sampler):
    """Draws each configuration independently (log-uniform for ``log=True`` dimensions).

    The draw for trial ``n`` depends only on ``(seed, n)``: the same seed gives the same
    sequence whether the search runs in one process, many, or is resumed. In a space of
    only discrete dimensions a point already tried (or running) is redrawn a few times,
    so small spaces are not wasted on repeats.

    Example:
        >>> from frameworm_lightning import RandomSampler, Real, SearchSpace
        >>> from frameworm_lightning.samplers import AskContext
        >>> ctx = AskContext(SearchSpace({"lr": Real(1e-4, 1e-1, log=True)}), "min", [], number=0)
        >>> RandomSampler(seed=1).ask(ctx) == RandomSampler(seed=1).ask(ctx)
        True
    """

    def ask(self, context: AskContext) -> Suggestion:
        space = context.space
        rng = self.rng(context.number)
        params = space.sample(rng)
        if all(d.n_values is not None for d in space.values()):
            seen = {json.dumps(t.params, sort_keys=True, default=str) for t in context.trials if t.has_params}
            for _ in range(_MAX_REDRAWS):
                if json.dumps(params, sort_keys=True, default=str) not in seen:
                    break
                params = space.sample(rng)
        return Suggestion(params=params)
