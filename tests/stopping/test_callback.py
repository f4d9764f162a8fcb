"""The policies as Lightning callbacks: in a plain Trainer, and inside a SearchRunner."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from frameworm_lightning import GridSampler, MetricNotFoundError, SearchRunner, TrialState, open_storage
from frameworm_lightning.stopping import (
    ASHA,
    AnyOf,
    BudgetStopping,
    Decision,
    ImprovementStopping,
    MedianStopping,
    StoppingCallback,
    SuccessiveHalving,
    ThresholdStopping,
    trained_steps,
)

from ._models import QUIET, CurveModule, fit

NAN = math.nan


def trials(url: str, study: str) -> list[Any]:
    store = open_storage(url)
    return store.get_trials(store.load_study(study).study_id)


# -- In a plain Trainer ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "script", "stop_step"),
    [
        # 8 batches an epoch, a validation every 2: the k-th value is reported at step 2k.
        (ThresholdStopping("val_loss", threshold=0.5), [0.1, 0.2, 0.9, 0.1], 6),
        (ImprovementStopping("val_loss", patience=1), [1.0, 0.99, 0.99], 6),
        (ImprovementStopping("val_loss", patience=2), [1.0, 0.9, 0.95, 0.97], 8),
        (ThresholdStopping("val_loss"), [1.0, 1.0, 1.0, 1.0, NAN], 10),
        (AnyOf([ImprovementStopping(patience=9), ThresholdStopping(threshold=2.0)], monitor="val_loss"),
         [1.0, 0.5, 3.0], 6),
        (ThresholdStopping("val_loss", threshold=0.5), [0.1], None),
    ],
)
def test_stops_at_the_batch_of_the_deciding_validation(policy: StoppingCallback, script: list[float],
                                                       stop_step: int | None) -> None:
    model = CurveModule(script=script)
    trainer = fit(policy, model, val_check_interval=0.25)
    expected = stop_step if stop_step is not None else 3 * 8
    assert trainer.global_step == expected
    assert model.train_batches == expected  # no batch after the stop, even mid-epoch
    assert sorted(policy.state_dict()["values"]) == list(range(2, expected + 1, 2))


def test_checks_every_n_training_batches_on_a_training_metric() -> None:
    policy = ThresholdStopping("train_loss", threshold=10.0, every_n_train_steps=3)
    model = CurveModule(train_script=[1.0, 1.0, 1.0, 1.0, NAN])
    trainer = fit(policy, model)
    assert trainer.global_step == 6  # checks at batches 3 and 6; NaN from batch 5 on
    assert policy.state_dict()["values"].keys() == {3, 6}


def test_a_metric_never_logged_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    policy = ThresholdStopping("val_acc", threshold=1.0, storage=url, study="s")
    with pytest.raises(MetricNotFoundError, match=r"'val_acc' was never logged; logged metrics: .*train_loss.*val_loss"):
        fit(policy, CurveModule())
    [trial] = trials(url, "s")
    assert trial.state is TrialState.FAILED and "MetricNotFoundError" in trial.reason


@pytest.mark.parametrize("stored", [False, True])
def test_a_validation_metric_with_validation_off_says_so(tmp_path: Path, stored: bool) -> None:
    # The error told a user who logs val_loss in validation_step to log it with self.log.
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    policy = (MedianStopping("val_loss", storage=url, study="s") if stored else ImprovementStopping("val_loss"))
    with pytest.raises(MetricNotFoundError, match=r"'val_loss' was never logged; logged metrics: train_loss\. "
                                                  r"limit_val_batches=0 turns validation off; let a validation run"):
        fit(policy, CurveModule(), limit_val_batches=0)
    if stored:
        [trial] = trials(url, "s")
        assert trial.state is TrialState.FAILED and "limit_val_batches=0 turns validation off" in trial.error


def test_per_trial_budget_stops_at_the_exact_step() -> None:
    policy = BudgetStopping(max_steps=11)
    model = CurveModule()
    trainer = fit(policy, model)
    assert trainer.global_step == model.train_batches == 11


def test_policies_that_compare_runs_need_a_storage_without_a_runner() -> None:
    with pytest.raises(ValueError, match=r"storage= and study="):
        fit(MedianStopping("val_loss"), CurveModule())
    with pytest.raises(ValueError, match="needs monitor="):
        fit(ImprovementStopping(), CurveModule())


def test_state_keys_tell_instances_apart() -> None:
    a, b = ImprovementStopping("val_loss", patience=3), ImprovementStopping("val_loss", patience=4)
    assert a.state_key != b.state_key
    assert a.state_key == ImprovementStopping("val_loss", patience=3).state_key
    assert ThresholdStopping("val_loss").state_key.startswith("ThresholdStopping{")
    # several policies in one Trainer
    fit(a, CurveModule(), max_epochs=1, callbacks=[ThresholdStopping("val_loss"), BudgetStopping(max_steps=100)])


def test_resuming_from_a_checkpoint_restores_the_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    first = ImprovementStopping("val_loss", patience=9, storage=url, study="resume")
    fit(first, CurveModule(), max_epochs=1, val_check_interval=0.5, enable_checkpointing=True, callbacks=[ckpt])
    second = ImprovementStopping("val_loss", patience=9, storage=url, study="resume")
    trainer = pl.Trainer(**QUIET, max_epochs=2, val_check_interval=0.5, callbacks=[second],
                         default_root_dir=tmp_path)
    trainer.fit(CurveModule(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert sorted(second.state_dict()["values"]) == [4, 8, 12, 16]
    old, new = trials(url, "resume")
    assert old.state is TrialState.COMPLETE and sorted(old.intermediate_values) == [4, 8]
    assert new.state is TrialState.COMPLETE and new.system_attrs["resumed_from"] == old.number
    assert sorted(new.intermediate_values) == [4, 8, 12, 16]  # the curve carried over
    assert new.system_attrs["fw_start_step"] == 8 and new.system_attrs["fw_steps"] == 8


def test_a_run_resumed_from_a_checkpoint_continues_its_configuration_at_the_rungs(tmp_path: Path) -> None:
    # The resumed run was a new configuration whose first check (epoch 3) recorded rungs 1 and 2
    # with its epoch-3 value, and its interrupted first part still stood at rung 1 as another one.
    from frameworm_lightning.stopping._rungs import configs_of

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    first = ASHA("val_loss", min_resource=1, max_resource=4, eta=2, storage=url, study="halving")
    with pytest.warns(UserWarning, match="max_resource=4 epochs"):  # the run is cut short, as a preemption would
        fit(first, CurveModule(), max_epochs=2, enable_checkpointing=True, callbacks=[ckpt])
    second = ASHA("val_loss", min_resource=1, max_resource=4, eta=2, storage=url, study="halving")
    trainer = pl.Trainer(**{**QUIET, "enable_checkpointing": True}, max_epochs=4, callbacks=[second],
                         default_root_dir=tmp_path)
    trainer.fit(CurveModule(), ckpt_path=str(tmp_path / "last.ckpt"))
    old, new = trials(url, "halving")
    assert new.system_attrs["resumed_from"] == old.number
    assert new.system_attrs["fw_rungs"]["1"] == old.system_attrs["fw_rungs"]["1"]  # the value at epoch 1
    assert new.system_attrs["fw_rungs"]["2"] == old.system_attrs["fw_rungs"]["2"]
    assert new.system_attrs["fw_rungs"]["4"][0] == new.value
    (config,) = configs_of([old, new]).values()  # one configuration, not two
    assert [t.number for t in config.rows] == [old.number, new.number]


def test_a_finished_run_continued_from_its_checkpoint_counts_once_in_the_median(tmp_path: Path) -> None:
    # Continuing a finished run ("train 1 more epoch") stored a second trial with the same curve: the
    # median counted that run twice, so the next run met two "trials" where there was one, and was pruned.
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    fit(MedianStopping("val_loss", min_trials=2, storage=url, study="m"), CurveModule(x=0.0), max_epochs=1,
        enable_checkpointing=True, callbacks=[ckpt])
    trainer = pl.Trainer(**{**QUIET, "enable_checkpointing": True}, max_epochs=2, default_root_dir=tmp_path,
                         callbacks=[MedianStopping("val_loss", min_trials=2, storage=url, study="m")])
    trainer.fit(CurveModule(x=0.0), ckpt_path=str(tmp_path / "last.ckpt"))
    later = MedianStopping("val_loss", min_trials=2, storage=url, study="m")
    fit(later, CurveModule(x=1.0), max_epochs=2)
    first, continued, third = trials(url, "m")
    assert first.system_attrs["resumed_as"] == continued.number and continued.system_attrs["resumed_from"] == 0
    assert third.state is TrialState.COMPLETE, third.reason  # one run to compare with: fewer than min_trials


def test_repeated_runs_of_a_script_are_judged_against_earlier_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"

    def run(x: float) -> pl.Trainer:  # what a user's training script does, run twice
        policy = MedianStopping(monitor="val_loss", min_trials=1, storage=url, study="vae")
        return fit(policy, CurveModule(x=x), val_check_interval=0.5)

    assert run(0.0).global_step == 24
    assert run(0.5).global_step == 4
    first, second = trials(url, "vae")
    assert first.state is TrialState.COMPLETE and first.value == pytest.approx(0.25)
    assert first.params == {"x": 0.0, "script": None, "train_script": None, "batches": 8, "log_val": True,
                            "rank_offset": 0.0, "train_on_epoch": False, "missing_on_rank": None}
    assert second.state is TrialState.PRUNED and second.params["x"] == 0.5
    assert second.value == pytest.approx(0.5 + 1 / 1.5) and "worse than the median" in second.reason
    assert sorted(second.intermediate_values) == [4]
    assert second.system_attrs["fw_stop"] == {"decision": "prune", "reason": "below_median", "step": 4}


def test_each_fit_of_one_callback_is_a_new_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    policy = ThresholdStopping("val_loss", threshold=0.9, storage=url, study="again")
    fit(policy, CurveModule(x=0.0), max_epochs=1)
    fit(policy, CurveModule(x=0.5), max_epochs=1)
    first, second = trials(url, "again")
    assert (first.state, second.state) == (TrialState.COMPLETE, TrialState.PRUNED)
    assert sorted(second.intermediate_values) == [8] and policy.state_dict()["values"] == {8: 1.0}


# -- Inside a SearchRunner --------------------------------------------------------------------
def search(tmp_path: Path, policy: pl.Callback, xs: list[float], n_trials: int | None = None,
           **trainer_kwargs: Any) -> list[Any]:
    runner = SearchRunner(
        metric="val_loss", sampler=GridSampler(), n_trials=n_trials, root_dir=tmp_path, quiet=True,
        save_checkpoints=False, callbacks=[policy],
        trainer_kwargs={"max_epochs": 3, "num_sanity_val_steps": 0, "log_every_n_steps": 1, **trainer_kwargs},
    )
    return runner.fit(CurveModule, {"x": xs}).trials


def test_runner_stores_a_pruned_trial_once_with_its_last_value_and_reason(tmp_path: Path) -> None:
    # val_loss = x + 1 / (1 + epochs); after one epoch x = 0.5 reads 1.0 > 0.9.
    done = search(tmp_path, ThresholdStopping(threshold=0.9), [0.0, 0.5])
    assert [t.state for t in done] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert done[1].value == pytest.approx(1.0) and "bound 0.9" in done[1].reason
    assert done[1].system_attrs["fw_steps"] == 8


@pytest.mark.parametrize(
    ("policy", "reason", "steps"),
    [
        # val_loss = x + 1 / (1 + epochs): 0.5 after one epoch, 0.333 after two, less than min_delta=0.2 better
        (ImprovementStopping(min_delta=0.2, patience=1), "no improvement of val_loss by more than 0.2 over 0.5 in 1 check", 16),
        (BudgetStopping(max_steps=12), "trial budget: step 12 >= max_steps=12", 12),
        (ASHA(min_resource=1, max_resource=2, eta=2, promotion=False), "reached the largest resource, 2 epochs", 16),
    ],
)
def test_runner_stores_why_a_policy_finished_a_trial_early(tmp_path: Path, policy: StoppingCallback, reason: str,
                                                          steps: int) -> None:
    # A FINISH decision stored the trial COMPLETE with no reason: nothing a user sees said why it stopped.
    [done] = search(tmp_path, policy, [0.0])
    assert done.state is TrialState.COMPLETE and trained_steps(done) == steps
    assert done.reason is not None and done.reason.startswith(reason), done.reason
    assert done.system_attrs["fw_stop"]["decision"] == Decision.FINISH.value


def test_a_script_run_a_policy_finished_early_is_stored_complete_with_why(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    fit(ImprovementStopping("val_loss", patience=1, storage=url, study="script"), CurveModule(script=[1.0, 1.5]))
    [run] = trials(url, "script")
    assert run.state is TrialState.COMPLETE and run.value == 1.5
    assert run.reason == "no improvement of val_loss over 1 in 1 check (patience 1, step 16)"


def test_runner_search_budget_ends_the_search_cleanly(tmp_path: Path) -> None:
    # 24 steps per trial; the budget of 30 steps is crossed 6 steps into the second trial.
    done = search(tmp_path, BudgetStopping(search_max_steps=30), [0.0, 0.1, 0.2, 0.3], val_check_interval=0.25)
    assert [t.state for t in done] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert "search budget spent" in done[1].reason and trained_steps(done[1]) == 6


def test_runner_successive_halving_continues_promoted_trials(tmp_path: Path) -> None:
    xs = [0.0, 0.4, 0.8, 0.3, 0.7, 0.2, 0.6, 0.1, 0.5]
    done = search(tmp_path, SuccessiveHalving(min_resource=1, max_resource=9, eta=3), xs, max_epochs=100)
    # 9 configs for 1 epoch, 3 more for 2 epochs, 1 for 6 more: 21 epochs of 8 steps.
    assert sum(trained_steps(t) for t in done) == 21 * 8
    assert [t.params["x"] for t in done if t.state is TrialState.COMPLETE] == [0.0]
    promoted = [t for t in done if "promoted_from" in t.system_attrs]
    # x=0.5 came last and was cut; it promoted the best three (0.0, 0.1, 0.2) of the complete rung
    assert [t.params["x"] for t in promoted] == [0.0, 0.1, 0.2, 0.0]
    for child in promoted:
        parent = done[child.system_attrs["promoted_from"]]
        assert child.system_attrs["resume_checkpoint"] == parent.system_attrs["fw_checkpoint_removed"]
        # the child picked up at its parent's last step: no epoch was trained twice
        assert min(child.intermediate_values) == max(parent.intermediate_values) + 8
    final = next(t for t in done if t.state is TrialState.COMPLETE)
    assert max(final.intermediate_values) == 9 * 8  # SuccessiveHalving capped max_epochs=100 at 9


def test_runner_promotes_for_a_halving_policy_inside_a_combinator(tmp_path: Path) -> None:
    # The combinator's scheduler is ASHA's: paused configs are promoted and one reaches 9 epochs;
    # the threshold (val_loss = x + 1 / (1 + epochs) > 1.25) prunes x=0.8 after its first epoch.
    xs = [0.0, 0.4, 0.8, 0.3, 0.7, 0.2, 0.6, 0.1, 0.5]
    policy = AnyOf([ASHA(min_resource=1, max_resource=9, eta=3), ThresholdStopping(threshold=1.25)])
    done = search(tmp_path, policy, xs, max_epochs=100)
    promoted = [t for t in done if "promoted_from" in t.system_attrs]
    assert promoted and all(done[t.system_attrs["promoted_from"]].params == t.params for t in promoted)
    assert [t.params["x"] for t in done if t.state is TrialState.COMPLETE] == [0.0]
    assert max(next(t for t in done if t.state is TrialState.COMPLETE).intermediate_values) == 9 * 8
    cut = next(t for t in done if t.params["x"] == 0.8)
    assert cut.state is TrialState.PRUNED and "bound 1.25" in cut.reason


def test_runner_promotes_for_a_halving_policy_given_in_the_trainers_own_callbacks(tmp_path: Path) -> None:
    # trainer_kwargs={"callbacks": [ASHA(...)]}, as for a plain Trainer: every trial used to pause and
    # none was ever promoted (the search ended with no complete trial).
    xs = [0.0, 0.4, 0.8, 0.3, 0.7, 0.2, 0.6, 0.1, 0.5]
    runner = SearchRunner(
        metric="val_loss", sampler=GridSampler(), n_trials=None, root_dir=tmp_path, quiet=True,
        save_checkpoints=False,
        trainer_kwargs={"max_epochs": 100, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                        "callbacks": [ASHA(min_resource=1, max_resource=9, eta=3)]},
    )
    result = runner.fit(CurveModule, {"x": xs})
    assert [t.params["x"] for t in result.trials if t.state is TrialState.COMPLETE] == [0.0]
    assert result.best_params == {"x": 0.0}
    assert any("promoted_from" in t.system_attrs for t in result.trials)


def test_runner_asha_on_steps_pauses_and_resumes_mid_epoch(tmp_path: Path) -> None:
    # Rungs at 4, 12 and 36 steps, a validation every 4: pauses land mid-epoch.
    xs = [0.0, 0.4, 0.8, 0.3, 0.7, 0.2, 0.6, 0.1, 0.5]
    policy = ASHA(min_resource=4, max_resource=36, eta=3, resource="steps")
    done = search(tmp_path, policy, xs, val_check_interval=0.5, max_epochs=100)
    assert sum(trained_steps(t) for t in done) == 9 * 4 + 3 * 8 + 1 * 24
    assert [(t.params["x"], t.system_attrs.get("promoted_from")) for t in done if t.state is TrialState.COMPLETE] == [
        (0.0, 3)
    ]
    paused = [t for t in done if t.state is TrialState.PRUNED]
    assert all(t.reason.startswith("paused") for t in paused)
    assert {t.system_attrs["fw_stop"]["decision"] for t in paused} == {Decision.PAUSE.value}


def test_a_check_reads_only_what_changed_since_the_last_one(tmp_path: Path) -> None:
    from frameworm_lightning import RandomSampler, Real, Study

    study = Study.create("reads", {"x": Real(0, 1)}, metric="val_loss", sampler=RandomSampler(seed=0),
                         storage=f"sqlite:///{tmp_path / 'reads.db'}")
    done, running, me = study.ask(), study.ask(), study.ask()
    done.report(1, 0.5)
    done.complete(0.5)
    running.report(1, 0.7)
    policy = MedianStopping()
    policy.bind_trial(me)
    first = {t.number: t for t in policy._others()}  # the read each check makes (private: no public hook reads it)
    assert set(first) == {done.number, running.number}
    # After the first read, a finished trial's row is not read again; running and new trials are.
    study.storage.set_trial_attr(done.trial_id, "touched", True, system=True)
    running.report(2, 0.6)
    new = study.ask()
    again = {t.number: t for t in policy._others()}
    assert set(again) == {done.number, running.number, new.number}
    assert "touched" not in again[done.number].system_attrs
    assert again[running.number].intermediate_values == {1: 0.7, 2: 0.6}
    assert again[done.number].intermediate_values == {1: 0.5} and again[done.number].value == 0.5
