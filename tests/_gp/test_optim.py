"""The acquisition optimiser over continuous, integer and categorical columns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frameworm_lightning._gp.encoding import ModelEncoding
from frameworm_lightning._gp.optim import optimize_acquisition
from frameworm_lightning.space import Categorical, Integer, Real, SearchSpace


def _score(X: torch.Tensor) -> torch.Tensor:
    # Best at x = 0.37, the integer code nearest 0.81, choice 2.
    return -(X[:, 0] - 0.37) ** 2 - (X[:, 1] - 0.81) ** 2 + 0.5 * (X[:, 2] == 2).to(X.dtype)


def test_finds_the_maximum_of_a_mixed_function() -> None:
    space = SearchSpace({"x": Real(0, 1), "n": Integer(1, 20), "c": Categorical(["a", "b", "c", "d"])})
    enc = ModelEncoding(space)
    result = optimize_acquisition(_score, enc, seed=0, n_raw=256, n_starts=4)
    best = result.X[0]
    assert best[0] == pytest.approx(0.37, abs=1e-4)
    assert best[1] == enc.discrete_values(1)[np.argmin(np.abs(enc.discrete_values(1) - 0.81))]
    assert best[2] == 2
    assert np.all(np.diff(result.values[:4]) <= 1e-12)  # local optima sorted best first
    for x in result.X:
        space.validate(enc.decode(x))


def test_small_discrete_spaces_are_scored_exhaustively() -> None:
    space = SearchSpace({"n": Integer(1, 20), "c": Categorical(["a", "b", "c"])})
    enc = ModelEncoding(space)
    result = optimize_acquisition(lambda X: -(X[:, 0] - 0.5) ** 2 + (X[:, 1] == 1).to(X.dtype), enc, seed=0)
    assert len(result.X) == 60 and len(set(enc.key(result.X))) == 60
    assert enc.decode(result.X[0]) == {"n": 10, "c": "b"} or enc.decode(result.X[0]) == {"n": 11, "c": "b"}


def test_same_seed_same_result() -> None:
    enc = ModelEncoding(SearchSpace({"x": Real(0, 1), "y": Real(0, 1)}))

    def f(X: torch.Tensor) -> torch.Tensor:
        return torch.sin(7 * X[:, 0]) * torch.cos(5 * X[:, 1])

    a = optimize_acquisition(f, enc, seed=3, n_raw=128)
    b = optimize_acquisition(f, enc, seed=3, n_raw=128)
    assert np.array_equal(a.X, b.X)


def test_bad_settings_are_rejected() -> None:
    enc = ModelEncoding(SearchSpace({"x": Real(0, 1)}))
    with pytest.raises(ValueError, match="n_starts=0"):
        optimize_acquisition(lambda X: X[:, 0], enc, seed=0, n_starts=0)
