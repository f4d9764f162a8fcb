"""The model encoding derived from a SearchSpace."""

from __future__ import annotations

import numpy as np
import pytest

from frameworm_lightning._gp.encoding import ColumnKind, ModelEncoding, sobol_points
from frameworm_lightning.space import Categorical, Integer, Real, SearchSpace


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace({
        "lr": Real(1e-4, 1e-1, log=True),
        "hidden": Integer(16, 256, log=True),
        "batch": Integer(16, 64, step=16),
        "act": Categorical(["relu", "gelu", "tanh"]),
    })


def test_columns_follow_the_dimension_kinds(space: SearchSpace) -> None:
    enc = ModelEncoding(space)
    assert enc.kinds == [ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.INTEGER, ColumnKind.CATEGORICAL]
    assert enc.categorical_mask.tolist() == [False, False, False, True]
    assert enc.discrete_values(3).tolist() == [0.0, 1.0, 2.0]
    assert len(enc.discrete_values(1)) == 241 and len(enc.discrete_values(2)) == 4
    assert enc.n_configurations is None


def test_round_trip_through_the_space(space: SearchSpace) -> None:
    enc = ModelEncoding(space)
    params = {"lr": 0.003, "hidden": 100, "batch": 48, "act": "tanh"}
    x = enc.encode(params)
    assert x[3] == 2.0
    back = enc.decode(x)
    assert back["hidden"] == 100 and back["batch"] == 48 and back["act"] == "tanh"
    assert back["lr"] == pytest.approx(0.003)


def test_any_unit_point_lands_on_admissible_values(space: SearchSpace) -> None:
    enc = ModelEncoding(space)
    X = enc.to_model(sobol_points(64, 4, seed=0))
    for j in (1, 2, 3):
        assert np.isin(X[:, j], enc.discrete_values(j)).all()
    for x in X:
        space.validate(enc.decode(x))
        # Snapping is idempotent and agrees with the space's own decoding.
        assert np.allclose(enc.encode(enc.decode(x)), x)


def test_huge_integers_are_continuous_and_rounded_through_the_space() -> None:
    enc = ModelEncoding(SearchSpace({"n": Integer(0, 10_000_000)}))
    assert enc.kinds == [ColumnKind.CONTINUOUS]
    x = enc.snap(np.array([[0.123456789]]))[0]
    value = enc.decode(x)["n"]
    assert enc.encode({"n": value})[0] == pytest.approx(x[0])


def test_all_discrete_spaces_enumerate() -> None:
    enc = ModelEncoding(SearchSpace({"a": [1, 2, 3], "b": Integer(0, 4, step=2)}))
    assert enc.n_configurations == 9
    X = enc.all_configurations()
    assert X.shape == (9, 2) and len(set(enc.key(X))) == 9
