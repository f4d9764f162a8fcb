"""Hyperband (Li et al., 2018): successive halving over brackets that trade breadth for depth."""

from __future__ import annotations

import math

from frameworm_lightning.stopping._halving import _RungPolicy
from frameworm_lightning.stopping._rungs import Bracket, levels, tidy

__all__ = ["Hyperband"]


class Hyperband(_RungPolicy):
    """Successive halving in brackets ``s = K, K-1, ..., 0``, repeated.

    With ``K = floor(log_eta(max_resource / min_resource))``, bracket ``s`` starts
    ``n_s = ceil((K + 1) / (s + 1) * eta**s)`` configurations at
    ``min_resource * eta**(K - s)`` and halves them by ``eta`` at each rung up to
    ``max_resource``: the first bracket is the most aggressive (many configs, short
    first rung), the last trains ``n_0`` configs to ``max_resource`` outright. New
    configurations fill the brackets in that order, then a new round of brackets starts.

    Inside a ``SearchRunner`` each bracket is synchronous successive halving with pause
    and resume (see :class:`SuccessiveHalving`); ``n_trials`` counts fresh
    configurations, so one round takes ``sum(n_s)`` of them (``bracket_sizes``). Without
    a runner, each run joins the next bracket and is pruned at a rung unless it is among
    the best ``1/eta`` of its bracket's runs recorded there.

    Args:
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.
        min_resource / max_resource: the smallest first rung and the last rung.
        eta: the reduction factor (an integer >= 2).
        resource: ``"epochs"`` (fractional within an epoch) or ``"steps"`` (global steps).
        promotion: inside a runner, pause and resume (``True``), or prune at the rungs.

    Example:
        >>> hb = Hyperband(monitor="val_loss", min_resource=1, max_resource=9, eta=3)
        >>> [(b.size, b.rungs) for b in hb.brackets()]
        [(9, (1, 3, 9)), (5, (3, 9)), (3, (9,))]
    """

    synchronous = True

    @property
    def s_max(self) -> int:
        return levels(self.min_resource, self.max_resource, self.eta)

    def bracket(self, index: int) -> Bracket:
        k = self.s_max
        s = k - index % (k + 1)
        first = k - s
        rungs = tuple(tidy(self.min_resource * self.eta ** (first + i)) for i in range(s)) + (self.max_resource,)
        size = math.ceil((k + 1) / (s + 1) * self.eta**s - 1e-9)
        return Bracket(index, rungs, size)

    def brackets(self) -> list[Bracket]:
        """The brackets of one round, most aggressive first."""
        return [self.bracket(i) for i in range(self.s_max + 1)]

    @property
    def bracket_sizes(self) -> list[int]:
        """Fresh configurations per bracket in one round (their sum is one round's ``n_trials``)."""
        return [b.size or 0 for b in self.brackets()]
