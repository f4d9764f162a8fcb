"""The model encoding: how the GP sees a :class:`~frameworm_lightning.space.SearchSpace`.

The search space already maps every configuration to the unit cube (log dimensions in
log space, integers and categoricals as equal cells). The GP needs two things more:

* integers keep their unit-cube column, but a candidate may only sit on the encoded
  value of an admissible integer, so the acquisition optimiser searches over those
  values exactly and two suggestions never decode to the same configuration by
  accident;
* a categorical becomes the *index* of its choice, and the kernel compares indices for
  equality only (see :class:`~frameworm_lightning._gp.gp.MixedMatern52Kernel`), so no
  order between choices is invented.

Decoding always goes back through the unit cube and :meth:`SearchSpace.decode`; this
module never turns a coordinate into a parameter value itself.

Notations:
    d: the number of dimensions of the space (one model column each).
    U: points of the unit cube, shape ``(n, d)``.
    X: points in the model encoding, shape ``(n, d)``; equal to ``U`` except that a
        categorical column holds the choice index ``0..k-1``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from scipy.stats import qmc

from frameworm_lightning.space import Categorical, Integer, SearchSpace

__all__ = ["ColumnKind", "ModelEncoding", "sobol_points"]

# An integer with more values than this is searched as a continuous column and rounded.
_MAX_ENUMERATED_INTEGER = 65_536
_MAX_CACHE = 100_000


class ColumnKind(str, Enum):
    """How the GP and the acquisition optimiser treat one column."""

    CONTINUOUS = "continuous"
    INTEGER = "integer"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class _Column:
    kind: ColumnKind
    # INTEGER: the sorted unit-cube codes of every admissible value; CATEGORICAL: 0..k-1.
    values: np.ndarray | None = None


def sobol_points(n: int, d: int, seed: Any, skip: int = 0) -> np.ndarray:
    """``n`` points of a scrambled Sobol sequence in ``[0, 1]^d`` from index ``skip``, shape ``(n, d)``."""
    engine = qmc.Sobol(d=d, scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance warnings for non powers of two
        if skip:
            engine.fast_forward(skip)
        return engine.random(n)


class ModelEncoding:
    """The GP's view of a search space, derived from the space's own unit-cube encoding.

    Args:
        space: the search space.

    Example:
        >>> from frameworm_lightning import Integer, Real, SearchSpace
        >>> enc = ModelEncoding(SearchSpace({"lr": Real(1e-4, 1e-1, log=True), "act": ["relu", "gelu", "tanh"]}))
        >>> enc.to_model(np.array([[0.5, 0.9]])).tolist()
        [[0.5, 2.0]]
        >>> enc.decode(np.array([0.5, 2.0]))["act"]
        'tanh'
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        columns: list[_Column] = []
        for dim in space.values():
            if isinstance(dim, Categorical):
                columns.append(_Column(ColumnKind.CATEGORICAL, np.arange(dim.n_values, dtype=float)))
            elif isinstance(dim, Integer) and dim.n_values <= _MAX_ENUMERATED_INTEGER:
                codes = np.array(sorted(dim.encode(v) for v in dim.grid()), dtype=float)
                columns.append(_Column(ColumnKind.INTEGER, codes))
            else:
                # Real, or an integer too large to enumerate (rounded through the space on decode).
                columns.append(_Column(ColumnKind.CONTINUOUS))
        self._columns = columns
        self._cache: dict[Any, np.ndarray] = {}
        self._large_integer = np.array(
            [isinstance(dim, Integer) and c.kind is ColumnKind.CONTINUOUS for dim, c in zip(space.values(), columns)]
        )

    # Column structure -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return len(self._columns)

    @property
    def kinds(self) -> list[ColumnKind]:
        return [c.kind for c in self._columns]

    @property
    def categorical_mask(self) -> np.ndarray:
        """Boolean, shape ``(d,)``: the columns the kernel compares for equality only."""
        return np.array([c.kind is ColumnKind.CATEGORICAL for c in self._columns])

    @property
    def continuous_mask(self) -> np.ndarray:
        """Boolean, shape ``(d,)``: the columns searched by gradient (reals and huge integers)."""
        return np.array([c.kind is ColumnKind.CONTINUOUS for c in self._columns])

    def discrete_values(self, j: int) -> np.ndarray:
        """The admissible model values of discrete column ``j``, sorted, shape ``(k,)``."""
        values = self._columns[j].values
        if values is None:
            raise ValueError(f"column {j} is continuous, but got a request for its discrete values.")
        return values

    @property
    def discrete_columns(self) -> list[int]:
        return [j for j, c in enumerate(self._columns) if c.kind is not ColumnKind.CONTINUOUS]

    @property
    def n_configurations(self) -> int | None:
        """How many distinct configurations the space has (``None`` with a continuous column)."""
        if self.continuous_mask.any():
            return None
        return math.prod(len(c.values) for c in self._columns)  # type: ignore[arg-type]

    def all_configurations(self) -> np.ndarray:
        """Every configuration of an all-discrete space in the model encoding, shape ``(N, d)``."""
        grids = np.meshgrid(*[self.discrete_values(j) for j in range(self.dim)], indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], axis=-1)

    # Conversions ------------------------------------------------------------------------
    def to_model(self, U: np.ndarray) -> np.ndarray:
        """Unit-cube points ``(n, d)`` to model points ``(n, d)``, each on an admissible value."""
        U = np.clip(np.asarray(U, dtype=float).reshape(-1, self.dim), 0.0, 1.0)
        X = U.copy()
        for j, c in enumerate(self._columns):
            if c.kind is ColumnKind.CATEGORICAL:
                k = len(c.values)  # type: ignore[arg-type]
                X[:, j] = np.minimum(np.floor(U[:, j] * k), k - 1)
        return self.snap(X)

    def to_unit(self, X: np.ndarray) -> np.ndarray:
        """Model points ``(n, d)`` back to the unit cube ``(n, d)`` (cell centres for categoricals)."""
        X = self.snap(np.asarray(X, dtype=float).reshape(-1, self.dim))
        U = X.copy()
        for j, c in enumerate(self._columns):
            if c.kind is ColumnKind.CATEGORICAL:
                U[:, j] = (X[:, j] + 0.5) / len(c.values)  # type: ignore[arg-type]
        return U

    def snap(self, X: np.ndarray) -> np.ndarray:
        """Move model points ``(n, d)`` onto the nearest admissible value of every discrete column."""
        X = np.array(X, dtype=float).reshape(-1, self.dim)
        for j, c in enumerate(self._columns):
            if c.kind is ColumnKind.CONTINUOUS:
                X[:, j] = np.clip(X[:, j], 0.0, 1.0)
                if self._large_integer[j]:
                    dim = list(self.space.values())[j]
                    X[:, j] = [dim.encode(dim.decode(u)) for u in X[:, j]]
            else:
                X[:, j] = _nearest(c.values, X[:, j])  # type: ignore[arg-type]
        return X

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """A configuration to its model point, shape ``(d,)`` (cached: a study re-reads its history every trial)."""
        try:
            key: Any = tuple(sorted((k, _hashable(v)) for k, v in params.items()))
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in self._cache:
            return self._cache[key].copy()
        x = self.to_model(self.space.encode(params)[None, :])[0]
        if key is not None:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[key] = x.copy()
        return x

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """A model point, shape ``(d,)``, to a configuration (through the space's decoder)."""
        return self.space.decode(self.to_unit(np.asarray(x)[None, :])[0])

    def key(self, X: np.ndarray, decimals: int = 9) -> list[tuple[float, ...]]:
        """Hashable keys of model points ``(n, d)``: equal keys mean the same configuration
        (continuous columns compared to ``decimals`` places)."""
        X = np.round(np.asarray(X, dtype=float).reshape(-1, self.dim), decimals)
        return [tuple(row) for row in X.tolist()]


def _hashable(value: Any) -> Any:
    # JSON brings tuples back as lists; the type tag keeps 1, 1.0 and True apart.
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return (type(value).__name__, value)


def _nearest(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The element of the sorted ``values`` (k,) nearest to each entry of ``x`` (n,)."""
    idx = np.clip(np.searchsorted(values, x), 1, len(values) - 1) if len(values) > 1 else np.zeros(len(x), int)
    if len(values) == 1:
        return np.full(len(x), values[0])
    left, right = values[idx - 1], values[idx]
    return np.where(np.abs(x - left) <= np.abs(right - x), left, right)
