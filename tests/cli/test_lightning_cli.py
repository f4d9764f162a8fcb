"""LightningCLI's own sections and files in a search: ``optimizer:`` and ``lr_scheduler:``
(searchable keys included), each trial's ``config.yaml`` fed to ``fit``, and ``best``
writing what the best trial trained whatever the current command line says.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from frameworm_lightning import FrozenTrial, Study, TrialState
from tests.cli.conftest import Run, Started, run_cli, search_config, start_cli, write_config

OPTIMIZER = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.5}}
SCHEDULER = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1, "gamma": 0.5}}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("lightning_cli")
    config = search_config(tmp, n_trials=2, n_jobs=2, space={  # two worker processes: the callback travels
        "optimizer.init_args.lr": {"type": "real", "low": 1.0e-3, "high": 0.3, "log": True},
        "lr_scheduler.init_args.gamma": [0.25, 0.75],
    })
    config["optimizer"], config["lr_scheduler"] = OPTIMIZER, SCHEDULER
    write_config(tmp / "search.yaml", config)
    return tmp


@pytest.fixture(scope="module")
def searched(folder: Path) -> Run:
    return run_cli("search", "-c", "search.yaml", cwd=folder)


def _study(folder: Path) -> Study:
    return Study.load("TinyModel", f"sqlite:///{folder / 'study.db'}")


def _trained_optimizer(trial: FrozenTrial) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The optimizer's param group and the LR schedulers' states, from the trial's checkpoint."""
    ckpt = torch.load(trial.system_attrs["checkpoint_path"], map_location="cpu", weights_only=True)
    (group,) = ckpt["optimizer_states"][0]["param_groups"]
    return group, ckpt["lr_schedulers"]


@pytest.fixture(scope="module")
def after_search(folder: Path, searched: Run) -> dict[str, Started]:
    assert searched.returncode == 0, searched.stderr[-3000:]
    best = _study(folder).best_trial
    assert best is not None
    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder / "fit")}}
    return {
        # The command line now disagrees with what the trials trained.
        "best": start_cli("best", "-c", "search.yaml", "--model.init_args.sleep", "0.01", "--trainer.max_epochs", "2",
                          "--output", "best.yaml", cwd=folder),
        "fit": start_cli("fit", "-c", str(Path(best.system_attrs["trial_dir"]) / "config.yaml"),
                         "--trainer.logger", json.dumps(logger), "--trainer.enable_progress_bar", "false", cwd=folder),
    }


def test_optimizer_and_scheduler_sections_build_each_trials_optimizer(folder: Path, searched: Run) -> None:
    assert searched.returncode == 0, searched.stderr[-3000:]
    trials = _study(folder).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        group, schedulers = _trained_optimizer(t)
        assert group["momentum"] == 0.5  # SGD from the optimizer: section, not the module's own
        (scheduler,) = schedulers
        assert scheduler["base_lrs"] == [pytest.approx(t.params["optimizer.lr"])]
        assert scheduler["gamma"] == t.params["lr_scheduler.gamma"] and scheduler["step_size"] == 1


def test_each_trial_config_is_its_lightning_cli_config(folder: Path, searched: Run) -> None:
    for t in _study(folder).trials:
        written = yaml.safe_load((Path(t.system_attrs["trial_dir"]) / "config.yaml").read_text())
        assert written == t.system_attrs["cli_config"]
        assert written["optimizer"]["class_path"] == "torch.optim.SGD"
        assert written["optimizer"]["init_args"].items() >= {"lr": t.params["optimizer.lr"], "momentum": 0.5}.items()
        assert written["lr_scheduler"]["init_args"]["gamma"] == t.params["lr_scheduler.gamma"]
        assert written["model"] == {"class_path": "tiny.TinyModel", "init_args": {"lr": 0.1, "hidden": 4, "sleep": 0.0}}
        assert written["seed_everything"] == t.number and "search" not in written


def test_a_trials_config_yaml_runs_with_fit(folder: Path, after_search: dict[str, Started]) -> None:
    fit = after_search["fit"].wait()
    assert fit.returncode == 0, fit.stderr[-3000:]
    metrics = next((folder / "fit").rglob("metrics.csv"))
    val = [float(r["val_loss"]) for r in csv.DictReader(metrics.open()) if r.get("val_loss")]
    assert math.isclose(val[-1], _study(folder).best_trial.value, rel_tol=1e-4)  # the same training again


def test_best_writes_what_the_trial_trained_and_says_the_command_line_differs(
    folder: Path, after_search: dict[str, Started]
) -> None:
    run = after_search["best"].wait()
    assert run.returncode == 0, run.stderr[-3000:]
    best = _study(folder).best_trial
    written = yaml.safe_load((folder / "best.yaml").read_text())
    assert written == best.system_attrs["cli_config"]
    assert written["trainer"]["max_epochs"] == 1 and written["model"]["init_args"]["sleep"] == 0.0
    notes = [ln for ln in run.stderr.splitlines() if ln.startswith("note:")]
    assert notes == [
        f"note: the current command line differs from what trial {best.number} trained "
        "(model.init_args.sleep: 0.01 now, 0.0 in the trial; trainer.max_epochs: 2 now, 1 in the trial); "
        "wrote what the trial trained."
    ]


def test_an_injected_optimizer_is_built_per_trial_as_fit_builds_it(tmp_path: Path) -> None:
    # model.init_args.optimizer is an OptimizerCallable: fit gives the module a callable, never the mapping.
    config = search_config(tmp_path, n_trials=None, sampler={"class_path": "frameworm_lightning.GridSampler"},
                           space={"model.init_args.optimizer.init_args.lr": [1.0e-3, 5.0e-2]})
    config["model"] = {"class_path": "tiny.InjectedModel", "init_args": {"optimizer": OPTIMIZER}}
    write_config(tmp_path / "search.yaml", config)
    run = run_cli("search", "-c", "search.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = Study.load("InjectedModel", f"sqlite:///{tmp_path / 'study.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        group, _ = _trained_optimizer(t)
        assert (group["lr"], group["momentum"]) == (t.params["model.optimizer.init_args.lr"], 0.5)


def test_optimizer_and_scheduler_groups_of_one_class_are_searched_by_their_arguments(tmp_path: Path) -> None:
    # parser.add_optimizer_args(torch.optim.Adam): `optimizer: {lr: ...}`, no class_path to say the class.
    config = search_config(tmp_path, n_trials=None, sampler={"class_path": "frameworm_lightning.GridSampler"},
                           space={"optimizer.lr": [1.0e-3, 5.0e-2], "lr_scheduler.init_args.gamma": [0.5]})
    config["optimizer"], config["lr_scheduler"] = {"lr": 0.01, "weight_decay": 0.1}, {"gamma": 0.9}
    write_config(tmp_path / "search.yaml", config)
    run = run_cli("search", "-c", "search.yaml", cwd=tmp_path, script="fixed_optimizer_cli.py")
    assert run.returncode == 0, run.stderr[-3000:]
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        group, schedulers = _trained_optimizer(t)
        assert group["weight_decay"] == 0.1 and "betas" in group  # Adam, with the config's other arguments
        (scheduler,) = schedulers
        assert scheduler["base_lrs"] == [t.params["optimizer.lr"]] and scheduler["gamma"] == 0.5
        assert t.system_attrs["cli_config"]["optimizer"]["lr"] == t.params["optimizer.lr"]


def test_trainer_callbacks_of_the_yaml_beside_a_halving_policy(tmp_path: Path) -> None:
    # Building a trial through LightningCLI turned the config's trainer.callbacks into Namespaces in place, in
    # the config the trial had stored; the halving policy's limits then stored it again: every trial FAILED
    # "Namespace(class_path='lightning.pytorch.callbacks.ModelCheckpoint', ...) cannot be stored as JSON".
    config = search_config(tmp_path, n_trials=3, stopping=[
        {"class_path": "frameworm_lightning.ASHA", "init_args": {"min_resource": 1, "max_resource": 2}}])
    callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"monitor": "val_loss", "save_last": True}},
                 {"class_path": "lightning.pytorch.callbacks.EarlyStopping",
                  "init_args": {"monitor": "val_loss", "patience": 3}}]
    config["trainer"].update(max_epochs=6, callbacks=callbacks)
    write_config(tmp_path / "search.yaml", config)
    run = run_cli("search", "-c", "search.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = Study.load("TinyModel", f"sqlite:///{tmp_path / 'study.db'}").trials
    assert not [t for t in trials if t.state is TrialState.FAILED], [t.reason for t in trials]
    for t in trials:
        written = yaml.safe_load((Path(t.system_attrs["trial_dir"]) / "config.yaml").read_text())["trainer"]
        assert written["max_epochs"] == 2
        assert [c["class_path"] for c in written["callbacks"]] == [c["class_path"] for c in callbacks]
        for given, kept in zip(callbacks, written["callbacks"]):
            assert kept["init_args"].items() >= given["init_args"].items()


def test_best_writes_the_budget_a_halving_policy_gave_not_the_yamls(tmp_path: Path) -> None:
    # ASHA trains each configuration to its max_resource (2 epochs); the YAML says 6. `best`
    # wrote 6, so `fit -c best.yaml` trained three times what the best trial did.
    config = search_config(tmp_path, n_trials=3, stopping=[
        {"class_path": "frameworm_lightning.ASHA", "init_args": {"min_resource": 1, "max_resource": 2}}])
    config["trainer"]["max_epochs"] = 6
    write_config(tmp_path / "search.yaml", config)
    run = run_cli("search", "-c", "search.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    best = run_cli("best", "-c", "search.yaml", "--output", "best.yaml", cwd=tmp_path)
    assert best.returncode == 0, best.stderr[-3000:]
    assert yaml.safe_load((tmp_path / "best.yaml").read_text())["trainer"]["max_epochs"] == 2
    trial = Study.load("TinyModel", f"sqlite:///{tmp_path / 'study.db'}").best_trial
    assert trial is not None
    assert yaml.safe_load((Path(trial.system_attrs["trial_dir"]) / "config.yaml").read_text())["trainer"]["max_epochs"] == 2
