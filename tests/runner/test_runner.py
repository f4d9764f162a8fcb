"""SearchRunner end to end with a tiny LightningModule on CPU."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from frameworm_lightning import (
    ConfigKeyError,
    GridSampler,
    MetricNotFoundError,
    RandomSampler,
    Real,
    SearchRunner,
    Study,
    StudyMismatchError,
    TrialFailed,
    TrialState,
)

from ._modules import Config, Configured, EpochLogged, LineData, NeedsWidth, Nested, Optim, Regression

FAST = {"max_epochs": 3, "enable_progress_bar": False, "enable_model_summary": False, "logger": False}


def runner(tmp_path, **kw):
    kw.setdefault("trainer_kwargs", FAST)
    kw.setdefault("root_dir", tmp_path)
    kw.setdefault("quiet", True)
    kw.setdefault("metric", "val_loss")
    return SearchRunner(mode="min", **kw)


def test_finds_the_best_learning_rate_and_stores_everything(tmp_path, capsys):
    result = runner(tmp_path, sampler=GridSampler(), n_trials=None, quiet=False,
                    trainer_kwargs={**FAST, "logger": None}).fit(
        Regression, {"lr": [0.001, 0.01, 0.3], "data.batch_size": [8, 32]}, datamodule=LineData
    )
    assert len(result.trials) == 6 and all(t.state is TrialState.COMPLETE for t in result.trials)
    assert result.best_params == {"lr": 0.3, "data.batch_size": 8}
    by_lr = {}
    for t in result.trials:
        by_lr.setdefault(t.params["lr"], []).append(t.value)
    assert max(by_lr[0.3]) < min(by_lr[0.01]) < min(by_lr[0.001])
    assert result.best_score == min(t.value for t in result.trials)
    # Every validation reported, keyed by global step: 3 epochs of 8 (bs 8) or 2 (bs 32) batches.
    steps = {t.params["data.batch_size"]: sorted(t.intermediate_values) for t in result.trials}
    assert steps[8] == [8, 16, 24] and steps[32] == [2, 4, 6]
    best_dir = tmp_path / "Regression" / f"trial_{result.best_trial.number:04d}"
    assert result.best_checkpoint == str(best_dir / "checkpoints" / "best.ckpt")
    assert (best_dir / "checkpoints" / "best.ckpt").is_file()
    out = capsys.readouterr().out
    assert out.count("COMPLETE") == 6 and "best=" in out and "lr=0.3" in out
    assert (tmp_path / "frameworm.db").is_file()


def test_trainer_keys_route_to_the_trainer(tmp_path):
    result = runner(tmp_path, sampler=GridSampler(), n_trials=None).fit(
        Regression, {"trainer.max_epochs": [1, 2]}, datamodule=LineData
    )
    assert sorted(max(t.intermediate_values) for t in result.trials) == [4, 8]


def test_failing_and_nan_trials_are_recorded_and_the_search_goes_on(tmp_path):
    result = runner(tmp_path, sampler=GridSampler(), n_trials=None).fit(
        Regression, {"fail": [False, True], "nan": [False, True]}, datamodule=LineData
    )
    by = {(t.params["fail"], t.params["nan"]): t for t in result.trials}
    assert by[(False, False)].state is TrialState.COMPLETE
    crashed = by[(True, False)]
    assert crashed.state is TrialState.FAILED and "RuntimeError: this configuration crashes" in crashed.error
    assert "Traceback" in crashed.error
    diverged = by[(False, True)]
    assert diverged.state is TrialState.FAILED and "diverged" in diverged.error
    assert result.best_trial.params == {"fail": False, "nan": False}


def test_stop_on_error(tmp_path):
    with pytest.raises(TrialFailed, match="this configuration crashes"):
        runner(tmp_path, sampler=GridSampler(), n_trials=None, stop_on_error=True).fit(
            Regression, {"fail": [True, False]}, datamodule=LineData
        )


def test_a_wrong_metric_name_stops_the_search_at_the_first_trial_listing_logged_metrics(tmp_path):
    with pytest.raises(MetricNotFoundError, match=r"metric 'val_loss' was never logged; logged metrics: "
                                                  r"train_loss, valid/loss"):
        runner(tmp_path, n_trials=4).fit(
            Regression, {"lr": Real(0.01, 0.1)}, datamodule=LineData, model_kwargs={"log_metric": "valid/loss"}
        )
    (t,) = Study.load("Regression", f"sqlite:///{tmp_path / 'frameworm.db'}").trials
    assert t.state is TrialState.FAILED
    assert "metric 'val_loss' was never logged" in t.error and "valid/loss" in t.error and "train_loss" in t.error


def test_a_config_error_before_the_first_step_stops_the_search(tmp_path):
    # (A misspelt model_kwargs key, the example here before, is now refused before the study is stored.)
    with pytest.raises(TrialFailed, match=r"trial 0 failed: TypeError: '<' not supported between instances of 'str'"):
        runner(tmp_path, n_trials=4).fit(Regression, {"hidden": [2, 4]}, datamodule=LineData,
                                         model_kwargs={"lr": "fast"})
    assert len(Study.load("Regression", f"sqlite:///{tmp_path / 'frameworm.db'}").trials) == 1


def test_a_lightning_misconfiguration_before_the_first_step_stops_the_search(tmp_path):
    from lightning.pytorch.callbacks import LearningRateMonitor

    with pytest.raises(TrialFailed, match=r"MisconfigurationException: Cannot use `LearningRateMonitor`"):
        runner(tmp_path, n_trials=4, trainer_kwargs={**FAST, "callbacks": [LearningRateMonitor()]}).fit(
            Regression, {"lr": Real(0.01, 0.1)}, datamodule=LineData)


@pytest.mark.parametrize(
    "space, model_kwargs",
    [
        ({"log_metric": ["val_loss", "other"]}, {}),  # the metric exists: this config does not log it
        ({"trainer.accumulate_grad_batches": [1, 0]}, {}),  # a config error of this config only
        ({"fail": [True, False]}, {}),  # a crash in training: the trial's own error, even first
    ],
    ids=["missing metric after a complete trial", "config error after a complete trial", "crash in training"],
)
def test_failures_of_one_config_fail_that_trial_only(tmp_path, space, model_kwargs):
    result = runner(tmp_path, sampler=GridSampler(), n_trials=None).fit(Regression, space, datamodule=LineData,
                                                                          model_kwargs=model_kwargs)
    assert sorted(t.state.value for t in result.trials) == ["COMPLETE", "FAILED"]


@pytest.mark.parametrize(
    "space, datamodule, match",
    [
        ({"learning_rate": [0.1]}, LineData, r"'learning_rate' is not an argument of Regression; valid: model.fail, "),
        ({"data.bs": [1]}, LineData, r"'data.bs' is not an argument of LineData; valid: data.batch_size, data.n"),
        ({"trainer.max_epoch": [1]}, LineData, r"'trainer.max_epoch' is not an argument of Trainer"),
        ({"data.batch_size": [8]}, LineData(), r"pass the datamodule as a class"),
    ],
)
def test_unknown_keys_are_rejected_before_training(tmp_path, space, datamodule, match):
    with pytest.raises(ConfigKeyError, match=match):
        runner(tmp_path, n_trials=1).fit(Regression, space, datamodule=datamodule)
    assert not (tmp_path / "Regression").exists(), "nothing was trained"


def test_resume_runs_only_the_missing_trials(tmp_path):
    space = {"lr": [0.01, 0.05, 0.1, 0.2]}
    first = runner(tmp_path, sampler=GridSampler(), n_trials=2).fit(Regression, space, datamodule=LineData)
    assert len(first.trials) == 2
    second = runner(tmp_path, sampler=GridSampler(), n_trials=None).fit(Regression, space, datamodule=LineData)
    assert [t.params["lr"] for t in second.trials] == [0.01, 0.05, 0.1, 0.2]
    assert [t.started_at for t in second.trials[:2]] == [t.started_at for t in first.trials], "not re-run"


def test_objective_best_takes_the_best_reported_value(tmp_path):
    result = runner(tmp_path, n_trials=1, objective="best", trainer_kwargs={**FAST, "max_epochs": 4}).fit(
        Regression, {"lr": [0.3]}, datamodule=LineData
    )
    (t,) = result.trials
    assert math.isclose(t.value, min(t.intermediate_values.values()))


def test_instance_datamodule_and_seeded_trials_are_reproducible(tmp_path):
    a = runner(tmp_path / "a", n_trials=2, seed=5).fit(Regression, {"lr": Real(0.01, 0.1)}, datamodule=LineData())
    b = runner(tmp_path / "b", n_trials=2, seed=5).fit(Regression, {"lr": Real(0.01, 0.1)}, datamodule=LineData())
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.value for t in a.trials] == pytest.approx([t.value for t in b.trials], rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "minimize"}, "mode='minimize'"), ({"n_trials": 0}, "n_trials=0"), ({"objective": "mean"}, "objective"),
     ({"metric": ""}, "metric"), ({"sampler": "random"}, "sampler='random'")],
)
def test_bad_runner_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchRunner(**kwargs)


def test_ctrl_c_stores_the_trial_interrupted_and_a_rerun_resumes(tmp_path):
    import signal

    from ._modules import Interrupting

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        runner(tmp_path, sampler=GridSampler(), n_trials=None).fit(Interrupting, {"lr": [0.01, 0.02]},
                                                                     datamodule=LineData)
    assert signal.getsignal(signal.SIGINT) is before, "Lightning's SIG_IGN does not outlive the trial"
    from frameworm_lightning import Study

    study = Study.load("Interrupting", f"sqlite:///{tmp_path / 'frameworm.db'}")
    (lost,) = study.trials_in(TrialState.FAILED)
    assert lost.interrupted and lost.params == {"lr": 0.01}
    assert [t.params for t in study.trials_in(TrialState.WAITING)] == [{"lr": 0.01}]


def test_sys_exit_in_a_trial_fails_only_that_trial(tmp_path):
    from ._modules import Interrupting

    result = runner(tmp_path, sampler=GridSampler(), n_trials=None).fit(
        Interrupting, {"how": ["exit", "never"]}, datamodule=LineData)
    states = {t.params["how"]: t for t in result.trials}
    assert states["exit"].state is TrialState.FAILED and states["exit"].reason == "the trial called sys.exit(7)"
    assert states["never"].state is TrialState.COMPLETE


@pytest.mark.parametrize("asked", [{}, {"enable_model_summary": True, "enable_progress_bar": True}],
                         ids=["quiet by default", "when the user asks"])
def test_trials_print_no_model_summary_or_progress_bar_unless_asked(tmp_path, capfd, asked):
    trainer = {"max_epochs": 1, "logger": False, **asked}
    runner(tmp_path, n_trials=1, quiet=False, trainer_kwargs=trainer).fit(Regression, {"lr": [0.1]},
                                                                          datamodule=LineData)
    out, err = capfd.readouterr()
    assert ("Trainable params" in out + err) is bool(asked)
    assert ("Epoch 0" in out + err) is bool(asked)
    assert "COMPLETE" in out  # the runner's own line per trial stays



_WARNING_SEARCH = """
import warnings
from frameworm_lightning import SearchRunner
from tests.runner._modules import LineData, Regression

class Warns(Regression):
    def on_train_start(self):
        warnings.warn("a warning every trial raises", UserWarning)

SearchRunner(metric="val_loss", n_trials=3, storage="memory", root_dir={root!r}, seed=0,
             trainer_kwargs={{"max_epochs": 1, "logger": False}}).fit(Warns, {{"lr": [0.1, 0.2, 0.3]}}, datamodule=LineData)
"""


def test_lightning_info_lines_are_hidden_and_each_warning_shows_once_per_search(tmp_path):
    # A process of its own: pytest records warnings itself, which would hide what a user sees.
    done = subprocess.run([sys.executable, "-c", _WARNING_SEARCH.format(root=str(tmp_path))], capture_output=True,
                          text=True, timeout=240, cwd=Path(__file__).parents[2],
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("COMPLETE") == 3  # the runner's own line per trial
    text = done.stdout + done.stderr
    assert "GPU available" not in text and "`Trainer.fit` stopped" not in text  # Lightning's per-trial info lines
    assert text.count("a warning every trial raises") == 1, done.stderr


def test_resuming_with_another_sampler_names_the_runners_opt_in(tmp_path):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    space = {"lr": [0.01, 0.1, 0.3]}
    runner(tmp_path, sampler=RandomSampler(seed=0), n_trials=2, storage=db).fit(Regression, space, datamodule=LineData)
    with pytest.raises(StudyMismatchError, match=r"SearchRunner\(\.\.\., allow_sampler_change=True\)"):
        runner(tmp_path, sampler=GridSampler(), n_trials=None, storage=db).fit(Regression, space, datamodule=LineData)
    result = runner(tmp_path, sampler=GridSampler(), n_trials=None, storage=db, allow_sampler_change=True).fit(
        Regression, space, datamodule=LineData)
    # Opted in: the grid goes on in the same study, whose budget (the grid's size) counts the stored trials.
    assert len(result.trials) == 3 and result.trials[-1].claim_key == "grid:0"


@pytest.mark.parametrize("policy", ["ASHA", "Hyperband"])
def test_a_trainer_limit_the_halving_policy_sets_cannot_be_searched(tmp_path, policy):
    # trainer.max_epochs was searched, stored with each trial, then silently replaced by the
    # policy's max_resource: a trial stored with trainer.max_epochs=1 trained 3 epochs.
    import frameworm_lightning

    halving = getattr(frameworm_lightning, policy)(min_resource=1, max_resource=3)
    with pytest.raises(ConfigKeyError, match=rf"trainer\.max_epochs cannot be searched: {policy} sets it to 3 "
                                             r"\(from its max_resource\) in every trial; remove it from the space"):
        runner(tmp_path, callbacks=[halving], n_trials=2).fit(
            Regression, {"lr": Real(0.01, 0.1), "trainer.max_epochs": [1, 3]}, datamodule=LineData)
    assert not (tmp_path / "frameworm.db").exists()  # refused before the study was opened


@pytest.mark.parametrize("metric", ["fit_loss", "epoch_end"])
def test_a_training_metric_logged_for_the_epoch_is_searched_although_validation_runs(tmp_path, metric):
    # The reporter read it at the first validation, which Lightning runs before the epoch's
    # training metrics exist, and stopped the search: "metric 'fit_loss' was never logged".
    result = SearchRunner(metric=metric, mode="min", n_trials=2, root_dir=tmp_path, quiet=True,
                          trainer_kwargs=FAST).fit(EpochLogged, {"lr": Real(0.01, 0.1)}, datamodule=LineData)
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2
    for t in result.trials:
        assert sorted(t.intermediate_values) == [4, 8, 12]  # one report per epoch (4 batches each)
    if metric == "epoch_end":
        assert [t.intermediate_values for t in result.trials] == [{4: 10.0, 8: 9.0, 12: 8.0}] * 2
        assert [t.value for t in result.trials] == [8.0, 8.0]


def test_a_wrong_metric_name_still_stops_the_search_at_the_first_trial_of_a_module_with_an_epoch_end_hook(tmp_path):
    # The reporter waits for the module's on_train_epoch_end; our ModelCheckpoint finds the
    # metric missing first (Lightning's MisconfigurationException): still the first trial's fatal error.
    with pytest.raises(MetricNotFoundError, match=r"metric 'val_los' was never logged; logged metrics: fit_loss, "
                                                  r"train_loss, val_loss\."):
        runner(tmp_path, metric="val_los", n_trials=3).fit(EpochLogged, {"lr": Real(0.01, 0.1)}, datamodule=LineData)
    assert len(Study.load("EpochLogged", f"sqlite:///{tmp_path / 'frameworm.db'}").trials) == 1


@pytest.mark.parametrize(("space", "named"), [
    ({"lr": [0.01], "model.lr": [0.05]}, r"'lr' and 'model\.lr' both set Regression's lr"),
    ({"model.log_metric": ["a"], "log_metric.x": [1]}, r"'model\.log_metric' and 'log_metric\.x' both set Regression's log_metric"),
])
def test_two_keys_that_set_one_argument_are_an_error_before_anything_trains(tmp_path, space, named):
    # Both were accepted: each trial stored two values, and the model trained with one of them.
    with pytest.raises(ConfigKeyError, match=named):
        runner(tmp_path, n_trials=1).fit(Regression, space, datamodule=LineData)
    assert not (tmp_path / "frameworm.db").exists()


def test_a_required_argument_nobody_gives_is_an_error_before_the_study_is_stored(tmp_path):
    # The first trial failed with TypeError and was stored FAILED (counted against n_trials).
    with pytest.raises(ConfigKeyError, match=r"NeedsWidth needs width: give it in model_kwargs=\{'width': \.\.\.\} "
                                             r"or search it \('model\.width'\)"):
        runner(tmp_path, n_trials=2).fit(NeedsWidth, {"lr": Real(0.01, 0.1)}, datamodule=LineData)
    assert not (tmp_path / "frameworm.db").exists()
    result = runner(tmp_path, n_trials=1).fit(NeedsWidth, {"lr": Real(0.01, 0.1)}, datamodule=LineData,
                                              model_kwargs={"width": 3})
    assert result.trials[0].state is TrialState.COMPLETE


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"trainer_kwargs": {**FAST, "max_epoch": 2}},
     r"trainer_kwargs has 'max_epoch', which is not an argument of Trainer \(did you mean 'max_epochs'\?\)"),
    ({"fit": {"model_kwargs": {"hiden": 3}}},
     r"model_kwargs has 'hiden', which is not an argument of Regression \(did you mean 'hidden'\?\)"),
    ({"fit": {"datamodule_kwargs": {"batchsize": 8}}},
     r"datamodule_kwargs has 'batchsize', which is not an argument of LineData \(did you mean 'batch_size'\?\)"),
])
def test_a_misspelt_base_argument_is_an_error_before_the_study_is_stored(tmp_path, kwargs, named):
    # Trainer(max_epoch=2) failed the first trial with TypeError, stored FAILED in the study.
    fit = kwargs.pop("fit", {})
    with pytest.raises(ConfigKeyError, match=named):
        runner(tmp_path, n_trials=2, **kwargs).fit(Regression, {"lr": Real(0.01, 0.1)}, datamodule=LineData, **fit)
    assert not (tmp_path / "frameworm.db").exists()


@pytest.mark.parametrize(("policy", "named"), [
    ({"monitor": "val_los"}, r"ASHA compares trials on the search's metric 'val_loss', but got monitor='val_los'"),
    ({"mode": "max"}, r"ASHA\(mode='max'\) disagrees with the search's mode='min'"),
])
def test_a_policy_at_odds_with_the_search_is_an_error_before_the_study_is_stored(tmp_path, policy, named):
    # Found when each trial's copy was bound: trial 0 stored FAILED, then TrialFailed.
    from frameworm_lightning import ASHA

    for callbacks, trainer_kwargs in (([ASHA(min_resource=1, max_resource=3, **policy)], FAST),
                                      ([], {**FAST, "callbacks": [ASHA(min_resource=1, max_resource=3, **policy)]})):
        with pytest.raises(ValueError, match=named):
            runner(tmp_path, n_trials=2, callbacks=callbacks, trainer_kwargs=trainer_kwargs).fit(
                Regression, {"lr": Real(0.01, 0.1)}, datamodule=LineData)
        assert not (tmp_path / "frameworm.db").exists()


@pytest.mark.parametrize(("space", "named"), [
    ({"trainer.max_epochs": Real(1, 3)},
     r"'trainer\.max_epochs' is a Real \(floats\), but Trainer's max_epochs takes an int; use Integer\(1, 3\)"),
    ({"hidden": Real(2, 8.5)}, r"'hidden' is a Real \(floats\), but Regression's hidden takes an int; use Integer\("),
])
def test_a_real_for_an_integer_argument_is_an_error_before_the_study_is_stored(tmp_path, space, named):
    # Trainer(max_epochs=1.64) failed every trial with a bare AssertionError inside Lightning, each stored FAILED.
    with pytest.raises(ConfigKeyError, match=named):
        runner(tmp_path, n_trials=2).fit(Regression, space, datamodule=LineData)
    assert not (tmp_path / "frameworm.db").exists()
    # A Real where the annotation takes floats too is searched as before.
    result = runner(tmp_path, n_trials=1).fit(Regression, {"trainer.gradient_clip_val": Real(0.5, 1.0)},
                                              datamodule=LineData)
    assert result.trials[0].state is TrialState.COMPLETE


def test_a_key_inside_an_argument_not_given_is_an_error_before_the_study_is_stored(tmp_path):
    # 'optim.lr' with no model_kwargs['optim']: every trial failed 'the config has no optim', trial 0 stored FAILED.
    with pytest.raises(ConfigKeyError, match=r"search-space key 'optim\.lr' sets an entry of Nested's optim, which "
                                             r"model_kwargs does not give as a mapping: pass model_kwargs=\{'optim': "
                                             r"\{\.\.\.\}\}"):
        runner(tmp_path, n_trials=2).fit(Nested, {"optim.lr": Real(0.01, 0.1)}, datamodule=LineData)
    assert not (tmp_path / "frameworm.db").exists()
    result = runner(tmp_path, n_trials=1).fit(Nested, {"optim.lr": Real(0.01, 0.1)}, datamodule=LineData,
                                              model_kwargs={"optim": {"lr": 0.05}})
    assert result.trials[0].state is TrialState.COMPLETE


def test_a_key_inside_a_dataclass_argument_sets_its_field(tmp_path):
    # 'cfg.optim.lr' for a dataclass argument was refused, and the message said to pass a mapping, which
    # the module (cfg.optim.lr) cannot read.
    with pytest.raises(ConfigKeyError, match=r"Configured's cfg, which model_kwargs does not give: pass "
                                             r"model_kwargs=\{'cfg': Config\(\.\.\.\)\}"):
        runner(tmp_path, n_trials=1).fit(Configured, {"cfg.optim.lr": Real(0.01, 0.1)}, datamodule=LineData)
    result = runner(tmp_path, n_trials=2).fit(Configured, {"cfg.optim.lr": Real(0.01, 0.1), "cfg.hidden": [2, 8]},
                                              datamodule=LineData, model_kwargs={"cfg": Config()})
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2, [t.error for t in result.trials]
    best = result.load_best_model(Configured, cfg=Config())  # a dataclass is not recorded (JSON): given again
    assert best.cfg == Config(hidden=result.best_params["cfg.hidden"], optim=Optim(lr=result.best_params["cfg.optim.lr"]))


@pytest.mark.parametrize("datamodule", ["loader", "class"], ids=["a DataLoader", "a Dataset class"])
def test_a_datamodule_that_is_not_a_lightning_datamodule_is_an_error_before_the_study_is_stored(tmp_path, datamodule):
    # datamodule=DataLoader(...) failed every trial with AttributeError ('DataLoader' object has no attribute
    # 'on_exception'), each stored FAILED, and the search went on.
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    given = DataLoader(TensorDataset(torch.zeros(4, 1))) if datamodule == "loader" else TensorDataset
    with pytest.raises(TypeError, match=r"datamodule must be a LightningDataModule class or instance \(or None\), but "
                                        r"got .*; wrap DataLoaders with LightningDataModule\.from_datasets"):
        runner(tmp_path, n_trials=2).fit(Regression, {"lr": Real(0.01, 0.1)}, datamodule=given)
    assert not (tmp_path / "frameworm.db").exists()


@pytest.mark.parametrize("where", ["trainer_kwargs", "space"])
def test_a_step_limit_beside_a_halving_policy_on_epochs_is_an_error_before_the_study_is_stored(tmp_path, where):
    # trainer_kwargs={"max_steps": 6} with ASHA on epochs (4 batches an epoch): a trial going on from rung 1 stopped
    # at step 6 and was stored COMPLETE at 1.5 epochs; a promoted one resumed at step 4, trained 2 steps, never
    # validated, and FAILED with "metric 'val_loss' was never logged".
    from frameworm_lightning import ASHA

    trainer_kwargs = {**FAST, "max_steps": 6} if where == "trainer_kwargs" else FAST
    space = {"lr": Real(0.01, 0.1), **({"trainer.max_steps": [6, 8]} if where == "space" else {})}
    with pytest.raises(ConfigKeyError, match=r"max_steps may end trials before ASHA's max_resource \(4 epochs\): Lightning "
                                             r"stops at whichever comes first; remove it \(the policy gives each trial "
                                             r"its budget\), or use ASHA\(resource='steps'\)"):
        runner(tmp_path, n_trials=2, trainer_kwargs=trainer_kwargs,
               callbacks=[ASHA(min_resource=1, max_resource=4, eta=2)]).fit(Regression, space, datamodule=LineData)
    assert not (tmp_path / "frameworm.db").exists()


def test_a_policy_on_another_metric_in_a_max_search_must_say_its_mode(tmp_path):
    # ImprovementStopping(monitor="train_loss") in a val_acc (max) search took mode='max' for train_loss:
    # a falling loss was "no improvement", and trials stopped after `patience` checks, silently.
    from frameworm_lightning import ImprovementStopping

    with pytest.raises(ValueError, match=r"ImprovementStopping monitors 'train_loss', not the search's metric "
                                         r"'neg_loss': give its mode \('min' or 'max'\); the search's mode='max' is "
                                         r"for 'neg_loss'"):
        SearchRunner(metric="neg_loss", mode="max", callbacks=[ImprovementStopping(monitor="train_loss")])
    # Given (it was refused: "disagrees with the search's mode"), or in a min search (EarlyStopping's
    # default, too), it is taken as it is.
    given = ImprovementStopping(monitor="train_loss", mode="min")
    SearchRunner(metric="neg_loss", mode="max", callbacks=[given])
    given.bind_trial(Study.create("s", {"x": Real(0, 1)}, metric="neg_loss", mode="max").ask())
    assert given.mode == "min"
    SearchRunner(metric="val_loss", mode="min", callbacks=[ImprovementStopping(monitor="train_loss")])


def _build_with_width(trial):
    """A ``build_trial``: the module's width from the trial's number, which no model_kwargs give."""
    return NeedsWidth(width=trial.number + 2, lr=trial.params["model.lr"]), LineData(batch_size=8)


def test_build_trial_builds_each_trials_module_and_datamodule(tmp_path, monkeypatch):
    built = []  # what each trial trained: the module's width and lr, the datamodule's batch size
    monkeypatch.setattr(NeedsWidth, "on_fit_start", lambda module: built.append(
        (module.width, module.hparams.lr, module.trainer.datamodule.batch_size)))
    result = runner(tmp_path, n_trials=None, sampler=GridSampler()).fit(
        NeedsWidth, {"model.lr": [0.01, 0.1]}, datamodule=LineData, build_trial=_build_with_width)
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * 2
    # width is required and given by no model_kwargs: the builder completes the arguments.
    assert built == [(t.number + 2, t.params["model.lr"], 8) for t in result.trials]
