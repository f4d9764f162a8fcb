"""Successive halving, ASHA and Hyperband checked against hand-computed brackets.

The simulation below is a serial search without Lightning: trial ``x`` reports
``x + 1 / epoch`` after each epoch, so a smaller ``x`` ranks better at every rung and
every promotion can be worked out by hand. It drives the policies exactly as the
callback and the runner do: ``start_attrs`` when a trial starts, ``decide`` at each
report, the policy's scheduler's ``trial_budget`` before each claim, and a promoted trial
resumes at the rung its parent paused at.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from frameworm_lightning import Categorical, GridSampler, Study, TrialState
from frameworm_lightning.stopping import (
    ASHA,
    Check,
    Decision,
    History,
    Hyperband,
    Reason,
    SuccessiveHalving,
    rung_resources,
)
from frameworm_lightning.stopping._halving import _RungPolicy


def simulate(policy: _RungPolicy, xs: Sequence[float], n_trials: int | None = None,
             can_pause: bool = True) -> tuple[Study, int]:
    """Run a serial search of ``xs`` (in that order); return the study and the epochs trained."""
    study = Study.create("sim", {"x": Categorical(list(xs))}, metric="loss", mode="min", sampler=GridSampler(),
                         storage="memory")
    budget = n_trials if n_trials is not None else len(xs)
    epochs = 0
    scheduler = policy.scheduler() if can_pause else None
    while (trial := study.ask(budget=scheduler.trial_budget(study, budget) if scheduler else budget)) is not None:
        x = trial.params["x"]
        others = [t for t in study.trials if t.trial_id != trial.trial_id]
        for key, value in policy.start_attrs(History(number=trial.number, attrs=trial.system_attrs, others=others,
                                                     check=Check.START)).items():
            trial.set_system_attr(key, value)
        epoch = int(float(trial.system_attrs.get("fw_promoted_at", 0)))  # a promotion resumes here
        values: dict[int, float] = {}
        while True:
            epoch += 1
            epochs += 1
            values[epoch] = x + 1.0 / epoch
            trial.report(epoch, values[epoch])
            others = [t for t in study.trials if t.trial_id != trial.trial_id]
            decision = policy.decide(History(values, step=epoch, epoch=epoch, number=trial.number,
                                             attrs=trial.system_attrs, others=others, can_pause=can_pause))
            for key, value in decision.attrs.items():
                trial.set_system_attr(key, value)
            if decision.decision is Decision.PAUSE:
                trial.set_system_attr("fw_checkpoint", f"checkpoint-of-trial-{trial.number}")
            if decision.stops:
                break
        if decision.decision is Decision.FINISH:
            trial.complete(values[epoch])
        else:
            trial.prune(decision.describe())
    return study, epochs


def rung_counts(study: Study) -> dict[int, list[int]]:
    """For each bracket, how many configurations recorded a value at each rung."""
    counts: dict[int, dict[str, int]] = {}
    roots: dict[tuple[int, str], set[int]] = {}
    for t in study.trials:
        b = t.system_attrs["fw_bracket"]
        for key in t.system_attrs.get("fw_rungs", {}):
            roots.setdefault((b, key), set()).add(t.system_attrs["fw_root"])
    for (b, key), members in roots.items():
        counts.setdefault(b, {})[key] = len(members)
    return {b: [n for _, n in sorted(c.items(), key=lambda kv: float(kv[0]))] for b, c in sorted(counts.items())}


def permutation(n: int, step: int) -> list[float]:
    """``0.0, 0.1, ..., (n-1)/10`` visited in a scrambled (but fixed) order."""
    return [round(0.1 * ((i * step) % n), 2) for i in range(n)]


def test_rungs() -> None:
    assert rung_resources(1, 27, 3) == (1, 3, 9, 27)
    assert rung_resources(1, 10, 3) == (1, 3, 10)
    assert rung_resources(2, 8, 2) == (2, 4, 8)
    assert rung_resources(0.5, 4, 2) == (0.5, 1, 2, 4)
    assert SuccessiveHalving(min_resource=1, max_resource=27).bracket(5).size == 27


def test_hyperband_brackets_match_the_paper() -> None:
    # Li et al. (2018), Table 1: R = 81, eta = 3.
    hb = Hyperband(min_resource=1, max_resource=81, eta=3)
    assert hb.bracket_sizes == [81, 34, 15, 8, 5]
    assert [b.rungs for b in hb.brackets()] == [(1, 3, 9, 27, 81), (3, 9, 27, 81), (9, 27, 81), (27, 81), (81,)]
    assert hb.bracket(5) == hb.brackets()[0].__class__(5, (1, 3, 9, 27, 81), 81)  # the next round starts over
    assert Hyperband(min_resource=1, max_resource=9, eta=3).bracket_sizes == [9, 5, 3]


def test_successive_halving_trains_one_bracket_by_hand() -> None:
    # 9 configs x 1 epoch, the best 3 continue to 3 epochs, the best 1 to 9: 9 + 3*2 + 1*6 = 21 epochs.
    study, epochs = simulate(SuccessiveHalving(min_resource=1, max_resource=9, eta=3), permutation(9, 4))
    assert epochs == 21
    assert rung_counts(study) == {0: [9, 3, 1]}
    complete = study.trials_in(TrialState.COMPLETE)
    assert [t.params["x"] for t in complete] == [0.0]
    # the last config of the cohort was cut at the rung (not paused: it can never go up)
    cut = [t for t in study.trials if t.reason and "only the best" in t.reason]
    assert cut and all("fw_checkpoint" not in t.system_attrs for t in cut)
    # every promotion continues from its parent's checkpoint
    for t in study.trials:
        if "promoted_from" in t.system_attrs:
            parent = study.trials[t.system_attrs["promoted_from"]]
            # its checkpoint is removed once the promotion ran
            assert parent.system_attrs["fw_checkpoint"] is None
            assert t.system_attrs["resume_checkpoint"] == parent.system_attrs["fw_checkpoint_removed"]
            assert parent.system_attrs["promoted_to"] == t.number
            assert parent.params == t.params


def test_successive_halving_27() -> None:
    study, epochs = simulate(SuccessiveHalving(min_resource=1, max_resource=27, eta=3), permutation(27, 5))
    assert epochs == 27 * 1 + 9 * 2 + 3 * 6 + 1 * 18
    assert rung_counts(study) == {0: [27, 9, 3, 1]}
    assert [t.params["x"] for t in study.trials_in(TrialState.COMPLETE)] == [0.0]


def test_hyperband_one_round_by_hand() -> None:
    # R = 27, eta = 3: brackets of 27, 12, 6 and 4 configs starting at 1, 3, 9 and 27 epochs.
    hb = Hyperband(min_resource=1, max_resource=27, eta=3)
    assert hb.bracket_sizes == [27, 12, 6, 4]
    xs = permutation(49, 10)
    study, epochs = simulate(hb, xs)
    by_hand = (27 * 1 + 9 * 2 + 3 * 6 + 1 * 18) + (12 * 3 + 4 * 6 + 1 * 18) + (6 * 9 + 2 * 18) + 4 * 27
    assert epochs == by_hand == 357
    assert rung_counts(study) == {0: [27, 9, 3, 1], 1: [12, 4, 1], 2: [6, 2], 3: [4]}
    # the configs trained to 27 epochs are the best of each bracket: 1, 1, 2 and all 4
    members: dict[int, list[float]] = {}
    for t in study.trials:
        if "promoted_from" not in t.system_attrs:
            members.setdefault(t.system_attrs["fw_bracket"], []).append(t.params["x"])
    assert {b: len(v) for b, v in members.items()} == {0: 27, 1: 12, 2: 6, 3: 4}
    finished: dict[int, list[float]] = {}
    for t in study.trials_in(TrialState.COMPLETE):
        finished.setdefault(t.system_attrs["fw_bracket"], []).append(t.params["x"])
    assert {b: sorted(v) for b, v in finished.items()} == {
        b: sorted(members[b])[:k] for b, k in {0: 1, 1: 1, 2: 2, 3: 4}.items()
    }


def test_asha_promotes_asynchronously_by_hand() -> None:
    # Rungs 1, 3, 9 and eta = 3; the order of arrival decides who is in the top floor(n/3).
    study, epochs = simulate(ASHA(min_resource=1, max_resource=9, eta=3), permutation(9, 4))
    trace = [(t.params["x"], t.system_attrs.get("promoted_from"), sorted(t.system_attrs["fw_rungs"], key=float),
              t.state.value) for t in study.trials]
    assert trace == [
        (0.0, None, ["1"], "PRUNED"),        # n=1 at rung 1: floor(1/3) = 0 go on: pause
        (0.4, None, ["1"], "PRUNED"),        # n=2: pause
        (0.8, None, ["1"], "PRUNED"),        # n=3: 0.0 is the top 1 -> promoted when 0.8 pauses
        (0.0, 0, ["1", "3"], "PRUNED"),      # resumes at 1 epoch, alone at rung 3: pause
        (0.3, None, ["1"], "PRUNED"),        # n=4: top 1 is 0.0 (already promoted)
        (0.7, None, ["1"], "PRUNED"),
        (0.2, None, ["1", "3"], "PRUNED"),   # n=6: top 2 -> goes on at once; n=2 at rung 3: pause
        (0.6, None, ["1"], "PRUNED"),
        (0.1, None, ["1", "3"], "PRUNED"),   # top 2 of 8 -> on; rung 3 has 3: 0.0 is promoted
        (0.0, 3, ["1", "3", "9"], "COMPLETE"),
        (0.5, None, ["1"], "PRUNED"),        # the last fresh config
    ]
    assert epochs == 9 * 1 + 3 * 2 + 1 * 6


def test_asha_closes_its_rungs_when_no_config_is_left() -> None:
    # Two configs never fill a rung (floor(2/3) = 0): once both have paused, the best goes up
    # anyway, rung by rung, so the search still ends with a config trained to max_resource.
    study, epochs = simulate(ASHA(min_resource=1, max_resource=9, eta=3), [0.5, 0.1])
    assert epochs == 1 + 1 + 2 + 6
    assert [t.params["x"] for t in study.trials_in(TrialState.COMPLETE)] == [0.1]


def test_successive_halving_closes_a_cohort_that_cannot_fill() -> None:
    study, epochs = simulate(SuccessiveHalving(min_resource=1, max_resource=9, eta=3), [0.3, 0.1, 0.2, 0.4])
    assert epochs == 4 * 1 + 2 + 6
    assert [t.params["x"] for t in study.trials_in(TrialState.COMPLETE)] == [0.1]


def test_stopping_variant_without_a_runner() -> None:
    # Nothing can be resumed: a config is pruned unless in the top max(1, floor(n/3)) so far.
    study, epochs = simulate(ASHA(min_resource=1, max_resource=9, eta=3), permutation(9, 4), can_pause=False)
    states = {t.params["x"]: (t.state.value, sorted(t.system_attrs["fw_rungs"], key=float)) for t in study.trials}
    assert states[0.0] == ("COMPLETE", ["1", "3", "9"])
    assert states[0.2] == ("PRUNED", ["1", "3"]) and states[0.1] == ("PRUNED", ["1", "3"])
    assert all(states[x] == ("PRUNED", ["1"]) for x in (0.4, 0.8, 0.3, 0.7, 0.6, 0.5))
    assert all(t.reason and "only the best" in t.reason for t in study.trials_in(TrialState.PRUNED))
    assert len(study.trials) == 9 and epochs == 9 + 6 * 1 + 2 * 3


@pytest.mark.parametrize("cls", [SuccessiveHalving, ASHA, Hyperband])
def test_stopping_variant_keeps_a_config_tied_with_the_last_one_kept(cls: type) -> None:
    # Without promotions nothing caps how many go on, so a value tied with the k-th best is
    # in the top k: an equal val_error must not be pruned for having started later.
    from frameworm_lightning.trial import FrozenTrial

    policy = cls(min_resource=1, max_resource=9, eta=3)
    first = FrozenTrial(0, TrialState.PRUNED, {"x": 0}, 0.5, {1: 0.5},
                        system_attrs={"fw_bracket": 0, "fw_root": 0, "fw_rungs": {"1": [0.5, False]}})

    def decide(value: float, can_pause: bool = False) -> Decision:
        history = History({1: value}, epoch=1.0, number=1, attrs={"fw_bracket": 0, "fw_root": 1, "fw_rungs": {}},
                          others=[first], can_pause=can_pause)
        return policy.decide(history).decision

    assert decide(0.5) is Decision.CONTINUE
    assert decide(0.4) is Decision.CONTINUE
    assert decide(0.6) is Decision.PRUNE
    # With promotions the top 1/eta is a capacity: ties still go by trial order there.
    assert decide(0.5, can_pause=True) is Decision.PAUSE


def test_decisions_carry_reasons() -> None:
    policy = ASHA("loss", min_resource=1, max_resource=3, eta=3)
    history = History({5: 0.4}, epoch=3.0, number=0, attrs={"fw_bracket": 0, "fw_root": 0, "fw_rungs": {"1": [0.5, True]}})
    decision = policy.decide(history)
    assert (decision.decision, decision.reason) == (Decision.FINISH, Reason.MAX_RESOURCE)
    assert decision.attrs["fw_rungs"] == {"1": [0.5, True], "3": [0.4, False]}
    # no bracket yet (the trial did not start through the callback): nothing to judge
    assert policy.decide(History({5: 0.4}, epoch=3.0)).decision is Decision.CONTINUE
    # NaN at any point: pruned as diverged
    nan = policy.decide(History({5: float("nan")}, epoch=0.5, attrs={"fw_bracket": 0}))
    assert (nan.decision, nan.reason) == (Decision.PRUNE, Reason.NON_FINITE)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_resource": 0}, "min_resource must be > 0"),
        ({"min_resource": 9, "max_resource": 9}, "max_resource must be greater"),
        ({"eta": 1}, "eta must be an integer >= 2"),
        ({"eta": 2.5}, "eta must be an integer >= 2"),
        ({"resource": "hours"}, "resource must be one of"),
        ({"resource": "steps", "min_resource": 0.5}, "step counts"),
        ({"promotion": "yes"}, "promotion must be True or False"),
    ],
)
@pytest.mark.parametrize("cls", [SuccessiveHalving, ASHA, Hyperband])
def test_arguments_are_validated(cls: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(monitor="loss", **kwargs)


@pytest.mark.parametrize("policy", [SuccessiveHalving(min_resource=1, max_resource=9, eta=3),
                                    Hyperband(min_resource=1, max_resource=9, eta=3)])
def test_the_last_config_of_a_cohort_waits_at_the_next_rung_for_the_others_it_goes_up_with(policy) -> None:
    # The 9th config of the first cohort completes rung 1 and is the best there: it goes on at once.
    # At rung 3 it is the first of the 3 going up, so it must wait (pause) for the other two, and
    # not reach 9 epochs having been compared at rung 1 only. (Since the scheduler, not the
    # decision, enqueues the promotions, the other two are not marked promoted while it trains:
    # the rung looked complete with it alone.)
    xs = [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    study, _ = simulate(policy, xs, n_trials=len(xs))
    last = [t for t in study.trials if t.params["x"] == 0.0 and t.system_attrs.get("fw_bracket") == 0]
    assert last[0].system_attrs.get("fw_paused_at") == "3", [
        (t.number, sorted(t.intermediate_values), t.system_attrs.get("fw_paused_at")) for t in last]
    # No trial of the bracket trains past a rung its cohort has not completed.
    for t in study.trials:
        if t.system_attrs.get("fw_bracket") == 0 and t.intermediate_values:
            steps = sorted(t.intermediate_values)
            assert not (steps[0] <= 3 < steps[-1] and steps[0] <= 1), (t.number, steps)
