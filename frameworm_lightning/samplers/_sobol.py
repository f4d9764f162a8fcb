"""Quasi-random search on a scrambled Sobol sequence (scipy)."""

from __future__ import annotations

import warnings

from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion

__all__ = ["SobolSampler"]


class SobolSampler(Sampler):
    """Trial ``n`` takes the ``n``-th point of a seeded, scrambled Sobol sequence.

    Sobol points fill the unit cube more evenly than independent draws, so a small
    budget covers the space better than :class:`RandomSampler`. Because the point is a
    function of the trial number, concurrent workers never draw the same point.

    Example:
        >>> from frameworm_lightning import Real, SearchSpace, SobolSampler
        >>> from frameworm_lightning.samplers import AskContext
        >>> space = SearchSpace({"x": Real(0, 1), "y": Real(0, 1)})
        >>> a = SobolSampler(seed=0).ask(AskContext(space, "min", [], number=0)).params
        >>> 0 <= a["x"] <= 1
        True
    """

    def ask(self, context: AskContext) -> Suggestion:
        from scipy.stats import qmc  # noqa: PLC0415 - scipy.stats takes seconds to import; only Sobol needs it

        engine = qmc.Sobol(d=context.space.dim, scramble=True, seed=self.rng(0, salt=2))
        with warnings.catch_warnings():
            # Balance warnings concern drawing non-powers of two in one call; we draw one point by index.
            warnings.simplefilter("ignore", UserWarning)
            if context.number:
                engine.fast_forward(context.number)
            point = engine.random(1)[0]
        return Suggestion(params=context.space.decode(point), system_attrs={"sobol_index": context.number})
