"""GridSampler: a lazy, seeded shuffle and the budget of a grid too large to finish."""

from __future__ import annotations

import pytest

from frameworm_lightning import GridSampler, Integer, SearchSpace, SpaceError
from frameworm_lightning.samplers._grid import MAX_GRID_TRIALS, shuffled_index


@pytest.mark.parametrize("n", [1, 2, 3, 10, 97, 1024, 1025])
def test_the_shuffle_is_a_permutation_for_every_size(n):
    order = [shuffled_index(i, n, key=12345) for i in range(n)]
    assert sorted(order) == list(range(n))


def test_the_shuffle_depends_on_its_key_and_looks_random():
    n = 1000
    a = [shuffled_index(i, n, key=1) for i in range(n)]
    b = [shuffled_index(i, n, key=2) for i in range(n)]
    assert a != b and a != list(range(n))
    assert sum(x < n / 2 for x in a[: n // 10]) in range(25, 76), "the first tenth covers both halves"


def test_a_grid_budget_needs_n_trials_past_a_million_points():
    huge = SearchSpace({"a": Integer(1, 1001), "b": Integer(1, 1000)})
    assert GridSampler().max_trials(huge) == 1_001_000 > MAX_GRID_TRIALS
    with pytest.raises(SpaceError, match=r"the grid has 1,001,000 points.*pass n_trials"):
        GridSampler().budget(huge, None)
    assert GridSampler().budget(huge, 50) == 50
    assert GridSampler().budget(SearchSpace({"a": [1, 2, 3]}), None) == 3
