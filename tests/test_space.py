"""Search spaces: encoding round trips, grids, dotted keys and every bad spec."""

from __future__ import annotations

import dataclasses

import math

import numpy as np
import pytest

from frameworm_lightning import Categorical, ConfigKeyError, FramewormError, Integer, Real, SearchSpace, SpaceError
from frameworm_lightning.space import apply_params, dimension_from_spec


@pytest.mark.parametrize(
    "dim",
    [Real(-3, 5), Real(1e-5, 1e-1, log=True), Integer(0, 10), Integer(1, 1024, log=True), Integer(-10, 20, step=5),
     Categorical(["a", "b", "c"]), Categorical([1, 2.5, None, True, (0.9, 0.999)])],
)
def test_decode_encode_roundtrip_and_range(dim):
    rng = np.random.default_rng(0)
    for u in np.concatenate([rng.random(300), [0.0, 1.0, 1e-12, 1 - 1e-12]]):
        value = dim.decode(u)
        assert dim.contains(value), (dim, u, value)
        back = dim.decode(dim.encode(value))
        if isinstance(dim, Real):
            assert math.isclose(back, value, rel_tol=1e-9, abs_tol=1e-12)
        else:
            assert back == value


def test_integer_cells_are_equal_and_every_value_reachable():
    dim = Integer(1, 4)
    counts = {v: 0 for v in range(1, 5)}
    for u in np.linspace(0, 1, 4001):
        counts[dim.decode(u)] += 1
    assert all(abs(c - 1000) <= 2 for c in counts.values()), counts
    log_dim = Integer(1, 1000, log=True)
    assert {log_dim.decode(u) for u in np.linspace(0, 1, 20001)} >= {1, 2, 10, 999, 1000}


def test_log_real_samples_log_uniformly():
    values = np.array([Real(1e-4, 1.0, log=True).sample(np.random.default_rng(i)) for i in range(4000)])
    per_decade = np.histogram(np.log10(values), bins=4, range=(-4, 0))[0]
    assert per_decade.min() > 850, per_decade  # ~1000 per decade


def test_grid_enumeration_order_and_points():
    space = SearchSpace({"training.lr": [0.001, 0.0001], "training.batch_size": [64, 128, 256]})
    grid = space.grid()
    assert len(grid) == 6 == space.grid_size()
    assert grid[0] == {"training.lr": 0.001, "training.batch_size": 64}
    assert grid[1] == {"training.lr": 0.001, "training.batch_size": 128}
    assert [space.grid_point(i) for i in range(6)] == grid
    assert Real(0, 1, grid_points=3).grid() == [0.0, 0.5, 1.0]
    assert Integer(16, 256, log=True).grid(3) == [16, 64, 256]
    assert Integer(0, 100, step=10).grid(4) == [0, 30, 70, 100]
    assert Integer(1, 3).grid(5) == [1, 2, 3], "a small range keeps every value"
    assert SearchSpace({"n": Integer(0, 1000), "c": ["a", "b"]}).grid_size(grid_points=5) == 10
    assert Real(1e-3, 1e-1, log=True).grid(3) == pytest.approx([1e-3, 1e-2, 1e-1])


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize(("low", "high", "n"), [(1e-4, 1e-1, 4), (0.3, 7.9, 13), (2.0, 1e6, 50), (1e-9, 3e-3, 7)])
def test_grid_axes_are_computed_per_index_as_numpy_would_list_them(low, high, n, log):
    axis = Real(low, high, log=log).grid_axis(n)
    listed = np.geomspace(low, high, n) if log else np.linspace(low, high, n)
    assert len(axis) == n and [axis[i] for i in range(n)] == [float(f"{p:.12g}") for p in listed]
    assert axis[-1] == high and axis[1:3] == [axis[1], axis[2]]
    with pytest.raises(IndexError):
        axis[n]


def test_a_billion_value_grid_axis_is_never_listed():
    dim = Integer(0, 10**9)
    assert dim.grid_axis() == range(0, 10**9 + 1) and len(dim.grid_axis()) == 10**9 + 1
    assert list(dim.grid_axis(grid_points=5)) == [0, 250_000_000, 500_000_000, 750_000_000, 10**9]
    space = SearchSpace({"a": Integer(0, 999), "b": Integer(0, 999), "c": Real(0, 1, grid_points=1000)})
    assert space.grid_size() == 10**9
    assert space.grid_point(10**9 - 1) == {"a": 999, "b": 999, "c": 1.0}
    assert space.grid_point(1_002_003) == {"a": 1, "b": 2, "c": pytest.approx(3 / 999)}


def test_real_in_grid_without_resolution_is_a_clear_error():
    with pytest.raises(SpaceError, match="grid_points"):
        SearchSpace({"lr": Real(0, 1)}).grid()


def test_apply_sets_nested_keys_without_mutating_the_caller():
    base = {"training": {"lr": 0.1, "batch_size": 32}, "model": {"hidden": 8}}
    out = SearchSpace({"training.lr": Real(1e-4, 1e-1), "model.hidden": [16]}).apply(
        base, {"training.lr": 0.01, "model.hidden": 16}
    )
    assert out == {"training": {"lr": 0.01, "batch_size": 32}, "model": {"hidden": 16}}
    assert base == {"training": {"lr": 0.1, "batch_size": 32}, "model": {"hidden": 8}}
    assert out["training"] is not base["training"]
    assert apply_params({}, {"top": 1}) == {"top": 1}  # a top-level key may be new


@dataclasses.dataclass(frozen=True)
class _Optim:
    lr: float = 0.1
    momentum: float = 0.0


@dataclasses.dataclass
class _Config:
    hidden: int = 8
    optim: _Optim = dataclasses.field(default_factory=_Optim)


def test_apply_sets_fields_of_dataclasses_frozen_or_not():
    # A module configured by a (nested) dataclass: "cfg.optim.lr" was refused ("'cfg' is a _Config, not a mapping").
    base = {"cfg": _Config()}
    out = apply_params(base, {"cfg.optim.lr": 0.01, "cfg.hidden": 16})
    assert out == {"cfg": _Config(hidden=16, optim=_Optim(lr=0.01))}
    assert base == {"cfg": _Config()}, "the caller's config is not mutated"
    with pytest.raises(ConfigKeyError, match=r"cannot set 'cfg\.optim\.lrr': _Optim has no field 'lrr'"):
        apply_params(base, {"cfg.optim.lrr": 0.01})


@pytest.mark.parametrize(
    "base, key, match",
    [({}, "training.lr", "no 'training'"), ({"training": 3}, "training.lr", "'training' is a int"),
     ({"a": {"b": [1]}}, "a.b.c", "'a.b' is a list")],
)
def test_apply_rejects_missing_or_non_mapping_parents(base, key, match):
    with pytest.raises(ConfigKeyError, match=match) as info:
        apply_params(base, {key: 1})
    assert key in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FramewormError)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Real(1.0, 1.0), r"low < high.*low=1.0, high=1.0"),
        (lambda: Real(2.0, 1.0), r"low=2.0, high=1.0"),
        (lambda: Real(0.0, 1.0, log=True), r"log=True needs low > 0.*low=0.0"),
        (lambda: Real(-1.0, 1.0, log=True), r"low=-1.0"),
        (lambda: Real(0, float("inf")), "finite"),
        (lambda: Real("a", 1), "numbers"),
        (lambda: Integer(1.5, 4), r"low=1.5"),
        (lambda: Integer(1, 4.2), r"high=4.2"),
        (lambda: Integer(3, 3), r"low=3, high=3"),
        (lambda: Integer(0, 10, step=3), r"step=3 does not fit"),
        (lambda: Integer(0, 10, log=True), r"low=0"),
        (lambda: Integer(1, 9, log=True, step=2), r"step=2"),
        (lambda: Categorical([]), r"choices=\[\]"),
        (lambda: Categorical(["a", "b", "a"]), r"duplicates 'a'"),
        (lambda: Categorical("abc"), r"choices='abc'"),
        (lambda: Categorical([object()]), "must be str"),
        # log="false" (a YAML string) searched on the log scale: bool("false") is True
        (lambda: Real(1e-4, 1e-1, log="false"), r"log must be True or False, but got log='false'"),
        (lambda: Integer(1, 64, log=1), r"log must be True or False, but got log=1"),
    ],
)
def test_bad_dimension_specs(make, match):
    with pytest.raises(SpaceError, match=match) as info:
        make()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"lr": {"type": "gaussian", "low": 0, "high": 1}}, r"lr: unknown dimension type 'gaussian'"),
        ({"lr": {"type": "real", "low": 1, "high": 0}}, r"lr: Real needs low < high"),
        ({"lr": {"type": "real", "lo": 1, "high": 2}}, r"lr: bad arguments for Real"),
        ({"lr": 0.1}, r"lr: unknown dimension type float"),
        ({"a": [1, 2], "a.b": [1]}, r"'a' and 'a.b' overlap"),
        ({"a..b": [1]}, r"key='a..b'"),
        ({}, "at least one dimension"),
    ],
)
def test_bad_space_specs_name_the_key(spec, match):
    with pytest.raises(SpaceError, match=match):
        SearchSpace(spec)


def test_duplicate_keys_in_parsed_pairs():
    with pytest.raises(SpaceError, match="duplicate search-space key 'lr'"):
        SearchSpace.check_duplicate_keys([("lr", [1]), ("lr", [2])])


def test_specs_from_yaml_style_mappings_and_roundtrip():
    space = SearchSpace({
        "model.lr": {"type": "real", "low": 1e-4, "high": 1e-2, "log": True},
        "model.layers": {"type": "integer", "low": 1, "high": 4},
        "model.act": {"choices": ["relu", "gelu"]},
        "data.batch_size": [32, 64],
    })
    assert space["model.lr"] == Real(1e-4, 1e-2, log=True)
    assert SearchSpace.from_spec(space.to_spec()) == space
    assert dimension_from_spec((0.9, 0.999)) == Categorical([0.9, 0.999])


def test_validate_and_canonical():
    space = SearchSpace({"betas": [(0.5, 0.999), (0.9, 0.999)], "n": Integer(1, 3)})
    assert space.canonical({"betas": [0.9, 0.999], "n": 2.0}) == {"betas": (0.9, 0.999), "n": 2}
    with pytest.raises(SpaceError, match="missing \\['n'\\]"):
        space.validate({"betas": (0.9, 0.999)})
    with pytest.raises(SpaceError, match="n=7 is outside"):
        space.validate({"betas": (0.9, 0.999), "n": 7})
