"""MultiFidelitySampler: the rung it picks, the values it shows its base, pending trials, resume;
and its fidelity model (one GP over configuration x resource)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from frameworm_lightning import BayesianSampler, MultiFidelitySampler, RandomSampler, Real, SearchSpace, Study
from frameworm_lightning.samplers import AskContext, Sampler, Suggestion
from frameworm_lightning.stopping import ASHA, History
from frameworm_lightning.testing import SamplerContract
from frameworm_lightning.testing.samplers import mixed_space, objective
from frameworm_lightning.trial import FrozenTrial, TrialState

SPACE = SearchSpace({"x": Real(0.0, 1.0)})


class TestMultiFidelitySamplerContract(SamplerContract):
    def make_sampler(self, seed: int | None) -> MultiFidelitySampler:
        return MultiFidelitySampler(BayesianSampler(seed=seed, n_initial_points=4, n_candidates=256, n_starts=3))


class TestFidelityModelContract(SamplerContract):
    def make_sampler(self, seed: int | None) -> MultiFidelitySampler:
        return MultiFidelitySampler(BayesianSampler(seed=seed, n_initial_points=4, n_candidates=256, n_starts=3),
                                    model="fidelity")


class Recorder(Sampler):
    """Remembers the context it was asked with; proposes x = 0.5."""

    def __init__(self, n_initial_points: int = 0) -> None:
        super().__init__(seed=0)
        self.n_initial_points = n_initial_points
        self.seen: AskContext | None = None

    def ask(self, context: AskContext) -> Suggestion:
        self.seen = context
        return Suggestion({"x": 0.5}, system_attrs={"recorder": True})


def _trial(number: int, x: float, rungs: dict[str, float], state: TrialState = TrialState.PRUNED,
           value: float | None = None, **attrs: Any) -> FrozenTrial:
    system = {"fw_bracket": 0, "fw_root": number, "fw_rungs": {k: [v, False] for k, v in rungs.items()}, **attrs}
    return FrozenTrial(number, state, {"x": x}, value, system_attrs=system)


def _by_number(context: AskContext) -> dict[int, FrozenTrial]:
    return {t.number: t for t in context.trials}


def test_picks_the_highest_rung_with_enough_results() -> None:
    trials = [_trial(i, i / 10, {"1": 0.5, "3": 0.4}) for i in range(5)]
    trials += [_trial(i, i / 10, {"1": 0.5}) for i in range(5, 9)]
    trials += [_trial(9, 0.9, {"1": 0.5, "3": 0.4, "9": 0.3}, TrialState.COMPLETE, 0.3)]
    ctx = AskContext(SPACE, "min", trials, number=10)
    assert MultiFidelitySampler(Recorder(), min_points=5).rung(ctx) == ("3", 6)
    assert MultiFidelitySampler(Recorder(), min_points=7).rung(ctx) == ("1", 10)
    assert MultiFidelitySampler(Recorder(), min_points=1).rung(ctx) == ("9", 1)
    assert MultiFidelitySampler(Recorder(), min_points=11).rung(ctx) == (None, 10)
    # Default: the dimension + 2 (3 here), and at least the base's n_initial_points.
    assert MultiFidelitySampler(Recorder()).rung(ctx) == ("3", 6)
    assert MultiFidelitySampler(Recorder(n_initial_points=8)).rung(ctx) == ("1", 10)


def test_non_finite_rung_values_do_not_count_and_enter_as_pruned() -> None:
    trials = [_trial(i, i / 10, {"1": 0.5, "3": math.nan if i < 3 else 0.4}) for i in range(6)]
    ctx = AskContext(SPACE, "min", trials, number=6)
    sampler = MultiFidelitySampler(Recorder(), min_points=3)
    assert sampler.rung(ctx) == ("3", 3)
    view = _by_number(sampler.view(ctx))
    assert [view[i].state for i in range(6)] == [TrialState.PRUNED] * 3 + [TrialState.COMPLETE] * 3


def test_the_base_sees_rung_values_not_final_values() -> None:
    # Rung 3's values, the trials' stored (last) values and rung 1's values all disagree.
    trials = [_trial(i, i / 10, {"1": 10.0 + i, "3": 20.0 + i, "9": 30.0 + i}, TrialState.COMPLETE, value=40.0 + i)
              for i in range(4)]
    trials += [_trial(i, i / 10, {"1": 10.0 + i, "3": 20.0 + i}, TrialState.PRUNED, value=25.0 + i)
               for i in range(4, 8)]
    trials += [_trial(i, i / 10, {"1": 10.0 + i}, TrialState.PRUNED, value=15.0 + i) for i in range(8, 10)]
    base = Recorder()
    suggestion = MultiFidelitySampler(base, min_points=5).ask(AskContext(SPACE, "min", trials, number=10))
    assert suggestion is not None
    assert suggestion.system_attrs == {"recorder": True, "mf_rung": "3", "mf_points": 8}
    assert base.seen is not None
    assert {t.number: t.value for t in base.seen.complete} == {i: 20.0 + i for i in range(8)}
    view = _by_number(base.seen)
    assert view[8].state is view[9].state is TrialState.PRUNED  # stopped below rung 3
    assert view[8].value is None and not view[8].system_attrs


def test_bayesian_base_follows_the_rung_it_is_shown() -> None:
    """On rung 3 the best x is near 0.8; at rung 1 and in the stored final values near 0.2."""
    xs = np.linspace(0.0, 1.0, 12)
    trials = [_trial(i, float(x), {"1": (x - 0.2) ** 2, "3": (x - 0.8) ** 2}, TrialState.COMPLETE,
                     value=(x - 0.2) ** 2) for i, x in enumerate(xs)]
    ctx = AskContext(SPACE, "min", trials, number=len(xs))

    def ask(sampler: Sampler) -> float:
        suggestion = sampler.ask(ctx)
        assert suggestion is not None
        return float(suggestion.params["x"])

    def bo() -> BayesianSampler:
        return BayesianSampler(seed=0, n_initial_points=4, n_candidates=256, n_starts=3)

    assert abs(ask(MultiFidelitySampler(bo())) - 0.8) < 0.1
    assert abs(ask(MultiFidelitySampler(bo(), min_points=13)) - 0.8) > 0.3  # no rung qualifies: Sobol
    low = [_trial(i, float(x), {"1": (x - 0.2) ** 2}, TrialState.PRUNED, value=(x - 0.8) ** 2)
           for i, x in enumerate(xs)]
    assert abs(MultiFidelitySampler(bo()).ask(AskContext(SPACE, "min", low, 12)).params["x"] - 0.2) < 0.1
    # The plain sampler learns from the stored final values.
    assert abs(ask(bo()) - 0.2) < 0.1


def test_pending_trials_are_those_still_below_the_rung() -> None:
    trials = [_trial(i, i / 10, {"1": 0.1 * i, "3": 0.1 * i}) for i in range(4)]
    trials += [
        _trial(4, 0.45, {"1": 0.2}, TrialState.RUNNING),  # training towards rung 3
        _trial(5, 0.55, {"1": 0.2, "3": 0.15}, TrialState.RUNNING),  # past rung 3, still training
        FrozenTrial(6, TrialState.RUNNING, {"x": 0.65}),  # just claimed: no rung attributes yet
        FrozenTrial(7, TrialState.WAITING, {"x": 0.75}),  # enqueued
        FrozenTrial(8, TrialState.FAILED, {"x": 0.85}),
        FrozenTrial(9, TrialState.COMPLETE, {"x": 0.95}, 0.0),  # not managed by a halving policy
        # Paused at rung 1 with a checkpoint: it may still be promoted to rung 3.
        _trial(10, 0.05, {"1": 0.3}, fw_paused_at="1", fw_checkpoint="paused-1.ckpt"),
        # Paused, but its checkpoint is gone (the search it ran in ended): stopped for good.
        _trial(11, 0.15, {"1": 0.3}, fw_paused_at="1", fw_checkpoint=None),
    ]
    base = Recorder()
    MultiFidelitySampler(base, min_points=4).ask(AskContext(SPACE, "min", trials, number=12))
    assert base.seen is not None
    view = _by_number(base.seen)
    assert {t.number for t in base.seen.pending} == {4, 6, 7, 10}
    assert view[11].state is TrialState.PRUNED
    assert view[5].state is TrialState.COMPLETE and view[5].value == 0.15
    assert view[8].state is view[9].state is TrialState.FAILED  # tried, without a value at rung 3
    assert view[9].value is None


def test_before_any_rung_qualifies_the_base_sees_no_values() -> None:
    trials = [_trial(i, i / 10, {"1": 0.1 * i}, TrialState.PRUNED, value=0.1 * i) for i in range(3)]
    trials.append(_trial(3, 0.3, {}, TrialState.RUNNING))
    base = Recorder()
    suggestion = MultiFidelitySampler(base, min_points=5).ask(AskContext(SPACE, "min", trials, number=4))
    assert suggestion is not None and suggestion.system_attrs["mf_rung"] is None
    assert suggestion.system_attrs["mf_points"] == 3
    assert base.seen is not None
    assert base.seen.complete == [] and [t.number for t in base.seen.pending] == [3]
    assert len(base.seen.trials) == 4  # every tried point is still there


def test_without_rung_records_the_history_passes_unchanged() -> None:
    trials = [FrozenTrial(i, TrialState.COMPLETE, {"x": i / 5}, float(i)) for i in range(5)]
    ctx = AskContext(SPACE, "min", trials, number=5)
    sampler = MultiFidelitySampler(Recorder())
    assert sampler.view(ctx) is ctx


def test_promoted_trials_count_once_as_their_config() -> None:
    root = _trial(0, 0.1, {"1": 0.5}, TrialState.PRUNED, fw_paused_at="1", promoted_to=3)
    child = FrozenTrial(3, TrialState.RUNNING, {"x": 0.1}, system_attrs={
        "fw_bracket": 0, "fw_root": 0, "promoted_from": 0, "fw_rungs": {"1": [0.5, True], "3": [0.2, False]}})
    others = [_trial(i, i / 10, {"1": 0.6}) for i in (1, 2)]
    base = Recorder()
    sampler = MultiFidelitySampler(base, min_points=3)
    assert sampler.rung(AskContext(SPACE, "min", [root, *others, child], 4)) == ("1", 3)
    sampler.ask(AskContext(SPACE, "min", [root, *others, child], 4))
    assert base.seen is not None
    assert sorted((t.number, t.value) for t in base.seen.complete) == [(0, 0.5), (1, 0.6), (2, 0.6)]


def test_base_records_carry_over_only_on_the_same_rung() -> None:
    record = {"lengthscale": [0.3], "outputscale": 1.0, "noise": 1e-3, "n": 4}
    trials = [_trial(i, i / 10, {"1": 0.1 * i, "3": 0.1 * i}, bo_gp=record, mf_rung="3" if i < 2 else "1")
              for i in range(4)]
    base = Recorder()
    MultiFidelitySampler(base, min_points=4).ask(AskContext(SPACE, "min", trials, number=4))
    assert base.seen is not None
    assert [bool(t.system_attrs) for t in base.seen.trials] == [True, True, False, False]


# --- through a Study, with ASHA's own decisions -----------------------------------------------------
def _curve(x: float, epoch: int) -> float:
    """Early epochs favour x near 0.2, the longer runs x near 0.8."""
    w = min(1.0, epoch / 9)
    return (1 - w) * (x - 0.2) ** 2 + w * (x - 0.8) ** 2 + 1.0 / epoch


def _asha_search(study: Study, n: int, curve: Callable[[float, int], float] = _curve) -> None:
    """``n`` trials under ASHA (1 to 9 epochs, eta 3) through its ``decide``, attributes stored."""
    policy = ASHA(min_resource=1, max_resource=9, eta=3, mode="min", promotion=False)
    while (trial := study.ask(budget=n)) is not None:
        others = tuple(t for t in study.trials if t.number != trial.number)
        attrs = dict(policy.start_attrs(History(mode="min", number=trial.number, others=others)))
        values: dict[int, float] = {}
        stopped = None
        for epoch in range(1, 10):
            values[epoch] = curve(trial.params["x"], epoch)
            trial.report(epoch, values[epoch])
            decision = policy.decide(History(values, mode="min", step=epoch, epoch=float(epoch),
                                             number=trial.number, attrs=attrs, others=others))
            attrs.update(decision.attrs)
            if decision.stops:
                stopped = decision
                break
        for key, value in attrs.items():
            trial.set_system_attr(key, value)
        if stopped is not None and stopped.decision.name == "PRUNE":
            trial.prune(stopped.message)
        else:
            trial.complete(values[max(values)])


def _mf(seed: int = 0, model: str = "rung") -> MultiFidelitySampler:
    return MultiFidelitySampler(BayesianSampler(seed=seed, n_initial_points=4, n_candidates=256, n_starts=2),
                                model=model)


def test_with_asha_the_model_moves_up_the_rungs() -> None:
    study = Study.create("mf-asha", SPACE, metric="loss", sampler=_mf())
    _asha_search(study, 30)
    rungs = [t.system_attrs.get("mf_rung") for t in study.trials]
    assert rungs[:4] == [None] * 4  # the initial design
    assert rungs[4] == "1" and "3" in rungs  # ASHA's records, as stored, feed the model
    first = rungs.index("3")
    assert set(rungs[first:]) == {"3"}  # once rung 3 has enough results it stays the model's
    assert study.trials[first].system_attrs["mf_points"] == 4
    assert study.trials[first].system_attrs["bo"] == "gp"


@pytest.mark.parametrize("model", ["rung", "fidelity"])
def test_parallel_asks_with_rung_history_get_distinct_points(model: str) -> None:
    study = Study.create("mf-par", SPACE, metric="loss", sampler=_mf(model=model))
    _asha_search(study, 12)
    held = [study.ask() for _ in range(4)]  # four workers, none finished
    assert all(t is not None and t.system_attrs["mf_rung"] is not None for t in held)
    assert all(t.system_attrs.get("mf_model") == ("fidelity" if model == "fidelity" else None)
               for t in held)  # type: ignore[union-attr]
    xs = sorted(t.params["x"] for t in held)  # type: ignore[union-attr]
    assert min(np.diff(xs)) > 1e-3, xs


@pytest.mark.parametrize("model", ["rung", "fidelity"])
def test_resumed_search_makes_the_same_suggestions(tmp_path: Any, model: str) -> None:
    whole = Study.create("whole", SPACE, metric="loss", sampler=_mf(3, model))
    _asha_search(whole, 16)
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    _asha_search(Study.create("resumed", SPACE, metric="loss", sampler=_mf(3, model), storage=url), 8)
    resumed = Study.create("resumed", SPACE, metric="loss", sampler=_mf(3, model), storage=url)  # a new process
    _asha_search(resumed, 16)
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    for key in ("mf_rung", "mf_model", "bo"):
        assert [t.system_attrs.get(key) for t in resumed.trials] == [t.system_attrs.get(key) for t in whole.trials]
    if model == "fidelity":  # the model did run, on the resumed history too
        assert sum(t.system_attrs.get("mf_model") == "fidelity" for t in resumed.trials[8:]) >= 4


# --- the public surface ---------------------------------------------------------------------------
def test_identity_names_the_base() -> None:
    assert MultiFidelitySampler(RandomSampler(seed=1)).identity() == {
        "sampler": "MultiFidelitySampler", "base": {"sampler": "RandomSampler"}}
    assert MultiFidelitySampler(seed=4).base.seed == 4
    assert isinstance(MultiFidelitySampler().base, BayesianSampler)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"base": "bayes"}, "base must be a frameworm_lightning Sampler"),
    ({"base": RandomSampler(), "seed": 1}, "pass the seed to the base sampler"),
    ({"min_points": 0}, "min_points must be a positive integer"),
    ({"min_points": 2.5}, "min_points must be a positive integer"),
    ({"base": MultiFidelitySampler(RandomSampler())}, "must not itself be a MultiFidelitySampler"),
    ({"model": "joint"}, "model must be one of 'rung', 'fidelity', but got model='joint'"),
    ({"base": RandomSampler(), "model": "fidelity"}, "the base must be a BayesianSampler"),
])
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultiFidelitySampler(**kwargs)


def test_a_parallel_search_runner_with_asha(tmp_path: Any) -> None:
    """Two worker processes, ASHA pausing and promoting, the sampler reading it all from SQLite."""
    from frameworm_lightning import SearchRunner
    from tests.stopping._models import QUIET, CurveModule

    sampler = MultiFidelitySampler(BayesianSampler(seed=0, n_initial_points=4, n_candidates=256, n_starts=2))
    runner = SearchRunner(metric="val_loss", n_trials=12, n_jobs=2, root_dir=tmp_path / "runs", quiet=True,
                          storage=f"sqlite:///{tmp_path / 'study.db'}", sampler=sampler,
                          callbacks=[ASHA(monitor="val_loss", min_resource=1, max_resource=9)],
                          trainer_kwargs={k: v for k, v in QUIET.items() if k != "enable_checkpointing"})
    trials = runner.fit(CurveModule, {"x": Real(0.0, 1.0)}, model_kwargs={"batches": 2}).trials
    fresh = [t for t in trials if "promoted_from" not in t.system_attrs]
    assert len(fresh) == 12 and all(t.state.is_finished for t in trials)
    assert len({t.system_attrs["worker"]["pid"] for t in trials}) > 1
    rungs = [t.system_attrs["mf_rung"] for t in fresh]
    assert rungs[:4] == [None] * 4 and {"1", "3"} & set(rungs[4:])
    assert any(t.state is TrialState.COMPLETE for t in trials)  # promoted up to max_resource
    assert len({t.params["x"] for t in fresh}) == 12


def _rung_history(n: int) -> list[FrozenTrial]:
    return [_trial(i, i / n, {"1": (i / n - 0.3) ** 2}) for i in range(n)]


def test_random_fraction_mixes_in_random_draws_once_a_model_is_fitted() -> None:
    # BOHB's random_fraction: a share of the suggestions ignore the model.
    trials = _rung_history(6)
    sampler = MultiFidelitySampler(Recorder(), min_points=3, random_fraction=1 / 3)
    picks = [sampler.ask(AskContext(SPACE, "min", trials, number=n)) for n in range(6, 306)]
    random_picks = [s for s in picks if s.system_attrs.get("mf_random")]
    assert 70 <= len(random_picks) <= 130  # a third of 300, give or take
    assert all(s.params == {"x": 0.5} and "mf_random" not in s.system_attrs
               for s in picks if s not in random_picks)  # the rest are the base's (Recorder's 0.5)
    # A random pick is RandomSampler's draw for that trial number: reproducible on resume, on any worker.
    number = next(n for n, s in zip(range(6, 306), picks) if s.system_attrs.get("mf_random"))
    again = MultiFidelitySampler(Recorder(), min_points=3, random_fraction=1 / 3).ask(
        AskContext(SPACE, "min", trials, number=number))
    assert again.system_attrs.get("mf_random") and again.params == picks[number - 6].params
    assert again.params == RandomSampler(seed=0).ask(AskContext(SPACE, "min", trials, number=number)).params
    assert again.system_attrs["mf_rung"] == "1"


def test_no_random_draws_before_a_rung_has_enough_results_or_with_random_fraction_zero() -> None:
    trials = _rung_history(6)
    early = MultiFidelitySampler(Recorder(), min_points=10, random_fraction=1 / 3)
    assert not any(early.ask(AskContext(SPACE, "min", trials, number=n)).system_attrs.get("mf_random")
                   for n in range(6, 60))  # the base's initial design decides
    never = MultiFidelitySampler(Recorder(), min_points=3, random_fraction=0.0)
    assert not any(never.ask(AskContext(SPACE, "min", trials, number=n)).system_attrs.get("mf_random")
                   for n in range(6, 60))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, math.nan, "0.3", True])
def test_random_fraction_must_be_a_share_below_one(bad: Any) -> None:
    with pytest.raises(ValueError, match="random_fraction"):
        MultiFidelitySampler(Recorder(), random_fraction=bad)


# --- cost: seconds per unit of resource -------------------------------------------------------------
def _timed(trial: FrozenTrial, seconds: float | None) -> FrozenTrial:
    return dataclasses.replace(trial, started_at=1000.0, completed_at=None if seconds is None else 1000.0 + seconds)


def test_the_base_sees_each_configs_seconds_per_unit_of_resource() -> None:
    trials = [
        _timed(_trial(0, 0.0, {"1": 0.5, "3": 0.4}), 6.0),  # 3 epochs in 6 s
        _timed(_trial(1, 0.1, {"1": 0.5, "3": 0.3}, fw_paused_at="3"), 3.0),  # paused at 3 after 3 s...
        _timed(_trial(2, 0.1, {"1": 0.5, "3": 0.3, "9": 0.2}, TrialState.COMPLETE, 0.2, fw_root=1,
                      fw_promoted_at="3"), 12.0),  # ...promoted: 6 epochs more in 12 s
        _timed(_trial(3, 0.3, {"1": 0.6}, TrialState.RUNNING), None),  # still running: no duration yet
        _timed(_trial(4, 0.4, {"1": 0.7}, TrialState.FAILED), 5.0),  # failed: its resource is unknown
        _timed(_trial(5, 0.5, {"1": 0.9}), 0.5),
    ]
    base = Recorder()
    MultiFidelitySampler(base, min_points=2).ask(AskContext(SPACE, "min", trials, number=6))
    assert base.seen is not None
    durations = {t.number: t.duration for t in base.seen.trials}
    assert durations == {0: 2.0, 1: pytest.approx(15.0 / 9.0), 3: None, 4: None, 5: 0.5}


def _valleys_at_rung_1(seconds: Callable[[float], float]) -> list[FrozenTrial]:
    """Twelve configs stopped at rung 1, whose values there have two equally deep minima (0.2, 0.8)."""
    xs = np.linspace(0.05, 0.95, 12)
    return [_timed(_trial(i, float(x), {"1": min((x - 0.2) ** 2, (x - 0.8) ** 2)}), seconds(x))
            for i, x in enumerate(xs)]


def test_a_cost_aware_base_proposes_where_training_is_cheaper() -> None:
    trials = _valleys_at_rung_1(lambda x: 1.0 if x < 0.5 else 20.0)
    ctx = AskContext(SPACE, "min", trials, number=12)
    blind = MultiFidelitySampler(BayesianSampler(seed=0)).ask(ctx)
    aware = MultiFidelitySampler(BayesianSampler(seed=0, cost="duration")).ask(ctx)
    assert blind is not None and aware is not None and aware.system_attrs["mf_rung"] == "1"
    assert abs(blind.params["x"] - 0.8) < 0.02
    assert abs(aware.params["x"] - 0.2) < 0.02
    assert aware.system_attrs["bo_cost"] == {"n": 12, "predicted": pytest.approx(1.0, rel=0.05)}
    # With workers training in the cheap valley, the next suggestion keeps away from them.
    pending = [_trial(12 + k, x, {}, TrialState.RUNNING) for k, x in enumerate([0.18, 0.2, 0.22])]
    busy = MultiFidelitySampler(BayesianSampler(seed=0, cost="duration")).ask(
        AskContext(SPACE, "min", [*trials, *pending], number=15))
    assert busy is not None
    assert min(abs(busy.params["x"] - t.params["x"]) for t in pending) > 1e-3


def test_cost_aware_suggestions_depend_only_on_the_stored_history(tmp_path: Any) -> None:
    def sampler() -> MultiFidelitySampler:
        return MultiFidelitySampler(BayesianSampler(seed=2, n_initial_points=4, n_candidates=256, n_starts=2,
                                                    cost="duration"))

    url = f"sqlite:///{tmp_path / 'cost.db'}"
    study = Study.create("cost", SPACE, metric="loss", sampler=sampler(), storage=url)
    _asha_search(study, 14)
    modelled = [t for t in study.trials if t.system_attrs.get("bo") == "gp"]
    assert modelled and all(t.system_attrs["bo_cost"]["n"] >= 4 for t in modelled)  # stored durations were used
    stored = Study.create("cost", SPACE, metric="loss", sampler=sampler(), storage=url).trials  # a new process
    asks = [sampler().ask(AskContext(SPACE, "min", stored, number=14)) for _ in range(2)]
    assert asks[0] is not None and asks[1] is not None and asks[0].params == asks[1].params
    held = [study.ask() for _ in range(4)]  # four workers, none finished
    xs = sorted(t.params["x"] for t in held if t is not None)
    assert len(xs) == 4 and min(np.diff(xs)) > 1e-3, xs


# --- model="fidelity": one GP over configuration x resource -------------------------------------------
def _fidelity(min_points: int | None = None, seed: int = 0) -> MultiFidelitySampler:
    return MultiFidelitySampler(BayesianSampler(seed=seed, n_initial_points=4, n_candidates=256, n_starts=3),
                                min_points=min_points, model="fidelity")


def test_the_fidelity_model_sees_every_rung_with_its_resource_and_pending_configs_at_the_top() -> None:
    trials = [
        _trial(0, 0.1, {"1": 0.5, "3": 0.4, "9": 0.3}, TrialState.COMPLETE, 0.3),
        _trial(1, 0.2, {"1": 0.6, "3": math.nan}),  # diverged at rung 3
        _trial(2, 0.3, {"1": 0.7}, TrialState.RUNNING),  # training on: pending at the top
        _trial(3, 0.4, {}, TrialState.FAILED),  # no value anywhere: a tried point
        FrozenTrial(4, TrialState.WAITING, {"x": 0.5}),  # enqueued
        FrozenTrial(5, TrialState.COMPLETE, {"x": 0.6}, 0.1),  # not managed by a halving policy
        # A promoted config counts once: its rungs merged, its cost per epoch on one of its points.
        _timed(_trial(6, 0.7, {"1": 0.2}, fw_paused_at="1", promoted_to=7), 2.0),
        _timed(_trial(7, 0.7, {"1": 0.2, "3": 0.1}, fw_root=6, fw_promoted_at="1"), 4.0),
    ]
    ctx = AskContext(SPACE, "min", trials, number=8)
    sampler = _fidelity(min_points=4)
    assert sampler.fidelity(ctx) == ("9", 4)
    assert _fidelity(min_points=5).fidelity(ctx) == (None, 4)
    view, fixed = sampler.fidelity_view(ctx)
    assert fixed == {"mf_resource": 9.0}
    assert view.space["mf_resource"] == Real(1.0, 9.0, log=True) and view.space["x"] == SPACE["x"]
    rows = [(t.number, t.params["x"], t.params["mf_resource"], t.state) for t in view.trials]
    assert rows == [
        (0, 0.1, 1.0, TrialState.COMPLETE), (0, 0.1, 3.0, TrialState.COMPLETE), (0, 0.1, 9.0, TrialState.COMPLETE),
        (1, 0.2, 1.0, TrialState.COMPLETE), (1, 0.2, 3.0, TrialState.PRUNED),
        (2, 0.3, 1.0, TrialState.COMPLETE), (2, 0.3, 9.0, TrialState.RUNNING),
        (3, 0.4, 9.0, TrialState.FAILED),
        (4, 0.5, 9.0, TrialState.WAITING),
        (5, 0.6, 9.0, TrialState.FAILED),
        (6, 0.7, 1.0, TrialState.COMPLETE), (6, 0.7, 3.0, TrialState.COMPLETE),
    ]
    # Each rung's values less its shift: the median change from the rung below over the configs
    # recorded at both (rung 3: 0.4 - 0.5 and 0.1 - 0.2; rung 9: 0.3 - 0.4, plus rung 3's -0.1).
    values = [t.value for t in view.trials]
    assert values == pytest.approx([0.5, 0.5, 0.5, 0.6, None, 0.7, None, None, None, None, 0.2, 0.2])
    assert [t.duration for t in view.trials if t.number == 6] == [None, 2.0]  # 3 epochs in 6 s
    # The space may already have a dimension of that name.
    named = AskContext(SearchSpace({"mf_resource": Real(0.0, 1.0)}), "min",
                       [dataclasses.replace(t, params={"mf_resource": t.params["x"]}) for t in trials], 8)
    assert sampler.fidelity_view(named)[1] == {"_mf_resource": 9.0}


def test_the_fidelity_model_carries_the_bases_records_only_between_its_own_suggestions_at_the_same_top() -> None:
    record = {"lengthscale": [0.3, 0.5], "outputscale": 1.0, "noise": 1e-3, "n": 4}
    marks = [{"mf_model": "fidelity", "mf_rung": "3"}, {"mf_model": "fidelity", "mf_rung": "1"}, {"mf_rung": "3"}]
    trials = [_trial(i, i / 10, {"1": 0.1 * i, "3": 0.1 * i}, bo_gp=record, **mark) for i, mark in enumerate(marks)]
    view, _ = _fidelity(min_points=3).fidelity_view(AskContext(SPACE, "min", trials, number=3))
    assert [(t.number, "bo_gp" in t.system_attrs) for t in view.trials] == [
        (0, True), (0, False), (1, False), (1, False), (2, False), (2, False)]


def _informative_rung_1() -> list[FrozenTrial]:
    """Twelve configs; every value is ``(x - 0.7)**2 + 1 / epochs``, so rung 1 knows where the best
    is, but only the four with x < 0.3 reached rung 9, where every value is lower."""
    def f(x: float, epochs: int) -> float:
        return (x - 0.7) ** 2 + 1.0 / epochs

    trials = []
    for i, x in enumerate(np.linspace(0.0, 1.0, 12)):
        x = float(x)
        if x < 0.3:
            trials.append(_trial(i, x, {"1": f(x, 1), "3": f(x, 3), "9": f(x, 9)}, TrialState.COMPLETE, f(x, 9)))
        else:
            trials.append(_trial(i, x, {"1": f(x, 1)}, TrialState.PRUNED, f(x, 1)))
    return trials


def test_the_fidelity_model_learns_from_lower_rungs_where_few_configs_reached_the_top() -> None:
    ctx = AskContext(SPACE, "min", _informative_rung_1(), number=12)
    suggestion = _fidelity(min_points=4).ask(ctx)
    assert suggestion is not None
    assert suggestion.system_attrs["mf_model"] == "fidelity" and suggestion.system_attrs["bo"] == "gp"
    assert suggestion.system_attrs["mf_rung"] == "9" and suggestion.system_attrs["mf_points"] == 12
    assert len(suggestion.system_attrs["bo_gp"]["lengthscale"]) == 2  # x and the resource
    assert abs(suggestion.params["x"] - 0.7) < 0.1, suggestion.params
    # The rung model at the top rung (four values there) knows nothing of rung 1: it stays low.
    rung = MultiFidelitySampler(BayesianSampler(seed=0, n_initial_points=4, n_candidates=256, n_starts=3),
                                min_points=4).ask(ctx)
    assert rung is not None and rung.system_attrs["mf_rung"] == "9"
    assert abs(rung.params["x"] - 0.7) > 0.2, rung.params
    # Pooled without the resource, the top rung's values (lower) would win: the resource as an
    # input, and its shift, are what let rung 1's values point at x = 0.7.
    pooled = [FrozenTrial(t.number, TrialState.COMPLETE, t.params, record[0])
              for t in ctx.trials for record in t.system_attrs["fw_rungs"].values()]
    flat = BayesianSampler(seed=0, n_initial_points=4, n_candidates=256, n_starts=3).ask(
        AskContext(SPACE, "min", pooled, number=12))
    assert flat is not None and flat.params["x"] < 0.5, flat.params


def test_the_fidelity_model_holds_pending_configs_at_the_top_and_suggests_in_a_mixed_space() -> None:
    space = mixed_space()
    rng = np.random.default_rng(0)
    trials = []
    for i in range(14):
        params = space.sample(rng)
        rungs = {"1": objective(params) + 1.0, **({"3": objective(params) + 0.3} if i % 3 == 0 else {})}
        trials.append(FrozenTrial(i, TrialState.PRUNED, params, rungs["1"], system_attrs={
            "fw_bracket": 0, "fw_root": i, "fw_rungs": {k: [v, False] for k, v in rungs.items()}}))
    held: list[dict[str, Any]] = []
    for number in range(14, 17):  # three workers, none finished: each suggestion is pending for the next
        suggestion = _fidelity().ask(AskContext(space, "min", trials, number))
        assert suggestion is not None and suggestion.system_attrs["mf_model"] == "fidelity"
        assert suggestion.system_attrs["bo"] == "gp"
        space.validate(suggestion.params)
        held.append(suggestion.params)
        trials.append(FrozenTrial(number, TrialState.RUNNING, suggestion.params, system_attrs={
            "fw_bracket": 0, "fw_root": number, "fw_rungs": {}}))
    assert len({json.dumps(p, sort_keys=True) for p in held}) == 3
    tried = {json.dumps(t.params, sort_keys=True) for t in trials[:14]}
    assert not tried & {json.dumps(p, sort_keys=True) for p in held}  # never a config already trained
