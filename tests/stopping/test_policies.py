"""Pure policies: a metric sequence -> the step at which each policy must stop (or not)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import pytest

import frameworm_lightning.stopping as stopping
from frameworm_lightning.stopping import (
    ASHA,
    AllOf,
    AnyOf,
    BudgetStopping,
    Check,
    Decision,
    History,
    ImprovementStopping,
    MedianStopping,
    Reason,
    StopDecision,
    ThresholdStopping,
)
from frameworm_lightning.trial import FrozenTrial, TrialState

NAN, INF = math.nan, math.inf


def first_stop(policy: stopping.StoppingPolicy, sequence: Sequence[float], *, mode: str = "min",
               others: Sequence[FrozenTrial] = (), steps: Sequence[int] | None = None) -> tuple[int | None, StopDecision]:
    """Feed ``sequence`` one report at a time; the step of the first stopping decision."""
    steps = list(steps) if steps is not None else list(range(1, len(sequence) + 1))
    decision = StopDecision()
    for i in range(len(sequence)):
        history = History(dict(zip(steps[: i + 1], sequence[: i + 1])), mode=mode, others=others)
        decision = policy.decide(history)
        if decision.stops:
            return steps[i], decision
    return None, decision


def done(number: int, values: Sequence[float], state: TrialState = TrialState.COMPLETE, start: int = 1) -> FrozenTrial:
    return FrozenTrial(number, state, intermediate_values={start + i: v for i, v in enumerate(values)})


# Three finished trials: the median of their best values is B's.
A = done(0, [1.0, 0.8, 0.6, 0.5, 0.4])
B = done(1, [2.0, 1.5, 1.2, 1.0, 0.9])
C = done(2, [3.0, 2.5, 2.0, 1.8, 1.6], TrialState.PRUNED)
PEERS = (A, B, C)


@pytest.mark.parametrize(
    ("make", "sequence", "mode", "stop_step", "decision", "reason"),
    [
        # ThresholdStopping: a bound, a schedule, a grace period, and always NaN/inf.
        (lambda: ThresholdStopping("m", threshold=1.0), [0.5, 0.9, 1.2, 0.3], "min", 3, Decision.PRUNE, Reason.THRESHOLD),
        (lambda: ThresholdStopping("m", threshold=1.0), [0.5, 1.0, 0.9], "min", None, None, None),
        (lambda: ThresholdStopping("m", threshold=1.0), [2.0, 1.5, 0.9], "max", 3, Decision.PRUNE, Reason.THRESHOLD),
        (lambda: ThresholdStopping("m", threshold=1.0, grace_steps=3), [5.0, 5.0, 5.0], "min", 3, Decision.PRUNE,
         Reason.THRESHOLD),
        (lambda: ThresholdStopping("m", threshold=1.0, grace_steps=3), [5.0, NAN], "min", 2, Decision.PRUNE,
         Reason.NON_FINITE),
        (lambda: ThresholdStopping("m", schedule={0: 10.0, 3: 1.0}), [5.0, 5.0, 5.0, 0.5], "min", 3, Decision.PRUNE,
         Reason.THRESHOLD),
        (lambda: ThresholdStopping("m"), [0.5, 0.4, INF], "min", 3, Decision.PRUNE, Reason.NON_FINITE),
        (lambda: ThresholdStopping("m"), [0.5, 0.4, -INF], "max", 3, Decision.PRUNE, Reason.NON_FINITE),
        (lambda: ThresholdStopping("m"), [9.0, 99.0, 999.0], "min", None, None, None),
        # ImprovementStopping: patience, absolute and relative min_delta, mode.
        (lambda: ImprovementStopping("m", patience=2), [1.0, 0.9, 0.95, 0.91], "min", 4, Decision.FINISH,
         Reason.NO_IMPROVEMENT),
        (lambda: ImprovementStopping("m", patience=2), [1.0, 0.9, 0.8, 0.7, 0.6], "min", None, None, None),
        (lambda: ImprovementStopping("m", patience=2), [1.0, 1.1, 0.9, 1.0, 0.95], "min", 5, Decision.FINISH,
         Reason.NO_IMPROVEMENT),
        (lambda: ImprovementStopping("m", patience=1, min_delta=0.1), [1.0, 0.95], "min", 2, Decision.FINISH,
         Reason.NO_IMPROVEMENT),
        (lambda: ImprovementStopping("m", patience=1, min_delta=0.1, relative=True), [10.0, 9.5], "min", 2,
         Decision.FINISH, Reason.NO_IMPROVEMENT),
        (lambda: ImprovementStopping("m", patience=1, min_delta=0.1, relative=True), [10.0, 8.9, 7.9], "min", None,
         None, None),
        (lambda: ImprovementStopping("m", patience=2), [0.5, 0.6, 0.6, 0.6], "max", 4, Decision.FINISH,
         Reason.NO_IMPROVEMENT),
        (lambda: ImprovementStopping("m", patience=3, prune=True), [1.0, 1.0, 1.0, 1.0], "min", 4, Decision.PRUNE,
         Reason.NO_IMPROVEMENT),
        (lambda: ImprovementStopping("m", patience=5), [1.0, NAN], "min", 2, Decision.PRUNE, Reason.NON_FINITE),
        # MedianStopping against A, B, C: medians of their best values are 2, 1.5, 1.2, 1.0, 0.9.
        (lambda: MedianStopping("m", min_trials=3), [1.5, 1.4, 1.3], "min", 3, Decision.PRUNE, Reason.BELOW_MEDIAN),
        (lambda: MedianStopping("m", min_trials=3), [1.9, 1.0, 1.0, 0.9, 0.9], "min", None, None, None),
        (lambda: MedianStopping("m", min_trials=3, grace_steps=4), [9.0, 9.0, 9.0, 9.0], "min", 4, Decision.PRUNE,
         Reason.BELOW_MEDIAN),
        (lambda: MedianStopping("m", min_trials=4), [9.0, 9.0, 9.0], "min", None, None, None),
        # best-so-far keeps an early good value; the running mean does not
        (lambda: MedianStopping("m", min_trials=3), [0.1, 5.0, 5.0, 5.0, 5.0], "min", None, None, None),
        (lambda: MedianStopping("m", min_trials=3, statistic="mean"), [0.1, 5.0, 5.0, 5.0, 5.0], "min", 2,
         Decision.PRUNE, Reason.BELOW_MEDIAN),
        (lambda: MedianStopping("m", min_trials=3), [1.0, NAN], "min", 2, Decision.PRUNE, Reason.NON_FINITE),
    ],
)
def test_stop_step(make: Callable[[], stopping.StoppingCallback], sequence: list[float], mode: str,
                   stop_step: int | None, decision: Decision | None, reason: Reason | None) -> None:
    step, verdict = first_stop(make(), sequence, mode=mode, others=PEERS)
    assert step == stop_step, verdict.message
    if stop_step is not None:
        assert verdict.decision is decision
        assert verdict.reason is reason
        assert verdict.message


def test_median_compares_only_finished_trials_that_trained_as_far() -> None:
    policy = MedianStopping("m", min_trials=1)
    running = done(3, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0], TrialState.RUNNING)
    short = done(4, [0.0, 0.0])  # never reached step 3
    assert policy.comparable([running, short, A], 3, "min") == [0.6]
    # Past the last step any peer reached, nothing can be compared: no decision.
    assert first_stop(policy, [9.0] * 7, others=(B,), steps=range(6, 13))[0] is None


def test_median_in_max_mode() -> None:
    peers = [done(i, [v]) for i, v in enumerate([0.7, 0.8, 0.9])]
    policy = MedianStopping("acc", min_trials=3)
    assert first_stop(policy, [0.75], mode="max", others=peers)[0] == 1
    assert first_stop(policy, [0.85], mode="max", others=peers)[0] is None


@pytest.mark.parametrize(
    ("policy", "history", "decision", "reason"),
    [
        (BudgetStopping(max_steps=100), History(step=99, check=Check.BATCH), Decision.CONTINUE, Reason.NONE),
        (BudgetStopping(max_steps=100), History(step=100, check=Check.BATCH), Decision.FINISH, Reason.TRIAL_BUDGET),
        (BudgetStopping(max_epochs=2.5), History(step=1, epoch=2.5, check=Check.BATCH), Decision.FINISH,
         Reason.TRIAL_BUDGET),
        (BudgetStopping(max_time=60), History(step=1, elapsed=59.0, check=Check.BATCH), Decision.CONTINUE, Reason.NONE),
        (BudgetStopping(max_time=60), History(step=1, elapsed=61.0, check=Check.BATCH), Decision.FINISH,
         Reason.TRIAL_BUDGET),
        # 90 steps by earlier trials + 10 by this one reach the search budget of 100 ...
        (BudgetStopping(search_max_steps=100), History({10: 1.0}, others=(done(0, [1.0] * 90),)), Decision.PRUNE,
         Reason.SEARCH_BUDGET),
        (BudgetStopping(search_max_steps=100), History({9: 1.0}, others=(done(0, [1.0] * 90),)), Decision.CONTINUE,
         Reason.NONE),
        # ... but batch checks never read the study.
        (BudgetStopping(search_max_steps=100), History(step=50, check=Check.BATCH, others=(done(0, [1.0] * 90),)),
         Decision.CONTINUE, Reason.NONE),
        # a resumed trial only counts the steps it trained itself
        (BudgetStopping(search_max_steps=100), History({60: 1.0}, start_step=55, others=(done(0, [1.0] * 90),)),
         Decision.CONTINUE, Reason.NONE),
    ],
)
def test_budget(policy: BudgetStopping, history: History, decision: Decision, reason: Reason) -> None:
    verdict = policy.decide(history)
    assert (verdict.decision, verdict.reason) == (decision, reason)


def test_budget_counts_recorded_steps_and_seconds() -> None:
    resumed = FrozenTrial(0, TrialState.COMPLETE, intermediate_values={50: 1.0, 80: 1.0},
                          system_attrs={"fw_start_step": 40}, started_at=100.0, completed_at=130.0)
    exact = FrozenTrial(1, TrialState.PRUNED, intermediate_values={10: 1.0}, system_attrs={"fw_steps": 12},
                        started_at=200.0, completed_at=205.0)
    queued = FrozenTrial(2, TrialState.WAITING, intermediate_values={})
    seconds, steps = stopping._budget.search_usage([resumed, exact, queued], History({5: 1.0}, elapsed=2.0))
    assert (seconds, steps) == (37.0, 40 + 12 + 5)
    spent = BudgetStopping(search_max_time=36.0)
    assert spent.decide(History({5: 1.0}, elapsed=2.0, others=(resumed, exact))).reason is Reason.SEARCH_BUDGET


def test_budget_ends_the_search_through_the_runner_hook() -> None:
    study = SimpleNamespace(trials=[done(0, [1.0] * 60), done(1, [1.0] * 30)])
    assert BudgetStopping(search_max_steps=100).scheduler().trial_budget(study, 20) == 20
    assert BudgetStopping(search_max_steps=90).scheduler().trial_budget(study, 20) == 0
    assert BudgetStopping(max_steps=5).scheduler() is None  # no search budget: nothing to schedule


def test_any_of_picks_the_strongest_decision_and_keeps_every_record() -> None:
    class Records:
        def decide(self, history: History) -> StopDecision:
            return StopDecision(attrs={"seen": history.step})

    anyof = AnyOf([Records(), ImprovementStopping(patience=1), ThresholdStopping(threshold=2.0)], monitor="m")
    verdict = anyof.decide(History({1: 1.0, 2: 3.0}))
    assert (verdict.decision, verdict.reason) == (Decision.PRUNE, Reason.THRESHOLD)
    assert verdict.attrs == {"seen": 2}
    assert anyof.decide(History({1: 1.0, 2: 0.5})).decision is Decision.CONTINUE
    assert first_stop(anyof, [1.0, 1.5, 1.2])[0] == 2  # patience 1: no improvement at step 2


def test_all_of_needs_every_policy_and_stores_the_mildest() -> None:
    allof = AllOf([ImprovementStopping(patience=1), ThresholdStopping(threshold=2.0)], monitor="m")
    assert first_stop(allof, [1.0, 1.5, 2.5])[0] == 3
    verdict = allof.decide(History({1: 1.0, 2: 1.5, 3: 2.5}))
    assert verdict.decision is Decision.FINISH
    assert "no improvement" in verdict.message and "bound" in verdict.message


def test_combinators_need_one_metric_and_one_mode() -> None:
    with pytest.raises(ValueError, match="different metrics"):
        AnyOf([ThresholdStopping("a"), ThresholdStopping("b")])
    with pytest.raises(ValueError, match="disagree on the mode"):
        AllOf([ThresholdStopping("a", mode="min"), ThresholdStopping("a", mode="max")])
    with pytest.raises(ValueError, match="non-empty list"):
        AnyOf([])
    with pytest.raises(ValueError, match="not a stopping policy"):
        AnyOf([object()])  # type: ignore[list-item]
    combined = AnyOf([ThresholdStopping("loss"), MedianStopping()])
    assert combined.monitor == "loss" and combined.needs_others and not combined.batch_checks


def test_a_combinator_judges_with_its_own_metric_and_leaves_its_policies_as_they_are() -> None:
    child = ThresholdStopping(threshold=2.0)
    anyof = AnyOf([child], monitor="val_loss")
    verdict = anyof.decide(History({1: 3.0}, metric="val_loss"))
    assert verdict.reason is Reason.THRESHOLD and verdict.message.startswith("val_loss=3")
    assert child.monitor is None  # never rewritten: the history names the metric


def test_schedulers_are_objects_of_their_own_and_combinators_chain_them() -> None:
    assert ImprovementStopping(patience=2).scheduler() is None
    assert AnyOf([ImprovementStopping(patience=2), ThresholdStopping(threshold=1.0)], monitor="m").scheduler() is None
    assert isinstance(ASHA().scheduler(), stopping.Promotions)
    assert ASHA(promotion=False).scheduler() is None  # nothing to promote
    steps_done = FrozenTrial(0, TrialState.COMPLETE, system_attrs={"fw_steps": 95})
    study = SimpleNamespace(trials=[steps_done], mode="min")
    both = AnyOf([ASHA(), BudgetStopping(search_max_steps=90)]).scheduler()
    assert both is not None and both.trial_budget(study, 20) == 0  # the budget is spent: no more claims
    roomy = AnyOf([ASHA(), BudgetStopping(search_max_steps=900)]).scheduler()
    assert roomy.trial_budget(study, 20) == 20  # nothing paused to promote, budget left


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ThresholdStopping("m", threshold=1.0, schedule={0: 1.0}), "threshold or schedule"),
        (lambda: ThresholdStopping("m", schedule={-1: 1.0}), "schedule step"),
        (lambda: ThresholdStopping("m", schedule={}), "non-empty mapping"),
        (lambda: ThresholdStopping("m", threshold=math.nan), "threshold must be a finite number"),
        (lambda: ThresholdStopping("m", grace_steps=-1), "grace_steps"),
        (lambda: ImprovementStopping("m", patience=0), "patience=0"),
        (lambda: ImprovementStopping("m", min_delta=-0.1), "min_delta"),
        (lambda: ImprovementStopping("m", relative="yes"), "relative"),  # type: ignore[arg-type]
        (lambda: MedianStopping("m", min_trials=0), "min_trials"),
        (lambda: MedianStopping("m", statistic="median"), "statistic"),
        (lambda: BudgetStopping(), "at least one budget"),
        (lambda: BudgetStopping(max_time=0), "max_time must be > 0"),
        (lambda: BudgetStopping(max_steps=1.5), "max_steps"),  # type: ignore[arg-type]
        (lambda: ThresholdStopping("m", mode="minimum"), "mode must be 'min' or 'max'"),
        (lambda: ThresholdStopping(""), "monitor must be a non-empty string"),
        (lambda: MedianStopping("m", storage="sqlite:///x.db"), "storage and study go together"),
        (lambda: MedianStopping("m", study="vae"), "storage and study go together"),
        (lambda: ThresholdStopping("m", every_n_train_steps=0), "every_n_train_steps"),
    ],
)
def test_arguments_are_validated(make: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_exports_are_exactly_the_public_api() -> None:
    public = {name for name in dir(stopping) if not name.startswith("_")}
    modules = {"_base", "_budget", "_callback", "_combine", "_halving", "_hyperband", "_improvement", "_median",
               "_promotions", "_rungs", "_script", "_threshold"}
    assert set(stopping.__all__) == public - modules
    import frameworm_lightning

    for name in ("ASHA", "Hyperband", "MedianStopping", "StoppingCallback", "SuccessiveHalving"):
        assert getattr(frameworm_lightning, name, None) is getattr(stopping, name), name


@pytest.mark.parametrize(
    ("policy", "values", "message"),
    [
        # 0.7 is better than 1.0, but by less than min_delta: "no improvement of val_loss over 1" read as a contradiction
        (ImprovementStopping("val_loss", 0.5, 1), {1: 1.0, 2: 0.7},
         "no improvement of val_loss by more than 0.5 over 1 in 1 check (patience 1, step 2)"),
        (ImprovementStopping("val_loss", 0.1, 2, relative=True), {1: 1.0, 2: 0.95, 3: 0.92},
         "no improvement of val_loss by more than 10% over 1 in 2 checks (patience 2, step 3)"),
        (ImprovementStopping("val_loss", patience=1), {1: 1.0, 2: 1.2},
         "no improvement of val_loss over 1 in 1 check (patience 1, step 2)"),
    ],
)
def test_improvement_stopping_says_what_counted_as_an_improvement(policy: ImprovementStopping,
                                                                  values: dict[int, float], message: str) -> None:
    assert policy.decide(History(values, metric="val_loss")).message == message
