"""Each model searched end to end: every sampler, a stopping policy, the seed's API, the CLI."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import frameworm_lightning as fw
from frameworm_lightning import Categorical, Integer, Real, SearchRunner, TrialState
from models import DCGAN, DDPM, VAE, DigitsDataModule

# Tiny trials: two training batches, two validation batches, small nets, few samples.
TRAINER = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 2, "num_sanity_val_steps": 0,
           "enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu", "log_every_n_steps": 1}
CASES: dict[str, tuple[type, str, dict[str, Any], dict[str, Any]]] = {
    # model, metric, fixed model kwargs, space
    "VAE": (VAE, "val_loss", {"hidden_dim": 32}, {"lr": Real(1e-3, 1e-2, log=True), "latent_dim": [4, 8]}),
    "DCGAN": (DCGAN, "fid", {"g_features": 8, "d_features": 8, "fid_num_samples": 32},
              {"g_lr": Real(1e-4, 1e-2, log=True), "model.latent_dim": Integer(4, 16)}),
    "DDPM": (DDPM, "fid", {"width": 8, "timesteps": 5, "fid_num_samples": 32},
             {"lr": Real(1e-4, 1e-2, log=True), "schedule": Categorical(["linear", "cosine"])}),
}


def _sampler(name: str) -> fw.Sampler:
    if name == "grid":
        return fw.GridSampler(grid_points=2)
    if name == "random":
        return fw.RandomSampler(seed=0)
    if name == "sobol":
        return fw.SobolSampler(seed=0)
    bayes = getattr(fw, "BayesianSampler", None)
    if bayes is None:  # committed before it was exported from the package root
        bayes = pytest.importorskip("frameworm_lightning.samplers._bayes").BayesianSampler
    return bayes(seed=0, n_initial_points=1)


@pytest.mark.parametrize("sampler", ["grid", "random", "sobol", "bayes"])
@pytest.mark.parametrize("name", list(CASES))
def test_every_model_with_every_sampler(name, sampler, tmp_path):
    module, metric, fixed, space = CASES[name]
    n_trials = 2 if sampler == "bayes" else 1  # the second Bayesian trial comes from the GP
    runner = SearchRunner(metric=metric, mode="min", sampler=_sampler(sampler), n_trials=n_trials,
                          trainer_kwargs=TRAINER, storage="memory", root_dir=tmp_path, seed=0, quiet=True,
                          save_checkpoints=False, loggers=False)
    result = runner.fit(module, {**space, "data.batch_size": [32, 64]}, datamodule=DigitsDataModule,
                        model_kwargs=fixed)
    assert [t.state for t in result.trials] == [TrialState.COMPLETE] * n_trials
    assert math.isfinite(result.best_score)
    assert set(result.best_params) == {*space, "data.batch_size"}


@pytest.mark.parametrize("name", list(CASES))
def test_every_model_with_a_stopping_policy(name, tmp_path):
    from frameworm_lightning.stopping import ASHA

    module, metric, fixed, space = CASES[name]
    runner = SearchRunner(metric=metric, mode="min", sampler=fw.RandomSampler(seed=0), n_trials=3,
                          trainer_kwargs={**TRAINER, "max_epochs": 3}, storage="memory", root_dir=tmp_path,
                          seed=0, quiet=True, save_checkpoints=False, loggers=False,
                          callbacks=[ASHA(min_resource=1, max_resource=3, eta=3)])
    result = runner.fit(module, space, datamodule=DigitsDataModule, model_kwargs=fixed)
    states = [t.state for t in result.trials]
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED} and TrialState.PRUNED in states
    assert math.isfinite(result.best_score)


def test_the_seed_api_searches_a_model():
    from frameworm_lightning.search import GridSearch
    from models.train import train_from_config

    config = {"model_class": "VAE", "model": {"hidden_dim": 32}, "data": {"batch_size": 64},
              "trainer": {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 2}}
    search = GridSearch(config, {"model.lr": [1e-3, 1e-2], "model.latent_dim": [4]}, metric="val_loss",
                        mode="min", verbose=False)
    best_config, best_score = search.run(train_from_config)
    assert len(search.result.trials) == 2 and math.isfinite(best_score)
    assert best_config["model"]["lr"] in (1e-3, 1e-2) and best_config["model_class"] == "VAE"


def test_the_cli_searches_a_model_from_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from frameworm_lightning.cli import main
    from frameworm_lightning.study import Study

    config = {
        "model": {"class_path": "models.DCGAN",
                  "init_args": {"g_features": 8, "d_features": 8, "fid_num_samples": 32}},
        "data": {"class_path": "models.DigitsDataModule", "init_args": {"batch_size": 32}},
        "trainer": {k: v for k, v in TRAINER.items()},
        "search": {
            "metric": "fid", "mode": "min", "n_trials": 1,
            "sampler": {"class_path": "frameworm_lightning.SobolSampler", "init_args": {"seed": 0}},
            "space": {"model.init_args.g_lr": {"type": "real", "low": 1e-4, "high": 1e-2, "log": True},
                      "data.init_args.batch_size": [32, 64]},
            "storage": f"sqlite:///{tmp_path / 'study.db'}", "root_dir": str(tmp_path / "runs"),
        },
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setattr(sys, "argv", ["frameworm-search"])  # not pytest's own arguments
    try:
        main(["search", "-c", str(path)])
    except SystemExit as stop:  # a CLI may exit 0 after its subcommand
        assert stop.code in (0, None)
    study = Study.load("DCGAN", f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert math.isfinite(study.trials[0].value)


def test_train_from_config_names_an_unknown_model():
    from models.train import train_from_config

    with pytest.raises(ValueError, match="GPT"):
        train_from_config({"model_class": "GPT"})
