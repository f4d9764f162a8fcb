"""The side-by-side comparison spends equal budgets and measures regret on the table."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.curves import compare
from benchmarks.curves.table import load_table


@pytest.fixture(scope="module")
def table():
    return load_table("cancer-mlp")


def test_no_stopping_trains_whole_configurations_and_its_regret_is_their_best(table) -> None:
    budget = 4 * table.max_epochs
    search = compare.ours(table, 0, budget, None)
    assert search.spent == budget
    order = compare.stream(table, 0)
    picked = [next(order) for _ in range(4)]
    assert search.trials == 4 and search.trace[-1][0] == budget
    finals = [table.quality(table.curves[i].final) for i in picked]
    # The answer is the best value after the full budget, i.e. the best final of the four.
    assert search.curve()[-1] == pytest.approx(min(finals) - table.best_final)
    # After one epoch the answer is the first configuration, trained furthest so far.
    assert search.curve()[0] == pytest.approx(table.quality(table.curves[picked[0]].final) - table.best_final)


@pytest.mark.parametrize("row", ["Median", "SuccessiveHalving", "ASHA", "Hyperband"])
def test_our_stopping_policies_try_more_configurations_in_the_same_budget(table, row: str) -> None:
    budget = 6 * table.max_epochs
    none = compare.ours(table, 1, budget, None)
    stopped = compare.ours(table, 1, budget, compare.our_rows(table)[row])
    assert stopped.spent == none.spent == budget
    assert none.trials == 6
    assert stopped.trials > none.trials


def test_optuna_and_ray_rows_spend_exactly_the_budget(table) -> None:
    pytest.importorskip("optuna")
    budget = 3 * table.max_epochs
    for pruner in ("Median", "SHA", "Hyperband"):
        s = compare.optuna_search(table, 0, budget, "random", pruner)
        assert s.spent == budget and s.trace
    if compare.ray_available() is None:
        for scheduler in ("ASHA", "HyperBand"):
            s = compare.ray_search(table, 0, budget, scheduler)
            assert s.spent == budget and s.trace
