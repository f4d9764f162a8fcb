"""What a Lightning user expects of ``EarlyStopping``, from every policy.

The argument order, ``stopped_epoch``/``wait_count``/``best_score``/``stopping_reason``,
``verbose``/``strict``/``check_finite``/``check_on_train_epoch_end``, epoch-level training
metrics, ``fast_dev_run``, and several storage-backed policies in one Trainer.
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from frameworm_lightning import MetricNotFoundError, TrialState, open_storage
from frameworm_lightning.stopping import (
    ASHA,
    AnyOf,
    ImprovementStopping,
    MedianStopping,
    Reason,
    StoppingCallback,
    ThresholdStopping,
)

from ._models import CurveModule, fit

NAN = math.nan


def test_positional_arguments_follow_early_stopping() -> None:
    policy = ImprovementStopping("val_loss", 0.01, 3)
    assert (policy.monitor, policy.min_delta, policy.patience) == ("val_loss", 0.01, 3)
    ours = list(inspect.signature(ImprovementStopping).parameters)[:7]
    assert ours == list(inspect.signature(EarlyStopping).parameters)[:7]
    assert ours == ["monitor", "min_delta", "patience", "verbose", "mode", "strict", "check_finite"]


# 8 batches an epoch, a validation every 4: the k-th value (from 0) is read at step 4 (k + 1),
# in epoch k // 2.
@pytest.mark.parametrize(
    ("policy", "script", "stopped_epoch", "reason", "best", "wait"),
    [
        (ImprovementStopping("val_loss", 0.0, 2), [1.0, 0.9, 0.95, 0.97], 1, Reason.NO_IMPROVEMENT, 0.9, 2),
        (ImprovementStopping("val_loss", 0.2, 1), [1.0, 0.9], 0, Reason.NO_IMPROVEMENT, 0.9, 1),
        (ImprovementStopping("val_loss", 0.0, 5), [1.0, NAN], 0, Reason.NON_FINITE, 1.0, 1),
        (ThresholdStopping("val_loss", threshold=0.5), [0.1, 0.2, 0.9], 1, Reason.THRESHOLD, 0.1, None),
        (AnyOf([ImprovementStopping(patience=9), ThresholdStopping(threshold=2.0)], monitor="val_loss"),
         [1.0, 0.5, 0.4, 0.3, 3.0], 2, Reason.THRESHOLD, 0.3, None),
        (ImprovementStopping("val_loss", 0.0, 9), [1.0, 0.9, 0.8], 0, Reason.NONE, 0.8, 3),  # 0.8 repeats
    ],
)
def test_a_stopped_run_says_when_and_why(policy: StoppingCallback, script: list[float], stopped_epoch: int,
                                         reason: Reason, best: float, wait: int | None,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="frameworm_lightning")
    fit(policy, CurveModule(script=script), val_check_interval=0.5)
    assert policy.stopped_epoch == stopped_epoch
    assert policy.stopping_reason is reason
    assert policy.best_score == pytest.approx(best)
    if wait is not None:
        assert policy.wait_count == wait
    said = [r.getMessage() for r in caplog.records if "stopped training" in r.getMessage()]
    if reason is Reason.NONE:
        assert policy.stopping_reason_message is None and said == []
    else:
        assert policy.stopping_reason_message and policy.stopping_reason_message in said[0]
        assert f"at epoch {stopped_epoch}" in said[0]
        state = policy.state_dict()
        assert (state["stopped_epoch"], state["stopping_reason"]) == (stopped_epoch, reason.value)
        again = type(policy).__new__(type(policy))
        StoppingCallback.__init__(again, "val_loss")
        again.load_state_dict(state)
        assert (again.stopped_epoch, again.stopping_reason, again.best_score) == (stopped_epoch, reason, policy.best_score)


def test_verbose_logs_every_check_on_rank_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="frameworm_lightning")
    fit(ImprovementStopping("val_loss", 0.0, 9, verbose=True), CurveModule(script=[1.0, 0.9, 0.8]), max_epochs=1,
        val_check_interval=0.5)
    assert sum("training goes on" in r.getMessage() for r in caplog.records) == 2
    caplog.clear()
    fit(ImprovementStopping("val_loss", 0.0, 9), CurveModule(script=[1.0, 0.9, 0.8]), max_epochs=1,
        val_check_interval=0.5)
    assert not [r for r in caplog.records if r.name.startswith("frameworm_lightning")]


def test_strict_false_skips_a_missing_metric() -> None:
    policy = ThresholdStopping("val_acc", threshold=0.0, strict=False, verbose=True)
    with pytest.warns(RuntimeWarning, match="'val_acc' was never logged"):
        trainer = fit(policy, CurveModule())
    assert trainer.global_step == 24 and policy.stopping_reason is Reason.NONE
    with pytest.raises(MetricNotFoundError):
        fit(ThresholdStopping("val_acc", threshold=0.0), CurveModule())


@pytest.mark.parametrize(
    ("policy", "stop_step", "reason"),
    [
        (ImprovementStopping("val_loss", 0.0, 3, check_finite=False), 16, Reason.NO_IMPROVEMENT),
        (ImprovementStopping("val_loss", 0.0, 3), 8, Reason.NON_FINITE),
        (ThresholdStopping("val_loss", check_finite=False), 24, Reason.NONE),
        (ThresholdStopping("val_loss", threshold=5.0, check_finite=False), 8, Reason.THRESHOLD),
    ],
)
def test_check_finite(policy: StoppingCallback, stop_step: int, reason: Reason) -> None:
    trainer = fit(policy, CurveModule(script=[1.0, NAN]), val_check_interval=0.5)
    assert (trainer.global_step, policy.stopping_reason) == (stop_step, reason)


@pytest.mark.parametrize(
    "trainer_kwargs",
    [
        {},  # validation once per epoch: checked at the train epoch end, as EarlyStopping does
        {"limit_val_batches": 0},  # no validation loop at all
        {"val_check_interval": 0.5, "check_on_train_epoch_end": True},  # asked for explicitly
    ],
)
def test_epoch_level_training_metrics_are_checked_at_the_train_epoch_end(trainer_kwargs: dict[str, Any]) -> None:
    kwargs = dict(trainer_kwargs)
    policy = ImprovementStopping("train_loss_epoch", 0.0, 1,
                                 check_on_train_epoch_end=kwargs.pop("check_on_train_epoch_end", None))
    # the epoch means are 1.0, 0.5, 0.5, ...: no improvement at the end of the third epoch
    model = CurveModule(train_script=[1.0] * 8 + [0.5] * 8, train_on_epoch=True)
    trainer = fit(policy, model, max_epochs=6, **kwargs)
    assert trainer.global_step == 24 and policy.stopped_epoch == 2
    assert policy.state_dict()["values"] == {8: 1.0, 16: 0.5, 24: 0.5}


def test_lightning_calls_only_the_policys_own_hooks() -> None:
    # A policy is an EarlyStopping to Lightning (see the next test), without its state:
    # every hook and property Lightning uses on a callback is the policy's own.
    used = [name for name in vars(EarlyStopping) if name in vars(Callback)]
    assert {"setup", "on_train_epoch_end", "on_validation_end", "state_dict", "load_state_dict", "state_key"} <= set(used)
    for name in used:
        assert getattr(StoppingCallback, name) is not getattr(EarlyStopping, name), name
    assert all(isinstance(p, EarlyStopping) for p in (ImprovementStopping("x"), MedianStopping("x"), ASHA("x")))


class EpochEndModule(CurveModule):
    """Logs ``late`` in its own ``on_train_epoch_end``: 1.0, 0.5, then 0.5 again (no improvement)."""

    def on_train_epoch_end(self) -> None:
        self.log("late", torch.tensor([1.0, 0.5, 0.5, 0.5][min(self.current_epoch, 3)]))


@pytest.mark.parametrize("policy", [
    EarlyStopping("late", 0.0, 1),
    ImprovementStopping("late", 0.0, 1),
    AnyOf([ImprovementStopping(patience=1), ThresholdStopping(threshold=9.0)], monitor="late"),
], ids=["EarlyStopping", "ImprovementStopping", "AnyOf"])
def test_a_metric_the_module_logs_in_its_own_epoch_end_hook_is_checked_after_it(policy: Any) -> None:
    # Lightning calls EarlyStopping (and checkpoints) after the module's on_train_epoch_end;
    # every policy is checked there too, so it sees the value the module just logged.
    trainer = fit(policy, EpochEndModule(), max_epochs=6, limit_val_batches=0)
    assert trainer.global_step == 24 and policy.stopped_epoch == 2


def test_fast_dev_run_is_never_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    fit(ThresholdStopping("val_loss", threshold=0.1, storage=url, study="debug"), CurveModule(), fast_dev_run=True)
    store = open_storage(url)
    study = store.load_study("debug")
    assert study is None or store.get_trials(study.study_id) == []


def test_two_storage_backed_policies_store_one_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    policies = [ImprovementStopping("val_loss", 0.0, 9, storage=url, study="one"),
                ThresholdStopping("val_loss", threshold=0.5, storage=url, study="one"),
                MedianStopping("val_loss", min_trials=1, storage=url, study="one")]
    trainer = fit(policies[0], CurveModule(script=[0.3, 0.4, 0.9]), val_check_interval=0.5, callbacks=policies[1:])
    assert trainer.global_step == 12
    store = open_storage(url)
    [trial] = store.get_trials(store.load_study("one").study_id)
    assert trial.state is TrialState.PRUNED and "bound 0.5" in trial.reason
    assert trial.intermediate_values == pytest.approx({4: 0.3, 8: 0.4, 12: 0.9})
    assert trial.system_attrs["fw_stop"]["reason"] == "threshold" and trial.system_attrs["fw_steps"] == 12
    # a second run: still one trial per run, judged against the first
    fit(ImprovementStopping("val_loss", 0.0, 9, storage=url, study="one"), CurveModule(script=[0.2]), max_epochs=1,
        callbacks=[ThresholdStopping("val_loss", threshold=0.5, storage=url, study="one")])
    assert [t.state for t in store.get_trials(store.load_study("one").study_id)] == [TrialState.PRUNED,
                                                                                      TrialState.COMPLETE]


@pytest.mark.parametrize("val_check_interval", [1.0, 0.5])
def test_every_n_train_steps_checks_only_there(val_check_interval: float) -> None:
    policy = ThresholdStopping("train_loss", threshold=10.0, every_n_train_steps=3)
    fit(policy, CurveModule(train_script=[1.0]), max_epochs=2, val_check_interval=val_check_interval)
    assert sorted(policy.state_dict()["values"]) == [3, 6, 11, 14]  # never at a validation (steps 4, 8, 12, 16)
