"""Search spaces: dimensions, the unit-cube encoding, grids and dotted config keys.

A :class:`SearchSpace` maps dotted keys (``"training.lr"``, ``"model.hidden"``) to
dimensions. It is the one place that knows about parameter types: samplers draw and
optimise points in the unit cube ``[0, 1]^d`` and :meth:`SearchSpace.decode` turns a
point back into a valid configuration, so no sampler ever branches on a type.

Encoding, one column per dimension:

* ``Real``: linear, or linear in ``log(x)`` when ``log=True``.
* ``Integer``: the ``n`` admissible values split the unit interval into ``n`` equal
  cells (in log space when ``log=True``); a value encodes to the centre of its cell and
  any point of the cell decodes to it, so rounding is exact and unbiased.
* ``Categorical``: the same cell scheme over the index of the choice.

Example:
    >>> from frameworm_lightning import Categorical, Integer, Real, SearchSpace
    >>> space = SearchSpace({"training.lr": Real(1e-4, 1e-1, log=True),
    ...                      "model.hidden": Integer(16, 256, log=True),
    ...                      "model.act": ["relu", "gelu"]})
    >>> params = space.decode([0.5, 0.5, 0.9])
    >>> params["model.act"]
    'gelu'
    >>> space.apply({"training": {"lr": 1.0}, "model": {}}, params)["training"]["lr"] == params["training.lr"]
    True
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np

from frameworm_lightning.exceptions import ConfigKeyError, SpaceError

__all__ = [
    "Categorical",
    "Dimension",
    "Integer",
    "Real",
    "SearchSpace",
    "apply_params",
    "dimension_from_spec",
]

_JSON_SCALARS = (str, int, float, bool, type(None))

# SearchSpace.grid() lists every configuration; past this many it is an error (use grid_point).
MAX_LISTED_GRID = 1_000_000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_log(log: Any) -> bool:
    """``log`` as a bool; a string such as YAML's quoted ``"false"`` would otherwise be true."""
    if not isinstance(log, (bool, np.bool_)):
        raise SpaceError(f"log must be True or False, but got log={log!r}.")
    return bool(log)


def _linspace_at(low: float, high: float, n: int, i: int) -> float:
    """``np.linspace(low, high, n)[i]``, with NumPy's arithmetic, without the array."""
    return float(high) if i == n - 1 else i * ((high - low) / (n - 1)) + low


def _geomspace_at(low: float, high: float, n: int, i: int) -> float:
    """``np.geomspace(low, high, n)[i]`` for ``0 < low < high``, without the array."""
    if i == 0:
        return float(low)
    if i == n - 1:
        return float(high)
    return float(10.0 ** _linspace_at(math.log10(low), math.log10(high), n, i))


class _Axis(Sequence[Any]):
    """``n`` values computed on demand: ``axis[i]`` is ``value(i)``."""

    def __init__(self, n: int, value: Callable[[int], Any]) -> None:
        self._n = n
        self._value = value

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self._value(j) for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"grid index {i} is out of range for {self._n} values")
        return self._value(i)


class Dimension(ABC):
    """One searchable parameter: how to sample it, encode it and enumerate it."""

    @abstractmethod
    def decode(self, u: float) -> Any:
        """Map a unit-interval coordinate to a valid value (clipping outside ``[0, 1]``)."""

    @abstractmethod
    def encode(self, value: Any) -> float:
        """Map a valid value to its unit-interval coordinate (the inverse of :meth:`decode`)."""

    @abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this dimension can produce."""

    @abstractmethod
    def grid_axis(self, grid_points: int | None = None) -> Sequence[Any]:
        """The values a grid search visits, in a deterministic order, computed on demand.

        ``len(axis)`` and ``axis[i]`` cost nothing however many values there are, so
        ``Integer(0, 10**9)`` is a grid axis without a list of a billion integers.
        """

    def grid(self, grid_points: int | None = None) -> list[Any]:
        """The values of :meth:`grid_axis` as a list."""
        return list(self.grid_axis(grid_points))

    @abstractmethod
    def to_spec(self) -> dict[str, Any]:
        """A JSON-able description; ``dimension_from_spec(d.to_spec()) == d``."""

    @property
    def n_values(self) -> int | None:
        """The number of distinct values, or ``None`` for a continuous dimension."""
        return None

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw a value: uniform in the encoding (so log-uniform for ``log=True``)."""
        return self.decode(float(rng.random()))

    def canonical(self, value: Any) -> Any:
        """Convert a stored or numpy value back to the exact Python value of this dimension."""
        return value

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_spec() == other.to_spec()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_spec(), sort_keys=True, default=str))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_spec().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Real(Dimension):
    """A continuous parameter in ``[low, high]``.

    Args:
        low: lower bound (inclusive).
        high: upper bound (inclusive); must be greater than ``low``.
        log: search ``log(x)`` uniformly, for scale parameters such as learning rates.
        grid_points: how many values a grid search visits (evenly spaced, geometrically
            when ``log=True``). A ``Real`` in a grid without it (or the sampler's
            ``grid_points``) is an error; an ``Integer`` with more values than the
            sampler's ``grid_points`` is thinned the same way.

    Example:
        >>> Real(1e-4, 1e-1, log=True).grid(4)
        [0.0001, 0.001, 0.01, 0.1]
    """

    def __init__(self, low: float, high: float, log: bool = False, grid_points: int | None = None) -> None:
        log = _check_log(log)
        if not (_is_number(low) and _is_number(high)):
            raise SpaceError(f"Real bounds must be numbers, but got low={low!r}, high={high!r}.")
        if not (math.isfinite(low) and math.isfinite(high)):
            raise SpaceError(f"Real bounds must be finite, but got low={low!r}, high={high!r}.")
        if low >= high:
            raise SpaceError(f"Real needs low < high, but got low={low!r}, high={high!r}.")
        if not math.isfinite(float(high) - float(low)):
            raise SpaceError(
                f"Real bounds are too far apart: high - low overflows a float for low={low!r}, high={high!r}; "
                "use bounds whose difference is below 1.7e308, or log=True for a positive range."
            )
        if log and low <= 0:
            raise SpaceError(f"Real with log=True needs low > 0, but got low={low!r}.")
        if grid_points is not None and (not isinstance(grid_points, int) or grid_points < 2):
            raise SpaceError(f"grid_points must be an integer >= 2, but got grid_points={grid_points!r}.")
        self.low = float(low)
        self.high = float(high)
        self.log = bool(log)
        self.grid_points = grid_points

    def _bounds(self) -> tuple[float, float]:
        return (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)

    def decode(self, u: float) -> float:
        a, b = self._bounds()
        x = a + min(max(float(u), 0.0), 1.0) * (b - a)
        value = math.exp(x) if self.log else x
        return min(max(value, self.low), self.high)  # exp/log round-off must not leave the box

    def encode(self, value: Any) -> float:
        a, b = self._bounds()
        x = math.log(float(value)) if self.log else float(value)
        return min(max((x - a) / (b - a), 0.0), 1.0)

    def contains(self, value: Any) -> bool:
        return _is_number(value) and self.low <= float(value) <= self.high

    def grid_axis(self, grid_points: int | None = None) -> Sequence[float]:
        n = self.grid_points or grid_points
        if n is None:
            raise SpaceError(
                f"a grid needs a resolution for {self!r}: pass Real(..., grid_points=5) "
                "or GridSampler(grid_points=5), or list the values explicitly."
            )
        spaced = _geomspace_at if self.log else _linspace_at
        return _Axis(n, lambda i: float(f"{spaced(self.low, self.high, n, i):.12g}"))

    def canonical(self, value: Any) -> float:
        return float(value)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": "real", "low": self.low, "high": self.high, "log": self.log}
        if self.grid_points is not None:
            spec["grid_points"] = self.grid_points
        return spec


class Integer(Dimension):
    """An integer parameter ``low, low + step, ..., high``.

    Args:
        low: lower bound (inclusive), an integer.
        high: upper bound (inclusive), an integer greater than ``low``.
        log: spread values uniformly in ``log(x)`` (``step`` must then be 1).
        step: the spacing of admissible values; ``high - low`` must be a multiple of it.

    Example:
        >>> Integer(32, 256, log=True).grid()[:3]
        [32, 33, 34]
        >>> Integer(0, 10, step=5).grid()
        [0, 5, 10]
        >>> Integer(16, 256, log=True).grid(grid_points=3)
        [16, 64, 256]
    """

    def __init__(self, low: int, high: int, log: bool = False, step: int = 1) -> None:
        log = _check_log(log)
        for name, v in (("low", low), ("high", high), ("step", step)):
            if isinstance(v, bool) or not (
                isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer())
            ):
                raise SpaceError(f"Integer {name} must be an integer, but got {name}={v!r}.")
        low, high, step = int(low), int(high), int(step)
        if low >= high:
            raise SpaceError(f"Integer needs low < high, but got low={low!r}, high={high!r}.")
        if step < 1:
            raise SpaceError(f"Integer step must be >= 1, but got step={step!r}.")
        if (high - low) % step != 0:
            raise SpaceError(
                f"Integer step={step!r} does not fit the range: high - low = {high - low} is not a multiple of it."
            )
        if log and low <= 0:
            raise SpaceError(f"Integer with log=True needs low >= 1, but got low={low!r}.")
        if log and step != 1:
            raise SpaceError(f"Integer with log=True needs step=1, but got step={step!r}.")
        self.low, self.high, self.log, self.step = low, high, bool(log), step

    @property
    def n_values(self) -> int:
        return (self.high - self.low) // self.step + 1

    def _edges(self) -> tuple[float, float]:
        # Each value owns the cell [v - step/2, v + step/2]; in log space the cell edges
        # are log(v -/+ 0.5), which keeps every value reachable and rounding exact.
        if self.log:
            return math.log(self.low - 0.5), math.log(self.high + 0.5)
        return self.low - 0.5 * self.step, self.high + 0.5 * self.step

    def decode(self, u: float) -> int:
        a, b = self._edges()
        x = a + min(max(float(u), 0.0), 1.0) * (b - a)
        if self.log:
            value = round(math.exp(x))
        else:
            value = self.low + self.step * round((x - self.low) / self.step)
        return int(min(max(value, self.low), self.high))

    def encode(self, value: Any) -> float:
        a, b = self._edges()
        x = math.log(float(value)) if self.log else float(value)
        return min(max((x - a) / (b - a), 0.0), 1.0)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not _is_number(value) or float(value) != int(value):
            return False
        v = int(value)
        return self.low <= v <= self.high and (v - self.low) % self.step == 0

    def grid_axis(self, grid_points: int | None = None) -> Sequence[int]:
        """Every value, or ``grid_points`` of them spread evenly (geometrically for ``log``)
        when the range holds more values than that."""
        if grid_points is None or self.n_values <= grid_points:
            return range(self.low, self.high + 1, self.step)

        def snapped(i: int) -> int:
            p = (_geomspace_at if self.log else _linspace_at)(self.low, self.high, grid_points, i)
            return min(max(self.low + self.step * int(round((p - self.low) / self.step)), self.low), self.high)

        if not self.log:
            # Picks are more than one step apart, so no two snap to the same value.
            return _Axis(grid_points, snapped)
        # Geometric picks crowd at the low end, where rounding may merge neighbours.
        return sorted({snapped(i) for i in range(grid_points)})

    def canonical(self, value: Any) -> int:
        return int(value)

    def to_spec(self) -> dict[str, Any]:
        return {"type": "integer", "low": self.low, "high": self.high, "log": self.log, "step": self.step}


class Categorical(Dimension):
    """One of a fixed list of choices (strings, numbers, booleans, ``None`` or tuples of them).

    A plain Python list in a search space means ``Categorical`` of its items.

    Example:
        >>> Categorical(["adam", "sgd"]).decode(0.9)
        'sgd'
    """

    def __init__(self, choices: Sequence[Any]) -> None:
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise SpaceError(f"Categorical choices must be a list, but got choices={choices!r}.")
        choices = [tuple(c) if isinstance(c, list) else c for c in choices]
        if len(choices) == 0:
            raise SpaceError("Categorical needs at least one choice, but got choices=[].")
        for c in choices:
            items = c if isinstance(c, tuple) else (c,)
            if not all(isinstance(i, _JSON_SCALARS) for i in items):
                raise SpaceError(
                    f"Categorical choices must be str, int, float, bool, None or tuples of them, but got {c!r}."
                )
        keys = [json.dumps(c) for c in choices]
        duplicates = sorted({repr(c) for c, k in zip(choices, keys) if keys.count(k) > 1})
        if duplicates:
            raise SpaceError(f"Categorical choices must be distinct, but got duplicates {', '.join(duplicates)}.")
        self.choices: tuple[Any, ...] = tuple(choices)
        self._keys = keys

    @property
    def n_values(self) -> int:
        return len(self.choices)

    def index(self, value: Any) -> int:
        """The position of ``value`` among the choices (tuples and lists compare equal)."""
        key = json.dumps(tuple(value) if isinstance(value, list) else value)
        try:
            return self._keys.index(key)
        except ValueError:
            raise SpaceError(f"{value!r} is not one of the choices {list(self.choices)!r}.") from None

    def decode(self, u: float) -> Any:
        n = len(self.choices)
        return self.choices[min(int(min(max(float(u), 0.0), 1.0) * n), n - 1)]

    def encode(self, value: Any) -> float:
        return (self.index(value) + 0.5) / len(self.choices)

    def contains(self, value: Any) -> bool:
        try:
            self.index(value)
        except (SpaceError, TypeError):
            return False
        return True

    def grid_axis(self, grid_points: int | None = None) -> Sequence[Any]:
        return self.choices

    def canonical(self, value: Any) -> Any:
        return self.choices[self.index(value)]

    def to_spec(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": [list(c) if isinstance(c, tuple) else c for c in self.choices]}


_SPEC_TYPES: dict[str, type[Dimension]] = {
    "real": Real,
    "float": Real,
    "uniform": Real,
    "integer": Integer,
    "int": Integer,
    "categorical": Categorical,
    "choice": Categorical,
}


def dimension_from_spec(spec: Any, key: str = "<dimension>") -> Dimension:
    """Build a dimension from what a user may write in a space.

    Accepts a :class:`Dimension`, a list or tuple (a ``Categorical``), or a mapping
    ``{"type": "real"|"integer"|"categorical", ...}`` as written in YAML configs.
    """
    if isinstance(spec, Dimension):
        return spec
    if isinstance(spec, (list, tuple)):
        try:
            return Categorical(list(spec))
        except SpaceError as err:
            raise SpaceError(f"{key}: {err}") from None
    if isinstance(spec, Mapping):
        fields = dict(spec)
        kind = fields.pop("type", None)
        if kind is None and "choices" in fields:
            kind = "categorical"
        cls = _SPEC_TYPES.get(str(kind).lower()) if kind is not None else None
        if cls is None:
            raise SpaceError(
                f"{key}: unknown dimension type {kind!r}; use one of real, integer, categorical "
                f"(spec {dict(spec)!r})."
            )
        try:
            return cls(**fields)
        except TypeError as err:
            raise SpaceError(f"{key}: bad arguments for {cls.__name__}: {err} (spec {dict(spec)!r}).") from None
        except SpaceError as err:
            raise SpaceError(f"{key}: {err}") from None
    raise SpaceError(
        f"{key}: unknown dimension type {type(spec).__name__} ({spec!r}); use Real, Integer, "
        "Categorical, a list of choices or a {type: ...} mapping."
    )


def _split_key(key: str) -> list[str]:
    parts = key.split(".")
    if not key or any(p == "" for p in parts):
        raise SpaceError(f"search-space keys must be non-empty dotted names, but got key={key!r}.")
    return parts


def apply_params(base_config: Mapping[str, Any] | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of ``base_config`` with each dotted key of ``params`` set.

    ``"training.lr"`` sets ``config["training"]["lr"]``. The parent path must exist and be
    a mapping or a dataclass instance (``"cfg.optim.lr"`` sets a field of a dataclass
    argument, through :func:`dataclasses.replace`, so frozen ones too); the leaf may be new
    in a mapping and must be a field of a dataclass. The caller's config is never mutated.

    Raises:
        ConfigKeyError: a parent of a key is missing or neither a mapping nor a dataclass,
            or a dataclass has no such field.
    """
    config: dict[str, Any] = copy.deepcopy(dict(base_config or {}))
    for key, value in params.items():
        config = _set_path(config, _split_key(key), value, key, 0)
    return config


def _set_path(node: Any, parts: list[str], value: Any, key: str, depth: int) -> Any:
    """``node`` with ``parts[depth:]`` set to ``value``: a mapping is changed in place, a dataclass replaced."""
    part = parts[depth]
    path = ".".join(parts[: depth + 1])
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        names = {f.name for f in dataclasses.fields(node) if f.init}
        if part not in names:
            raise ConfigKeyError(f"cannot set {key!r}: {type(node).__name__} has no field {part!r} "
                                 f"(fields: {', '.join(sorted(names))}).")
        child = value if depth == len(parts) - 1 else _set_path(getattr(node, part), parts, value, key, depth + 1)
        return dataclasses.replace(node, **{part: child})
    if depth < len(parts) - 1:
        if part not in node:
            raise ConfigKeyError(f"cannot set {key!r}: the config has no {path!r}.")
        child = node[part]
        if not isinstance(child, Mapping) and not (dataclasses.is_dataclass(child) and not isinstance(child, type)):
            raise ConfigKeyError(
                f"cannot set {key!r}: {path!r} is a {type(child).__name__} ({child!r}), not a mapping or a dataclass."
            )
        value = _set_path(child, parts, value, key, depth + 1)
    node[part] = value
    return node


class SearchSpace(Mapping[str, Dimension]):
    """An ordered mapping of dotted keys to dimensions, with the unit-cube encoding.

    Args:
        dimensions: keys to a :class:`Dimension`, a list of choices, or a
            ``{"type": ...}`` mapping. Insertion order fixes the column order.

    Example:
        >>> space = SearchSpace({"lr": Real(1e-3, 1e-1, log=True), "depth": [1, 2, 3]})
        >>> len(space.grid(grid_points=3))
        9
        >>> back = space.decode(space.encode({"lr": 0.01, "depth": 2}))
        >>> round(back["lr"], 12), back["depth"]
        (0.01, 2)
    """

    def __init__(self, dimensions: Mapping[str, Any] | SearchSpace, *, allow_empty: bool = False) -> None:
        if isinstance(dimensions, SearchSpace):
            dimensions = dict(dimensions.items())
        if not isinstance(dimensions, Mapping):
            raise SpaceError(f"a search space must be a mapping of keys to dimensions, but got {dimensions!r}.")
        if not dimensions and not allow_empty:  # allowed only for studies recorded without a space
            raise SpaceError("a search space needs at least one dimension, but got an empty mapping.")
        dims: dict[str, Dimension] = {}
        for key, spec in dimensions.items():
            if not isinstance(key, str):
                raise SpaceError(f"search-space keys must be strings, but got key={key!r}.")
            _split_key(key)
            dims[key] = dimension_from_spec(spec, key)
        # Keys that are prefixes of each other would set the same config entry twice.
        for a in dims:
            for b in dims:
                if a != b and b.startswith(a + "."):
                    raise SpaceError(f"search-space keys {a!r} and {b!r} overlap: one is a parent of the other.")
        self._dims = dims

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> SearchSpace:
        """Rebuild a space from :meth:`to_spec` output (or a YAML ``space:`` section)."""
        return cls(spec)

    @staticmethod
    def check_duplicate_keys(pairs: Sequence[tuple[str, Any]]) -> None:
        """Raise if a list of ``(key, spec)`` pairs (e.g. parsed YAML) repeats a key."""
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise SpaceError(f"duplicate search-space key {key!r}.")
            seen.add(key)

    # Mapping protocol ---------------------------------------------------------------
    def __getitem__(self, key: str) -> Dimension:
        return self._dims[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dims)

    def __len__(self) -> int:
        return len(self._dims)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_spec(), sort_keys=True))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {d!r}" for k, d in self._dims.items())
        return f"SearchSpace({{{inner}}})"

    # Encoding -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of unit-cube columns (one per key)."""
        return len(self._dims)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw one configuration (uniform in the encoding)."""
        return self.decode(rng.random(self.dim))

    def decode(self, u: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """Map a point of the unit cube, shape ``(d,)``, to a configuration."""
        u = np.asarray(u, dtype=float).reshape(-1)
        if u.shape[0] != self.dim:
            raise SpaceError(f"expected a point with {self.dim} coordinates, but got {u.shape[0]}.")
        return {key: dim.decode(x) for (key, dim), x in zip(self._dims.items(), u)}

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """Map a configuration to its point in the unit cube, shape ``(d,)``."""
        self.validate(params)
        return np.array([dim.encode(params[key]) for key, dim in self._dims.items()], dtype=float)

    def validate(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`SpaceError` unless ``params`` has exactly this space's keys, each in range."""
        missing = [k for k in self._dims if k not in params]
        extra = [k for k in params if k not in self._dims]
        if missing or extra:
            raise SpaceError(
                f"parameters do not match the search space: missing {missing}, unknown {extra}; "
                f"space keys are {list(self._dims)}."
            )
        for key, dim in self._dims.items():
            if not dim.contains(params[key]):
                raise SpaceError(f"{key}={params[key]!r} is outside its dimension {dim!r}.")

    def canonical(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Restore exact Python values (e.g. tuples, ints) of params read back from JSON."""
        return {key: dim.canonical(params[key]) for key, dim in self._dims.items() if key in params}

    # Grid -----------------------------------------------------------------------------
    def grid_values(self, grid_points: int | None = None) -> list[Sequence[Any]]:
        """The values each dimension takes in a grid, in key order (each computed on demand)."""
        return [dim.grid_axis(grid_points) for dim in self._dims.values()]

    def grid_size(self, grid_points: int | None = None) -> int:
        """The number of points of the full grid (computed, never enumerated)."""
        return math.prod(len(v) for v in self.grid_values(grid_points))

    def grid(self, grid_points: int | None = None) -> list[dict[str, Any]]:
        """Every configuration of the grid, in a deterministic (lexicographic) order.

        Raises:
            SpaceError: the grid has more than ``MAX_LISTED_GRID`` points; use
                :meth:`grid_point` (what ``GridSampler`` does) instead of a list.
        """
        size = self.grid_size(grid_points)
        if size > MAX_LISTED_GRID:
            raise SpaceError(f"the grid has {size:,} points, too many to list (at most {MAX_LISTED_GRID:,}); "
                             "use grid_point(index) for one point at a time.")
        keys = list(self._dims)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.grid_values(grid_points))]

    def grid_point(self, index: int, grid_points: int | None = None) -> dict[str, Any]:
        """The ``index``-th configuration of :meth:`grid` without building the whole grid."""
        values = self.grid_values(grid_points)
        out: dict[str, Any] = {}
        for key, vals in reversed(list(zip(self._dims, values))):
            index, r = divmod(index, len(vals))
            out[key] = vals[r]
        return {k: out[k] for k in self._dims}

    # Configs --------------------------------------------------------------------------
    def apply(self, base_config: Mapping[str, Any] | None, params: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy of ``base_config`` with ``params`` set at their dotted keys."""
        return apply_params(base_config, params)

    def to_spec(self) -> dict[str, dict[str, Any]]:
        """A JSON-able description, stored with a study to detect a changed space on resume."""
        return {key: dim.to_spec() for key, dim in self._dims.items()}
