"""The Trainer arguments and callbacks users pass every day, through ``SearchRunner``.

One table: each row is a setting (in ``trainer_kwargs``, or a callback), run as a
two-trial grid on the tiny regression (4 training batches of 16 a epoch, one validation
batch), and what must hold afterwards. Every row runs inline in well under a second a trial.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from frameworm_lightning import (
    ASHA,
    FramewormError,
    GridSampler,
    Hyperband,
    MetricNotFoundError,
    SearchRunner,
    Study,
    TrialState,
)
from frameworm_lightning.stopping import AnyOf, ThresholdStopping
from frameworm_lightning.result import SearchResult

from ._modules import LineData, OwnData, Regression

BASE = {"max_epochs": 3, "logger": False}
SPACE = {"lr": [0.05, 0.2]}


def run(tmp_path: Path, trainer: dict[str, Any] | None = None, **kw: Any) -> SearchResult:
    kw.setdefault("root_dir", tmp_path)
    kw.setdefault("quiet", True)
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None,
                          trainer_kwargs={**BASE, **(trainer or {})}, **kw)
    return runner.fit(Regression, SPACE, datamodule=LineData)


def ckpts(result: SearchResult, number: int) -> list[Path]:
    return sorted(Path(result.trials[number].system_attrs["trial_dir"]).rglob("*.ckpt"))


# Checks: each takes the result (both trials already asserted COMPLETE) ----------------------
def steps(*expected: int) -> Callable[[SearchResult], None]:
    def check(result: SearchResult) -> None:
        for t in result.trials:
            assert sorted(t.intermediate_values) == list(expected), t.intermediate_values
    return check


def our_checkpoint(result: SearchResult) -> None:
    best = result.best_trial
    assert result.best_checkpoint == str(Path(best.system_attrs["trial_dir"]) / "checkpoints" / "best.ckpt")
    assert Path(result.best_checkpoint).is_file()
    assert type(result.load_best_model(Regression)) is Regression


def no_checkpoint(result: SearchResult) -> None:
    assert result.best_checkpoint is None
    assert ckpts(result, 0) == [] and ckpts(result, 1) == []
    with pytest.raises(FramewormError, match=r"enable_checkpointing=False"):
        result.load_best_model(Regression)


def theirs_reused(result: SearchResult) -> None:
    """The user's ModelCheckpoint watches the search metric: it is the trial's best checkpoint, no second file."""
    for n in (0, 1):
        (only,) = ckpts(result, n)
        assert result.trials[n].system_attrs["checkpoint_path"] == str(only)
    assert type(result.load_best_model(Regression)) is Regression


def beside_theirs(result: SearchResult) -> None:
    """The user's ModelCheckpoint watches something else: ours sits beside it."""
    our_checkpoint(result)
    names = sorted(p.name for p in ckpts(result, 0))
    assert "best.ckpt" in names and "last.ckpt" in names, names


def stopped_early(result: SearchResult) -> None:
    # patience=0 and min_delta=10: the second validation never improves enough, so it stops there, and the
    # trial says why (it was stored COMPLETE with no reason: nothing told it from a trial that ran to the end).
    for t in result.trials:
        assert sorted(t.intermediate_values) == [4, 8]
        assert t.reason is not None and t.reason.startswith("EarlyStopping: Monitored metric val_loss did not improve"), t
        assert not t.reason.endswith("Signaling Trainer to stop.")


def lr_logged(result: SearchResult) -> None:
    for t in result.trials:
        rows = list(csv.DictReader(open(Path(t.system_attrs["trial_dir"]) / "metrics.csv")))
        lrs = {float(r["lr-SGD"]) for r in rows if r.get("lr-SGD")}
        assert lrs == {t.params["lr"]}


def nothing_logged(result: SearchResult) -> None:
    for t in result.trials:
        assert not list(Path(t.system_attrs["trial_dir"]).rglob("metrics.csv"))


def reproducible(result: SearchResult) -> None:
    again = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, quiet=True, storage="memory",
                         root_dir=Path(result.trials[0].system_attrs["trial_dir"]).parents[1] / "again",
                         trainer_kwargs={**BASE, "deterministic": True}).fit(Regression, SPACE, datamodule=LineData)
    assert [t.value for t in again.trials] == [t.value for t in result.trials]


def nothing_stored(result: SearchResult) -> None:
    # fast_dev_run: one batch each, and the study is not kept (a debug run never pollutes it).
    for t in result.trials:
        assert sorted(t.intermediate_values) == [1]
    assert result.study.storage.is_memory


@dataclass
class Case:
    id: str
    trainer: dict[str, Any] = field(default_factory=dict)
    check: Callable[[SearchResult], None] = our_checkpoint
    runner: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("defaults", {}, our_checkpoint),
    Case("enable_checkpointing=False", {"enable_checkpointing": False}, no_checkpoint),
    Case("ModelCheckpoint(val_loss) in trainer callbacks",
         {"callbacks": [ModelCheckpoint(monitor="val_loss", mode="min")]}, theirs_reused),
    Case("ModelCheckpoint(val_loss) in runner callbacks", {}, theirs_reused,
         {"callbacks": [ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1)]}),
    Case("ModelCheckpoint(train_loss, save_last) beside ours",
         {"callbacks": [ModelCheckpoint(monitor="train_loss", save_last=True)]}, beside_theirs),
    Case("ModelCheckpoint(val_loss, filename) reused",
         {"callbacks": [ModelCheckpoint(monitor="val_loss", filename="{epoch}-{val_loss:.3f}")]}, theirs_reused),
    Case("EarlyStopping", {"callbacks": [EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)]},
         stopped_early),
    Case("LearningRateMonitor", {"logger": None, "callbacks": [LearningRateMonitor()]}, lr_logged),
    # Stops at step 6, mid-epoch: the last validation ran at step 4.
    Case("max_steps", {"max_epochs": -1, "max_steps": 6}, steps(4)),
    Case("limit_train_batches/limit_val_batches", {"limit_train_batches": 2, "limit_val_batches": 1}, steps(2, 4, 6)),
    Case("accumulate_grad_batches", {"accumulate_grad_batches": 2}, steps(2, 4, 6)),
    Case("val_check_interval", {"val_check_interval": 0.5}, steps(2, 4, 6, 8, 10, 12)),
    Case("check_val_every_n_epoch", {"max_epochs": 4, "check_val_every_n_epoch": 2}, steps(8, 16)),
    Case("precision=bf16-mixed", {"precision": "bf16-mixed"}, steps(4, 8, 12)),
    Case("precision=64-true", {"precision": "64-true"}, our_checkpoint),
    Case("logger=False", {"logger": False}, nothing_logged),
    Case("deterministic", {"deterministic": True}, reproducible),
    Case("fast_dev_run", {"fast_dev_run": True}, nothing_stored),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_trials_complete_with_the_setting(tmp_path: Path, case: Case) -> None:
    result = run(tmp_path, case.trainer, **case.runner)
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2, [t.error for t in result.trials]
    assert result.best_trial is not None
    case.check(result)


def test_enable_checkpointing_false_with_a_model_checkpoint_stops_at_the_first_trial(tmp_path: Path) -> None:
    """Lightning refuses this Trainer: a configuration error every trial would hit, so the search stops."""
    with pytest.raises(FramewormError, match=r"enable_checkpointing=False.*ModelCheckpoint"):
        run(tmp_path, {"enable_checkpointing": False, "callbacks": [ModelCheckpoint(monitor="val_loss")]})
    study = Study.load("Regression", f"sqlite:///{tmp_path / 'frameworm.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAILED]


@pytest.mark.parametrize("policy", [
    lambda: ASHA("val_loss", min_resource=1, max_resource=3),
    lambda: Hyperband("val_loss", min_resource=1, max_resource=3),
    lambda: AnyOf([ASHA(min_resource=1, max_resource=3), ThresholdStopping(threshold=9.0)]),
], ids=["ASHA", "Hyperband", "ASHA-in-AnyOf"])
def test_promotions_refuse_enable_checkpointing_false_before_any_trial(tmp_path: Path, policy: Any) -> None:
    with pytest.raises(ValueError, match=r"enable_checkpointing=False.*promotion=False"):
        run(tmp_path, {"enable_checkpointing": False}, callbacks=[policy()])
    assert not (tmp_path / "Regression").exists(), "no trial ran"


def test_a_model_checkpoint_with_its_own_dirpath_is_not_taken_as_the_trials_checkpoint(tmp_path: Path) -> None:
    """Its folder is shared by every trial (files of one trial can replace another's): ours sits beside it."""
    shared = tmp_path / "shared"
    result = run(tmp_path, {"callbacks": [ModelCheckpoint(dirpath=shared, monitor="val_loss")]})
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2
    our_checkpoint(result)
    assert list(shared.glob("*.ckpt"))


def test_halving_without_promotion_runs_with_enable_checkpointing_false(tmp_path: Path) -> None:
    result = run(tmp_path, {"enable_checkpointing": False},
                 callbacks=[ASHA("val_loss", min_resource=1, max_resource=3, promotion=False)])
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in result.trials)
    assert ckpts(result, 0) == [] and ckpts(result, 1) == []


def test_one_callback_given_as_trainer_callbacks_runs_in_each_trial(tmp_path: Path) -> None:
    # Trainer(callbacks=cb) takes one callback as well as a list; so do trainer_kwargs.
    from lightning.pytorch.callbacks import Callback

    class Marks(Callback):
        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            Path(trainer.default_root_dir, "marked").write_text("yes")

    result = run(tmp_path, {"callbacks": Marks()})
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2
    assert all(Path(t.system_attrs["trial_dir"], "marked").is_file() for t in result.trials)


@pytest.mark.parametrize(("trainer", "why"), [
    ({"limit_val_batches": 0}, r"limit_val_batches=0 turns validation off"),
    ({"max_epochs": 1, "check_val_every_n_epoch": 2}, r"No validation ran before training ended \(max_epochs=1, "
                                                      r"max_steps=-1, check_val_every_n_epoch=2"),
    ({"max_steps": 2}, r"No validation ran before training ended \(max_epochs=3, max_steps=2,"),  # 4 batches an epoch
], ids=["limit_val_batches=0", "check_val_every_n_epoch>max_epochs", "max_steps<an epoch"])
def test_a_validation_metric_with_no_validation_says_that_validation_never_ran(tmp_path: Path, trainer: dict[str, Any],
                                                                               why: str) -> None:
    # The error said only "metric 'val_loss' was never logged" while the module logs it.
    with pytest.raises(MetricNotFoundError, match=r"metric 'val_loss' was never logged; logged metrics: train_loss\. "
                                                  + why):
        run(tmp_path, trainer)
    (t,) = Study.load("Regression", f"sqlite:///{tmp_path / 'frameworm.db'}").trials
    assert re.search(why, t.error)


@pytest.mark.parametrize("theirs", [True, False], ids=["their ModelCheckpoint", "ours"])
def test_the_best_checkpoint_is_an_absolute_path_with_a_relative_root_dir(tmp_path: Path, monkeypatch: Any,
                                                                         theirs: bool) -> None:
    # With the user's own ModelCheckpoint and root_dir="runs", best_checkpoint was "runs/Regression/...":
    # Regression.load_from_checkpoint(result.best_checkpoint) failed from any other folder.
    monkeypatch.chdir(tmp_path)
    callbacks = [ModelCheckpoint(monitor="val_loss", save_top_k=1)] if theirs else []
    result = run(tmp_path, {"callbacks": callbacks}, root_dir="runs")
    assert all(Path(t.system_attrs["checkpoint_path"]).is_absolute() for t in result.trials)
    monkeypatch.chdir(tmp_path / "runs")
    model = Regression.load_from_checkpoint(result.best_checkpoint)
    assert model.hparams.lr == result.best_params["lr"]


def test_check_val_every_n_epoch_with_the_modules_own_dataloaders(tmp_path: Path) -> None:
    # Without a sanity check Lightning loads the validation dataloader at the first validation, so after the
    # first epoch there was none: the reporter took the module for one without a validation loop, and every
    # trial FAILED with "metric 'val_loss' was never logged".
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, root_dir=tmp_path, quiet=True,
                          trainer_kwargs={**BASE, "max_epochs": 4, "check_val_every_n_epoch": 2,
                                          "num_sanity_val_steps": 0})
    result = runner.fit(OwnData, SPACE)
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2, [t.error for t in result.trials]
    assert [sorted(t.intermediate_values) for t in result.trials] == [[8, 16], [8, 16]]
