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
    # After one epoch the answer is the first configuration, trained furthest so far; nothing has finished.
    assert search.curve()[0] == search.worst
    assert search.answer_curve()[0] == pytest.approx(table.quality(table.curves[picked[0]].final) - table.best_final)


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
        s = compare.drive(compare.OptunaRow(table, 0, "random", pruner), budget)
        assert s.spent == budget and s.trace
    if compare.ray_available() is None:
        for scheduler in ("ASHA", "HyperBand"):
            s = compare.drive(compare.RayRow(table, 0, scheduler), budget)
            assert s.spent == budget and s.trace


def test_best_so_far_regret_is_monotone_and_counts_only_what_finished(table) -> None:
    for seed in range(3):
        row = compare.OursRow(table, seed, compare.our_rows(table)["ASHA"])
        search = compare.drive(row, 5 * table.max_epochs)
        best, answer = search.curve(), search.answer_curve()
        assert np.all(np.diff(best) <= 0)
        finished = [t for t in row.done if t.state is compare.TrialState.COMPLETE]
        assert finished
        assert best[-1] == pytest.approx(min(search.regret(row.index[t.number]) for t in finished))
        assert np.all(best[:table.max_epochs - 1] == search.worst)  # nothing can finish before 27 epochs
        assert answer[0] < search.worst  # while the answer is already a partly trained configuration


def test_asynchronous_workers_train_side_by_side(table) -> None:
    # Four workers, one time unit an epoch: in 27 units each trains one whole configuration.
    budget = table.max_epochs
    search = compare.drive(compare.OursRow(table, 0, None), budget, workers=4)
    assert search.epochs == 4 * budget and search.trials == 4
    order = compare.stream(table, 0)
    picked = [next(order) for _ in range(4)]
    assert search.curve()[-1] == pytest.approx(min(table.quality(table.curves[i].final) for i in picked)
                                               - table.best_final)
    # With recorded seconds the budget is wall time: no epoch ends after it.
    timed = compare.drive(compare.OursRow(table, 0, compare.our_rows(table)["ASHA"]), 2.0, workers=4, seconds=True)
    assert 0 < max(t for t, _ in timed.trace) <= 2.0


@pytest.mark.parametrize("name", ["ASHA+BO", "ASHA+BOF"])
def test_model_based_rows_start_with_the_random_order_then_follow_the_rungs(table, name: str) -> None:
    pytest.importorskip("gpytorch")
    budget = 3 * table.max_epochs
    row = compare.make_row(table, 0, name)
    search = compare.drive(row, budget)
    assert search.spent == budget
    random_row = compare.make_row(table, 0, "ASHA")
    compare.drive(random_row, budget)
    numbers = sorted(row.index)
    assert [row.index[n] for n in numbers[:10]] == [random_row.index[n] for n in numbers[:10]]
    done = sorted(row.done, key=lambda t: t.number)
    rungs = [t.system_attrs.get("mf_rung") for t in done]
    if name == "ASHA+BO":
        assert rungs[:10] == [None] * 10 and "1" in rungs[10:]
    else:  # one GP on every rung, proposing at the largest resource recorded (27: the first config trained it)
        assert rungs[:10] == [None] * 10 and set(rungs[10:]) == {"27"}
        assert all(t.system_attrs["mf_model"] == "fidelity" for t in done[10:])
    assert len({row.index[n] for n in numbers}) == len(numbers)  # a proposal trains an untried configuration


@pytest.mark.parametrize("row", ["ray:ASHA", "ray:HyperBand", "optuna:random:SHA", "Hyperband+BO", "ASHA+BOF+pause"])
def test_rows_run_on_four_asynchronous_workers(table, row: str) -> None:
    if row.startswith("ray:") and compare.ray_available() is not None:
        pytest.skip("ray.tune does not import")
    pytest.importorskip("optuna" if row.startswith("optuna") else "gpytorch")
    budget = compare.budget_of(table, 2, workers=4)
    search = compare.drive(compare.make_row(table, 1, row), budget, workers=4, seconds=True)
    assert search.epochs >= 4 and search.trials >= 1 and max(t for t, _ in search.trace) <= budget


def test_pausing_rows_promote_and_resume_configurations_where_they_paused(table) -> None:
    budget = 4 * table.max_epochs
    row = compare.make_row(table, 0, "ASHA+pause")
    search = compare.drive(row, budget)
    assert search.epochs == budget
    trials = row.study.trials
    promoted = [t for t in trials if "promoted_from" in t.system_attrs]
    assert promoted and any(t.system_attrs.get("fw_paused_at") for t in trials)
    by_number = {t.number: t for t in trials}
    for t in promoted:
        parent = by_number[t.system_attrs["promoted_from"]]
        assert t.params == parent.params and parent.system_attrs["promoted_to"] == t.number
        # The promoted trial reports from the epoch after its parent's pause, never again before.
        assert min(t.intermediate_values) == int(t.system_attrs["fw_promoted_at"]) + 1
    # Every epoch is trained once: per configuration, its trials' epochs do not overlap.
    epochs: dict[int, list[int]] = {}
    for t in trials:
        epochs.setdefault(t.system_attrs["fw_root"], []).extend(t.intermediate_values)
    assert all(len(e) == len(set(e)) for e in epochs.values())
    assert sum(len(e) for e in epochs.values()) == budget


def test_table_sampler_proposes_the_random_order_and_maps_model_proposals_to_untried_configurations(table) -> None:
    from frameworm_lightning.samplers import AskContext

    sampler = compare.TableSampler(table, 3)
    order = compare.stream(table, 3)
    space = sampler.space
    first = sampler.ask(AskContext(space, "min", [], 0))
    assert sampler.index(first.params) == next(order)

    class Fixed(compare.Sampler):
        def ask(self, context):
            return compare.Suggestion(dict(table.curves[5].params), system_attrs={"bo": "gp"})

    model_based = compare.TableSampler(table, 3, Fixed())
    assert model_based.index(model_based.ask(AskContext(space, "min", [], 0)).params) == 5
    tried = [compare.FrozenTrial(0, compare.TrialState.COMPLETE, dict(table.curves[5].params), 0.1)]
    again = model_based.ask(AskContext(space, "min", tried, 1))
    assert model_based.index(again.params) != 5 and again.system_attrs == {"bo": "gp"}


def test_a_run_judged_converged_counts_with_the_value_it_stopped_at_not_its_unpaid_final(table) -> None:
    # A configuration whose value after 5 epochs differs from its 27-epoch value.
    index = next(i for i, c in enumerate(table.curves) if c.values[4] != c.final)
    curve = table.curves[index].values
    search = compare.Search(table, budget=10.0)
    search.epoch()
    search.trained(index, curve[:5], finished=True)
    assert search.curve()[-1] == pytest.approx(table.quality(curve[4]) - table.best_final)
    assert search.curve()[-1] != pytest.approx(search.regret(index))


def test_improvement_stopping_is_credited_only_with_what_it_trained(table) -> None:
    row = compare.make_row(table, 0, "Improvement")
    search = compare.drive(row, 10 * table.max_epochs)
    early = [t for t in row.done if t.state is compare.TrialState.COMPLETE and len(t.intermediate_values) < 27]
    assert early  # patience 3 judges some runs converged before 27 epochs
    stopped_at = {row.index[t.number]: table.quality(t.intermediate_values[max(t.intermediate_values)])
                  for t in row.done if t.state is compare.TrialState.COMPLETE}
    best = min(stopped_at.values()) - table.best_final
    assert search.curve()[-1] == pytest.approx(best)


def test_table_sampler_takes_the_random_order_for_a_models_random_draws(table) -> None:
    from frameworm_lightning.samplers import AskContext

    class RandomDraw(compare.Sampler):
        def ask(self, context):
            return compare.Suggestion(dict(table.curves[5].params), system_attrs={"mf_random": True})

    sampler = compare.TableSampler(table, 3, RandomDraw())
    suggestion = sampler.ask(AskContext(sampler.space, "min", [], 0))
    assert sampler.index(suggestion.params) == next(compare.stream(table, 3))
    assert suggestion.system_attrs == {"mf_random": True}


def test_mean_curve_speedup_compares_the_times_the_mean_curves_reach_no_stoppings_final_value() -> None:
    grid = np.arange(1.0, 11.0)
    # No stopping: its mean curve falls until the end (one seed's best came at 3, the other's at 10).
    none = compare.Result("none", [], [], [], curves=[np.r_[[9.0] * 2, [2.0] * 8], np.r_[[9.0] * 9, 0.0]], grid=grid)
    assert compare.mean_curve_speedup(none, none) == 1.0
    fast = compare.Result("fast", [], [], [], curves=[np.r_[9.0, [1.0] * 9], np.r_[9.0, [0.0] * 9]], grid=grid)
    assert compare.mean_curve_speedup(none, fast) == 5.0  # reaches the mean final 1.0 at 2 instead of 10
    never = compare.Result("never", [], [], [], curves=[np.full(10, 3.0), np.full(10, 3.0)], grid=grid)
    assert compare.mean_curve_speedup(none, never) == 0.0


def test_the_pausing_row_trains_what_the_real_search_runner_trains(table, tmp_path) -> None:
    # ASHA with promotions, the same seeded order: the in-memory driver and a SearchRunner on the
    # replay (checkpoints, resumes, storage) train the same configurations for the same epochs.
    budget = 2 * table.max_epochs
    row = compare.make_row(table, 0, "ASHA+pause")
    driven = compare.drive(row, budget)
    real = compare.runner_search(table, 0, budget, "ASHA", tmp_path)
    assert real.epochs == driven.epochs == budget
    # The same configurations reach the same epochs in the same order: the same answers, epoch by epoch.
    assert np.array_equal(real.answer_curve(), driven.answer_curve())
    assert np.array_equal(real.curve(), driven.curve())


def test_optuna_rows_are_reproducible_run_to_run(table) -> None:
    # Optuna's HyperbandPruner puts a trial in a bracket by a hash of the study's name, which is a
    # random UUID unless one is given: the rows must name their study from the table and the seed.
    pytest.importorskip("optuna")
    budget = 6 * table.max_epochs
    runs = [compare.drive(compare.OptunaRow(table, 2, "random", "Hyperband"), budget) for _ in range(3)]
    assert all(r.trace == runs[0].trace for r in runs[1:])


@pytest.mark.parametrize("row", ["ASHA+BO+cost", "ASHA+BO+cost+pause"])
def test_a_cost_aware_model_sees_each_configurations_recorded_seconds_per_epoch(table, row: str) -> None:
    pytest.importorskip("gpytorch")
    r = compare.make_row(table, 0, row)
    model = r.sampler.model
    asked = []

    def ask(context):  # what the model is asked with: the trials on the simulated clock
        asked.append(context)
        return type(model).ask(model, context)

    model.ask = ask
    compare.drive(r, compare.budget_of(table, 4, workers=4), workers=4, seconds=True)
    context = asked[-1]
    assert any(t.system_attrs.get("bo_cost") for t in context.trials)  # the model weighed costs
    view = {t.number: t.duration for t in model.view(context).trials}
    checked = 0
    for root in view:
        finished = [t for t in context.trials if t.system_attrs.get("fw_root") == root
                    and t.state in (compare.TrialState.COMPLETE, compare.TrialState.PRUNED)]
        if not finished:
            assert view[root] is None
            continue
        # Its finished trials trained epochs 1..R with no gap, R its highest rung: their recorded seconds over R.
        epochs = int(max(float(k) for t in finished for k in t.system_attrs["fw_rungs"]))
        seconds = table.curves[r.sampler.index(finished[0].params)].seconds
        assert view[root] == pytest.approx(sum(seconds[:epochs]) / epochs)
        checked += 1
    assert checked >= 10


def test_per_seed_ranks_average_each_seeds_rank_and_share_ties() -> None:
    results = [compare.Result("a", [], [1.0, 5.0, 2.0], []), compare.Result("b", [], [2.0, 1.0, 2.0], []),
               compare.Result("c", [], [3.0, 2.0, 9.0], [])]
    # Seed 0: a, b, c; seed 1: b, c, a; seed 2: a and b tied for 1-2, then c.
    assert compare.per_seed_ranks(results) == {"a": pytest.approx((1 + 3 + 1.5) / 3),
                                               "b": pytest.approx((2 + 1 + 1.5) / 3), "c": pytest.approx(8 / 3)}
