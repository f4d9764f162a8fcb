"""BayesianSampler: the contract, optimisation on small problems, pending trials, failures."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from frameworm_lightning import Categorical, Integer, Real, SearchSpace, Study
from frameworm_lightning._gp.acquisition import HEDGE_ARMS
from frameworm_lightning.samplers import AskContext
from frameworm_lightning.samplers._bayes import BayesianSampler
from frameworm_lightning.testing import SamplerContract
from frameworm_lightning.trial import FrozenTrial, TrialState


class TestBayesianSamplerContract(SamplerContract):
    def make_sampler(self, seed: int | None) -> BayesianSampler:
        # Few initial points, so the contract's 12 trials exercise the GP steps.
        return BayesianSampler(seed=seed, n_initial_points=4, n_candidates=256, n_starts=3)


def _run(sampler: BayesianSampler, space: Any, f: Any, n: int, mode: str = "min", name: str = "bo") -> Study:
    study = Study.create(name, space, metric="f", mode=mode, sampler=sampler)
    while (trial := study.ask(budget=n)) is not None:
        trial.complete(f(trial.params))
    return study


def _quadratic(p: dict[str, Any]) -> float:
    return (p["x"] - 1.3) ** 2 + (p["y"] + 0.7) ** 2


QUADRATIC_SPACE = {"x": Real(-5.0, 5.0), "y": Real(-5.0, 5.0)}


def test_finds_a_2d_quadratic_within_a_tight_tolerance_in_25_trials() -> None:
    study = _run(BayesianSampler(seed=0), QUADRATIC_SPACE, _quadratic, 25)
    best = study.best_trial
    assert best is not None and best.value < 1e-3, best
    assert [t.system_attrs.get("bo") for t in study.trials][:10] == ["initial"] * 10
    assert all(t.system_attrs.get("bo") == "gp" for t in study.trials[10:])


def test_maximisation() -> None:
    study = _run(BayesianSampler(seed=1, n_initial_points=5, n_candidates=256), QUADRATIC_SPACE,
                 lambda p: -_quadratic(p), 15, mode="max")
    assert study.best_trial.value > -0.05  # type: ignore[union-attr]


@pytest.mark.parametrize("acquisition", ["ei", "pi", "ucb", "lcb", "hedge"])
def test_every_acquisition_improves_on_its_initial_design(acquisition: str) -> None:
    study = _run(BayesianSampler(seed=2, n_initial_points=5, acquisition=acquisition, n_candidates=256,
                                 n_starts=3), QUADRATIC_SPACE, _quadratic, 12)
    initial = min(t.value for t in study.trials[:5])  # type: ignore[type-var]
    assert study.best_trial.value < min(initial, 0.5)  # type: ignore[union-attr]
    chosen = {t.system_attrs.get("bo_acquisition") for t in study.trials[5:]}
    if acquisition == "hedge":
        assert chosen <= set(HEDGE_ARMS)
        assert all(set(t.system_attrs["bo_hedge"]) <= set(HEDGE_ARMS) for t in study.trials[5:])
    else:
        assert chosen == {acquisition}


def test_categorical_only_space_finds_the_best_combination_without_repeats() -> None:
    space = {"opt": ["sgd", "adam", "rmsprop", "adagrad", "lion", "sophia"],
             "act": ["relu", "gelu", "tanh", "silu", "elu"]}
    opt_cost = {"sgd": 0.9, "adam": 0.1, "rmsprop": 0.5, "adagrad": 0.8, "lion": 0.3, "sophia": 0.6}
    act_cost = {"relu": 0.4, "gelu": 0.0, "tanh": 0.7, "silu": 0.2, "elu": 0.5}
    study = _run(BayesianSampler(seed=0, n_initial_points=6), space,
                 lambda p: opt_cost[p["opt"]] + act_cost[p["act"]], 16)
    keys = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(keys)) == len(keys) == 16
    assert study.best_trial.params == {"opt": "adam", "act": "gelu"}  # type: ignore[union-attr]


def test_a_finite_space_is_exhausted_then_the_search_ends() -> None:
    space = SearchSpace({"a": ["x", "y"], "b": Integer(1, 3)})
    sampler = BayesianSampler(seed=0, n_initial_points=2)
    assert sampler.max_trials(space) == 6
    study = _run(sampler, space, lambda p: p["b"] + (p["a"] == "y"), 10)
    assert len(study.trials) == 6
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 6


def test_integer_only_space_finds_the_minimum_without_repeats() -> None:
    space = {"n": Integer(1, 60), "m": Integer(1, 64, log=True)}
    study = _run(BayesianSampler(seed=0, n_initial_points=6),
                 space, lambda p: (p["n"] - 37) ** 2 / 100 + (math.log2(p["m"]) - 3) ** 2, 22)
    keys = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(keys)) == len(keys)
    best = study.best_trial.params  # type: ignore[union-attr]
    assert abs(best["n"] - 37) <= 2 and best["m"] == 8
    for t in study.trials:
        assert isinstance(t.params["n"], int) and isinstance(t.params["m"], int)


# Pending trials -----------------------------------------------------------------------------------
def _complete(i: int, params: dict[str, Any], value: float) -> FrozenTrial:
    return FrozenTrial(number=i, state=TrialState.COMPLETE, params=params, value=value)


def _history(n: int = 14) -> list[FrozenTrial]:
    space = SearchSpace({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})
    rng = np.random.default_rng(0)
    trials = []
    for i in range(n):
        p = space.decode(rng.random(2))
        trials.append(_complete(i, p, (p["x"] - 0.3) ** 2 + (p["y"] - 0.6) ** 2))
    return trials


def _suggest(sampler: BayesianSampler, trials: list[FrozenTrial], number: int) -> np.ndarray:
    space = SearchSpace({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})
    s = sampler.ask(AskContext(space, "min", trials, number))
    assert s is not None and s.system_attrs["bo"] == "gp"
    return np.array([s.params["x"], s.params["y"]])


@pytest.mark.parametrize("strategy", ["believer", "liar_best", "liar_mean", "liar_worst"])
def test_pending_trials_push_the_next_suggestion_away(strategy: str) -> None:
    sampler = BayesianSampler(seed=0, n_initial_points=5, pending_strategy=strategy)
    trials = _history()
    wanted = _suggest(sampler, trials, 14)  # where the sampler goes with no one else running
    # Three workers are already evaluating that point, a point next to it, and the optimum.
    busy = [wanted, np.clip(wanted + [0.01, -0.01], 0, 1), np.array([0.3, 0.6])]
    pending = [FrozenTrial(number=14 + k, state=TrialState.RUNNING, params={"x": float(x), "y": float(y)})
               for k, (x, y) in enumerate(busy)]
    nxt = _suggest(sampler, trials + pending, 17)
    for point in busy:
        assert np.linalg.norm(nxt - point) > 0.03, (nxt, busy)


def test_pending_points_repel_even_when_the_fitted_noise_is_large() -> None:
    # Noisy observations give the GP a large noise variance; a fantasy observed with that
    # noise would barely lower the acquisition at a pending point, and the next worker was
    # sent right next to it (seen in the asynchronous benchmark on Branin).
    space = SearchSpace({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})
    rng = np.random.default_rng(1)
    trials = []
    for i in range(20):
        p = space.decode(rng.random(2))
        value = (p["x"] - 0.3) ** 2 + (p["y"] - 0.6) ** 2 + float(rng.normal(0.0, 0.1))
        trials.append(_complete(i, p, value))
    sampler = BayesianSampler(seed=0, n_initial_points=5)
    wanted = _suggest(sampler, trials, 20)
    pending = [FrozenTrial(number=20, state=TrialState.RUNNING, params={"x": float(wanted[0]), "y": float(wanted[1])})]
    nxt = _suggest(sampler, trials + pending, 21)
    assert np.linalg.norm(nxt - wanted) > 0.03, (nxt, wanted)


def test_while_trials_are_pending_the_suggestion_stays_in_a_box_around_the_best_point() -> None:
    # Eight values on the left half of the square: alone, the sampler explores off the best
    # point's neighbourhood; with a worker busy elsewhere the one asking refines near it.
    space = SearchSpace({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})
    rng = np.random.default_rng(0)
    trials = []
    for i in range(8):
        p = {"x": float(rng.random() * 0.5), "y": float(rng.random())}
        trials.append(_complete(i, p, (p["x"] - 0.3) ** 2 + (p["y"] - 0.6) ** 2))
    best = min(trials, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
    centre = np.array([best.params["x"], best.params["y"]])
    pending = [FrozenTrial(number=8, state=TrialState.RUNNING, params={"x": 0.25, "y": 0.05})]
    sampler = BayesianSampler(seed=0, n_initial_points=5)
    s = sampler.ask(AskContext(space, "min", trials + pending, 9))
    assert s is not None and s.system_attrs["bo"] == "gp"
    # Side 0.4 * lengthscale / their geometric mean (documented), half of it either side.
    lengthscale = np.array(s.system_attrs["bo_gp"]["lengthscale"])
    half = 0.2 * lengthscale / np.sqrt(lengthscale.prod())
    inside = np.abs(np.array([s.params["x"], s.params["y"]]) - centre) - half
    assert np.all(inside < 1e-3), (s.params, centre, half)  # the box's edge is soft: a hair past it
    alone = sampler.ask(AskContext(space, "min", trials, 8))  # no one else running: no box
    assert alone is not None
    assert np.max(np.abs(np.array([alone.params["x"], alone.params["y"]]) - centre) - half) > 0.01, alone.params


def test_workers_holding_trials_get_distinct_points() -> None:
    study = Study.create("par", QUADRATIC_SPACE, metric="f", sampler=BayesianSampler(seed=0, n_initial_points=5))
    for _ in range(6):
        t = study.ask()
        t.complete(_quadratic(t.params))  # type: ignore[union-attr]
    held = [study.ask() for _ in range(4)]  # four workers, none finished
    points = np.array([[t.params["x"], t.params["y"]] for t in held])  # type: ignore[union-attr]
    gaps = [np.linalg.norm(points[i] - points[j]) / 10 for i in range(4) for j in range(i)]
    assert min(gaps) > 0.01  # in unit-cube units


# History rules ------------------------------------------------------------------------------------
def test_non_finite_failed_and_pruned_trials_follow_the_documented_rules() -> None:
    space = SearchSpace({"x": Real(0.0, 1.0)})
    trials = [_complete(i, {"x": x}, v) for i, (x, v) in enumerate([(0.1, 1.0), (0.5, 3.0), (0.9, 2.0)])]
    trials += [
        _complete(3, {"x": 0.2}, float("nan")),
        _complete(4, {"x": 0.3}, float("inf")),
        FrozenTrial(number=5, state=TrialState.FAILED, params={"x": 0.4}),
        FrozenTrial(number=6, state=TrialState.PRUNED, params={"x": 0.7}, value=0.5),
        FrozenTrial(number=7, state=TrialState.RUNNING, params={"x": 0.8}),
    ]
    ctx = AskContext(space, "min", trials, 8)
    worst = BayesianSampler(pruned="worst")
    X, y = worst._observations(ctx, worst._encoding(space))
    # Targets are maximised: minus the objective. The pruned trial counts as the worst complete one.
    assert X[:, 0].tolist() == [0.1, 0.5, 0.9, 0.7]
    assert y.tolist() == [-1.0, -3.0, -2.0, -3.0]
    excl = BayesianSampler(pruned="exclude")
    X, y = excl._observations(ctx, excl._encoding(space))
    assert X[:, 0].tolist() == [0.1, 0.5, 0.9]
    s = BayesianSampler(seed=0, n_initial_points=2).ask(ctx)
    assert s is not None and s.system_attrs["bo"] == "gp"


@pytest.mark.parametrize(("n_values", "n_running", "expected"), [
    (4, 1, "initial"),  # five of the six design points asked: one more Sobol point
    (4, 2, "gp"),  # the design is complete with the running trials: waiting for their values would add Sobol points
    (2, 5, "initial"),  # many workers: the GP still waits for half of the design to have values
    (3, 5, "gp"),
    (6, 0, "gp"),
])
def test_running_trials_count_towards_the_initial_design(n_values: int, n_running: int, expected: str) -> None:
    space = SearchSpace({"x": Real(0.0, 1.0), "y": Real(0.0, 1.0)})
    trials = _history(n_values)
    trials += [FrozenTrial(number=n_values + k, state=TrialState.RUNNING, params=space.decode(np.full(2, 0.1 + 0.1 * k)))
               for k in range(n_running)]
    s = BayesianSampler(seed=0, n_initial_points=6).ask(AskContext(space, "min", trials, len(trials)))
    assert s is not None and s.system_attrs["bo"] == expected


def test_enqueued_and_stored_trials_count_towards_the_initial_design() -> None:
    study = Study.create("warm", QUADRATIC_SPACE, metric="f", sampler=BayesianSampler(seed=0, n_initial_points=4))
    for x in (-4.0, -1.0, 2.0, 4.0):
        study.enqueue({"x": x, "y": 0.0})
    for _ in range(5):
        t = study.ask()
        t.complete(_quadratic(t.params))  # type: ignore[union-attr]
    assert study.trials[4].system_attrs["bo"] == "gp"


# Failures -----------------------------------------------------------------------------------------
def test_a_cholesky_failure_is_recovered_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.linalg.cholesky_ex
    calls = {"n": 0}

    def first_attempt_fails(A: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        calls["n"] += 1
        return (torch.full_like(A, float("nan")), torch.tensor(1)) if calls["n"] % 2 else real(A, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", first_attempt_fails)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning
        study = _run(BayesianSampler(seed=0, n_initial_points=4, n_candidates=256, n_starts=3),
                     QUADRATIC_SPACE, _quadratic, 7)
    assert [t.system_attrs["bo"] for t in study.trials[4:]] == ["gp"] * 3


def test_a_persistent_cholesky_failure_falls_back_to_sobol_and_the_search_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.linalg, "cholesky_ex",
                        lambda A, **kwargs: (torch.full_like(A, float("nan")), torch.tensor(1)))
    with pytest.warns(RuntimeWarning, match="suggesting a Sobol point"):
        study = _run(BayesianSampler(seed=0, n_initial_points=3), QUADRATIC_SPACE, _quadratic, 6)
    assert len(study.trials) == 6
    assert [t.system_attrs["bo"] for t in study.trials[3:]] == ["fallback"] * 3
    assert len({json.dumps(t.params) for t in study.trials}) == 6


# Reproducibility and arguments --------------------------------------------------------------------
def test_same_seed_same_gp_suggestions_and_a_different_seed_differs() -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        sampler = BayesianSampler(seed=seed, n_initial_points=3, acquisition="hedge", n_candidates=256, n_starts=3)
        return [t.params for t in _run(sampler, QUADRATIC_SPACE, _quadratic, 7).trials]

    a = run(5)
    assert a == run(5)
    assert a != run(6)


def test_the_seeds_bayesian_search_configuration_works() -> None:
    sampler = BayesianSampler(seed=3, n_initial_points=10, acquisition="ei")
    study = _run(sampler, QUADRATIC_SPACE, _quadratic, 12)
    assert study.trials[-1].system_attrs["bo_acquisition"] == "ei"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"acquisition": "qei"}, r"one of 'ei', 'logei', 'pi', 'ucb', 'lcb', 'hedge', but got acquisition='qei'"),
        ({"n_initial_points": -1}, "n_initial_points=-1"),
        ({"beta": -0.5}, "beta=-0.5"),
        ({"beta": float("nan")}, "beta=nan"),
        ({"pending_strategy": "fantasy"}, "'believer'.*pending_strategy='fantasy'"),
        ({"pruned": "keep"}, "'worst', 'exclude', but got pruned='keep'"),
        ({"hedge_eta": 0}, "hedge_eta=0"),
        ({"n_candidates": 0}, "n_candidates=0"),
        ({"n_threads": 0}, "n_threads=0"),
        ({"seed": -1}, "seed=-1"),
        ({"cost": "seconds"}, "None, 'duration' or a function of a trial, but got cost='seconds'"),
        ({"cost": "duration", "acquisition": "ucb"}, "improvement acquisition.*acquisition='ucb'"),
        ({"cost": "duration", "acquisition": "hedge"}, "acquisition='hedge'"),
        ({"cost": "duration", "cost_exponent": 0}, "cost_exponent=0"),
    ],
)
def test_bad_arguments_name_the_offending_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BayesianSampler(**kwargs)


def test_categorical_and_log_dimensions_stay_valid_in_a_mixed_space() -> None:
    space = SearchSpace({"lr": Real(1e-5, 1e-1, log=True), "bs": Integer(16, 512, log=True),
                         "depth": Integer(1, 8), "opt": Categorical(["sgd", "adam"])})

    def f(p: dict[str, Any]) -> float:
        return ((math.log10(p["lr"]) + 3) ** 2 + (math.log2(p["bs"]) - 6) ** 2 / 4
                + (p["depth"] - 3) ** 2 / 8 + (p["opt"] == "sgd"))

    study = _run(BayesianSampler(seed=0, n_initial_points=6, n_candidates=256, n_starts=3), space, f, 14)
    for t in study.trials:
        space.validate(t.params)
    assert study.best_trial.value < 1.0  # type: ignore[union-attr]


@pytest.mark.parametrize(("d", "moved_low", "moved_high"), [(6, 6, 6), (20, 20, 20), (50, 15, 25)])
def test_incumbent_perturbations_move_a_subset_of_coordinates_in_high_dimension(
    d: int, moved_low: float, moved_high: float
) -> None:
    from frameworm_lightning._gp.encoding import ModelEncoding
    from frameworm_lightning.samplers._bayes import _perturbations

    encoding = ModelEncoding(SearchSpace({f"x{i}": Real(0.0, 1.0) for i in range(d)}))
    X = encoding.to_model(np.full((2, d), 0.5))
    out = _perturbations(encoding, X, np.random.default_rng(0), per_point=200)
    moved = (np.abs(encoding.to_unit(out) - 0.5) > 0).sum(axis=1)
    assert out.shape == (400, d)
    assert moved.min() >= 1  # every perturbation moves something
    # Up to 20 columns every coordinate moves; past that about 20 of them (each with probability 20/d).
    assert moved_low <= moved.mean() <= moved_high, moved.mean()
    if d > 20:
        assert moved.max() < d


def test_hyperparameters_are_reused_every_other_suggestion_from_the_initial_design_on() -> None:
    # After the 10-point design: a full fit at 10 observations, then every other suggestion
    # reuses the stored fit (the data have grown by one point only) and the next one refits.
    study = _run(BayesianSampler(seed=0), QUADRATIC_SPACE, _quadratic, 15)
    fitted_on = [t.system_attrs["bo_gp"]["n"] for t in study.trials[10:15]]
    assert fitted_on == [10, 10, 12, 12, 14]


# --- cost-aware acquisition -------------------------------------------------------------------------
def _two_valleys(seconds: Any) -> list[FrozenTrial]:
    """Twelve evaluated points of a function with two equally deep minima, at 0.2 and 0.8;
    trial ``i`` lasted ``seconds(x)``."""
    xs = np.linspace(0.05, 0.95, 12)
    return [FrozenTrial(i, TrialState.COMPLETE, {"x": float(x)}, min((x - 0.2) ** 2, (x - 0.8) ** 2),
                        started_at=100.0, completed_at=100.0 + seconds(x)) for i, x in enumerate(xs)]


def test_a_cost_aware_acquisition_takes_the_cheaper_of_two_equal_valleys() -> None:
    space = SearchSpace({"x": Real(0.0, 1.0)})
    trials = _two_valleys(lambda x: 1.0 if x < 0.5 else 20.0)  # the right valley is 20 times slower
    ctx = AskContext(space, "min", trials, number=12)
    blind = BayesianSampler(seed=0).ask(ctx)
    aware = BayesianSampler(seed=0, cost="duration").ask(ctx)
    assert blind is not None and aware is not None
    assert abs(blind.params["x"] - 0.8) < 0.02 and "bo_cost" not in blind.system_attrs
    assert abs(aware.params["x"] - 0.2) < 0.02  # the same promise at a twentieth of the time
    assert aware.system_attrs["bo_cost"]["n"] == 12
    assert aware.system_attrs["bo_cost"]["predicted"] == pytest.approx(1.0, rel=0.05)
    # A function of the trial gives the same costs: the same suggestion.
    by_fn = BayesianSampler(seed=0, cost=lambda t: t.completed_at - t.started_at).ask(ctx)
    assert by_fn is not None and by_fn.params == aware.params


def test_equal_or_unknown_costs_leave_the_suggestion_as_it_is() -> None:
    space = SearchSpace({"x": Real(0.0, 1.0)})
    blind = BayesianSampler(seed=0).ask(AskContext(space, "min", _two_valleys(lambda x: 3.0), number=12))
    for trials in (_two_valleys(lambda x: 3.0),  # every point as slow as any other
                   [FrozenTrial(t.number, t.state, t.params, t.value) for t in _two_valleys(lambda x: 3.0)]):
        aware = BayesianSampler(seed=0, cost="duration").ask(AskContext(space, "min", trials, number=12))
        assert aware is not None and blind is not None
        assert aware.params == blind.params and "bo_cost" not in aware.system_attrs
    # A cost function that returns nonsense for some trials: those trials carry no cost.
    odd = BayesianSampler(seed=0, cost=lambda t: {0: -1.0, 1: math.nan, 2: None, 3: "slow"}.get(t.number, 3.0))
    suggestion = odd.ask(AskContext(space, "min", _two_valleys(lambda x: 3.0), number=12))
    assert suggestion is not None and suggestion.params == blind.params


def _context_valleys() -> list[FrozenTrial]:
    """``f(x, c) = (x - c)**2`` on a grid of x and three values of the context c."""
    return [FrozenTrial(i, TrialState.COMPLETE, {"x": float(x), "c": c}, float((x - c) ** 2))
            for i, (x, c) in enumerate((x, c) for c in (0.2, 0.5, 0.8) for x in np.linspace(0.0, 1.0, 7))]


def test_ask_at_holds_the_fixed_dimensions_and_suggests_the_others() -> None:
    space = SearchSpace({"x": Real(0.0, 1.0), "c": Real(0.0, 1.0)})
    ctx = AskContext(space, "min", _context_valleys(), number=21)
    sampler = BayesianSampler(seed=0, n_initial_points=4)
    for c in (0.2, 0.8):
        suggestion = sampler.ask_at(ctx, {"c": c})
        assert suggestion is not None and set(suggestion.params) == {"x"}
        assert suggestion.system_attrs["bo"] == "gp" and len(suggestion.system_attrs["bo_gp"]["lengthscale"]) == 2
        assert abs(suggestion.params["x"] - c) < 0.1, (c, suggestion.params)
    # A point tried at another context value is still tried: it is never suggested again.
    tried = {round(t.params["x"], 9) for t in ctx.trials}
    assert round(sampler.ask_at(ctx, {"c": 0.2}).params["x"], 9) not in tried  # type: ignore[union-attr]
    # With nothing fixed it is ask().
    assert sampler.ask_at(ctx, {}) == sampler.ask(ctx)


def test_ask_at_needs_the_last_dimensions_and_a_free_one() -> None:
    space = SearchSpace({"x": Real(0.0, 1.0), "c": Real(0.0, 1.0)})
    ctx = AskContext(space, "min", _context_valleys(), number=21)
    for fixed in ({"x": 0.5}, {"c": 0.5, "x": 0.5}, {"x": 0.5, "c": 0.5}):
        with pytest.raises(ValueError, match="fixed must name the last dimensions"):
            BayesianSampler(seed=0).ask_at(ctx, fixed)
