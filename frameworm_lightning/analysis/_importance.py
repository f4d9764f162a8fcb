"""Parameter importance by functional ANOVA of a random forest.

Notations:
    d: the number of parameters, one unit-cube column each (``SearchSpace.encode``).
    n: the number of complete trials the forest is fitted on.
    T: the number of trees; L: the number of leaves of one tree.
    f: one tree's prediction. A tree cuts the cube ``[0, 1]^d`` into L boxes; leaf ``l``
        is the box ``lo[l] < x <= hi[l]`` (per column) and predicts the constant ``v[l]``.

Functional ANOVA (Hutter, Hoos and Leyton-Brown, 2014) splits the variance of ``f``
under the uniform measure on the cube into parts owed to each parameter alone, each
pair, and so on. The importance of parameter ``i`` is the share of the variance of the
main effect ``f_i(x_i) = E[f | x_i]`` in the total variance of ``f``, computed per tree
and averaged over the forest. Because a tree is constant on boxes, every integral is a
finite sum and the decomposition is exact:

* the mean is ``m = sum_l vol[l] v[l]`` and the variance ``V = sum_l vol[l] (v[l] - m)^2``;
* between two consecutive cut points of column ``i``, ``E[f | x_i]`` is constant and
  equals ``sum_l [segment inside leaf l] v[l] vol[l] / width_i[l]``;
* so ``Var(f_i)`` is a weighted sum over those segments.

Why a random forest and not the GP surrogate of the Bayesian sampler: the forest's
marginals are exact finite sums (the GP's need numerical integration of its posterior
mean over the other ``d - 1`` columns), a forest needs no kernel hyperparameters and is
robust to the few dozen noisy, sometimes heavy-tailed values a search yields, it handles
categorical columns (cells of the encoding) without a special kernel, and it is the
method of the fANOVA paper and of Optuna's default evaluator, so the two can be compared
on the same trials.

Working in the unit-cube encoding means the importance is measured under the search
distribution: a ``log=True`` parameter is integrated uniformly in ``log(x)``, a
categorical one gives each choice equal weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

from frameworm_lightning.analysis._frame import StudyLike, complete_trials, resolve

__all__ = ["ForestANOVA", "importance_table", "param_importance"]

_EPS = 1e-14


class _TreeBoxes:
    """One fitted tree as its leaf boxes: ``lo``/``hi`` of shape ``(L, d)`` and values ``v`` ``(L,)``."""

    def __init__(self, estimator: object, d: int) -> None:
        tree = estimator.tree_  # type: ignore[attr-defined]
        lo = np.zeros((tree.node_count, d))
        hi = np.ones((tree.node_count, d))
        leaves: list[int] = []
        stack = [0]
        while stack:
            node = stack.pop()
            left, right = tree.children_left[node], tree.children_right[node]
            if left == -1:
                leaves.append(node)
                continue
            col, cut = tree.feature[node], min(max(float(tree.threshold[node]), 0.0), 1.0)
            lo[left], hi[left] = lo[node], hi[node]
            lo[right], hi[right] = lo[node], hi[node]
            hi[left, col] = min(hi[node, col], cut)  # sklearn sends x <= threshold left
            lo[right, col] = max(lo[node, col], cut)
            stack += [left, right]
        idx = np.array(leaves)
        self.lo, self.hi = lo[idx], hi[idx]
        self.v = tree.value[idx, 0, 0].astype(float)
        self.width = np.clip(self.hi - self.lo, 0.0, None)  # (L, d)
        self.vol = self.width.prod(axis=1)  # (L,)
        self.mean = float(self.vol @ self.v)
        self.variance = float(self.vol @ (self.v - self.mean) ** 2)

    def _others_volume(self, cols: Sequence[int]) -> np.ndarray:
        """Volume of each leaf over the columns not in ``cols``, shape ``(L,)``."""
        keep = np.ones(self.width.shape[1], dtype=bool)
        keep[list(cols)] = False
        return self.width[:, keep].prod(axis=1)

    def main_effect_variance(self, col: int) -> float:
        """``Var(E[f | x_col])`` under the uniform measure."""
        cuts = np.unique(np.concatenate([[0.0, 1.0], self.lo[:, col], self.hi[:, col]]))
        left, right = cuts[:-1], cuts[1:]
        length = right - left  # (K,)
        mid = 0.5 * (left + right)
        inside = (self.lo[:, col, None] < mid) & (mid <= self.hi[:, col, None])  # (L, K)
        marginal = (self.v * self._others_volume([col])) @ inside  # (K,)
        return float(length @ (marginal - self.mean) ** 2)

    def marginal(self, cols: Sequence[int], points: np.ndarray) -> np.ndarray:
        """``E[f | x_cols = p]`` for each row ``p`` of ``points`` ``(P, len(cols))``; shape ``(P,)``."""
        inside = np.ones((points.shape[0], self.v.shape[0]), dtype=bool)  # (P, L)
        for j, col in enumerate(cols):
            p = points[:, j, None]
            # The cube's own faces belong to the boundary leaves.
            inside &= ((self.lo[None, :, col] < p) | (self.lo[None, :, col] <= 0.0)) & (p <= self.hi[None, :, col])
        return inside @ (self.v * self._others_volume(cols))


class ForestANOVA:
    """A random forest fitted on unit-cube points, with its functional ANOVA.

    Args:
        X: the encoded configurations, shape ``(n, d)``, in ``[0, 1]``.
        y: their objective values, shape ``(n,)``.
        n_trees / max_depth / min_samples_leaf / seed: the forest's settings.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.random((60, 2))
        >>> anova = ForestANOVA(X, 5 * X[:, 0] ** 2)
        >>> fractions = anova.main_effects().mean(axis=0)
        >>> bool(fractions[0] > 0.9 and fractions[1] < 0.05)
        True
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, n_trees: int = 64, max_depth: int | None = 64,
                 min_samples_leaf: int = 1, seed: int | None = 0) -> None:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).reshape(-1)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be (n, d) with one row per value, but got X.shape={X.shape}, y.shape={y.shape}.")
        if X.shape[0] < 2:
            raise ValueError(f"functional ANOVA needs at least 2 complete trials, but got {X.shape[0]}.")
        if not isinstance(n_trees, int) or n_trees < 1:
            raise ValueError(f"n_trees must be a positive integer, but got n_trees={n_trees!r}.")
        self.d = X.shape[1]
        self.forest = RandomForestRegressor(
            n_estimators=n_trees, max_depth=max_depth, min_samples_split=2, min_samples_leaf=min_samples_leaf,
            random_state=seed, n_jobs=1,
        ).fit(X, y)
        self.trees = [_TreeBoxes(est, self.d) for est in self.forest.estimators_]

    def main_effects(self) -> np.ndarray:
        """Each tree's share of variance owed to each column alone, shape ``(T', d)``.

        Trees that predict a constant (no variance to explain) are left out, so ``T' <= T``;
        when every tree is constant the result is all zeros, shape ``(1, d)``.
        """
        rows = [
            [tree.main_effect_variance(col) / tree.variance for col in range(self.d)]
            for tree in self.trees if tree.variance > _EPS
        ]
        return np.array(rows) if rows else np.zeros((1, self.d))

    def marginal(self, cols: Sequence[int], points: np.ndarray) -> np.ndarray:
        """The forest's mean prediction with ``cols`` fixed at ``points`` ``(P, len(cols))``
        and every other column averaged over ``[0, 1]``; shape ``(P,)``."""
        points = np.atleast_2d(np.asarray(points, dtype=float))
        return np.mean([tree.marginal(cols, points) for tree in self.trees], axis=0)


def fit_anova(source: StudyLike, *, n_trees: int = 64, max_depth: int | None = 64, seed: int | None = 0) -> ForestANOVA:
    """Fit :class:`ForestANOVA` on the complete trials of ``source``."""
    study, _ = resolve(source)
    if not study.space:
        raise ValueError(f"parameter importance needs a search space, but study {study.name!r} was recorded "
                         "without one (by the stopping callbacks in a training script).")
    trials = complete_trials(source)
    if len(trials) < 2:
        raise ValueError(
            f"parameter importance needs at least 2 complete trials, but study {study.name!r} has {len(trials)}."
        )
    X = np.stack([study.space.encode(study.space.canonical(t.params)) for t in trials])
    y = np.array([t.value for t in trials], dtype=float)
    return ForestANOVA(X, y, n_trees=n_trees, max_depth=max_depth, seed=seed)


def importance_table(source: StudyLike, *, normalize: bool = True, n_trees: int = 64,
                     max_depth: int | None = 64, seed: int | None = 0) -> pd.DataFrame:
    """Importance of each parameter, most important first.

    Columns: ``importance`` (the mean over trees of the share of variance; with
    ``normalize`` rescaled to sum to 1) and ``std`` (its spread over trees, on the same
    scale). The index is the parameter key.
    """
    study, _ = resolve(source)
    effects = fit_anova(source, n_trees=n_trees, max_depth=max_depth, seed=seed).main_effects()
    mean, std = effects.mean(axis=0), effects.std(axis=0)
    total = mean.sum()
    if normalize and total > _EPS:
        mean, std = mean / total, std / total
    frame = pd.DataFrame({"importance": mean, "std": std}, index=pd.Index(list(study.space), name="param"))
    return frame.sort_values("importance", ascending=False, kind="stable")


def param_importance(source: StudyLike, *, normalize: bool = True, n_trees: int = 64,
                     max_depth: int | None = 64, seed: int | None = 0) -> dict[str, float]:
    """``{param: importance}``, most important first (see :func:`importance_table`).

    Example:
        >>> from frameworm_lightning import Real, SobolSampler, Study
        >>> study = Study.create("imp", {"x": Real(-1, 1), "noise": Real(0, 1)}, metric="loss",
        ...                      sampler=SobolSampler(seed=0), storage="memory")
        >>> while (t := study.ask(budget=32)) is not None:
        ...     _ = t.complete(t.params["x"] ** 2)
        >>> imp = param_importance(study)
        >>> list(imp), imp["noise"] < 0.05
        (['x', 'noise'], True)
    """
    table = importance_table(source, normalize=normalize, n_trees=n_trees, max_depth=max_depth, seed=seed)
    return {str(k): float(v) for k, v in table["importance"].items()}
