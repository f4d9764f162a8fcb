"""Space keys as LightningCLI spells them, mapped onto the runner's routing and back."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from frameworm_lightning.cli import SearchCLI
from frameworm_lightning.exceptions import ConfigKeyError

from frameworm_lightning.cli._search_config import build_plan, config_key, runner_key, trial_fit_config
from tests.cli.conftest import search_config, write_config


@pytest.mark.parametrize(
    ("config", "runner"),
    [
        ("model.init_args.lr", "model.lr"),
        ("model.init_args.optimizer.lr", "model.optimizer.lr"),
        ("data.init_args.batch_size", "data.batch_size"),
        ("trainer.max_epochs", "trainer.max_epochs"),
        ("optimizer.init_args.lr", "optimizer.lr"),
        ("lr_scheduler.init_args.gamma", "lr_scheduler.gamma"),
    ],
)
def test_keys_round_trip(config: str, runner: str) -> None:
    assert runner_key(config) == runner
    assert config_key(runner) == config


def test_short_and_plain_keys() -> None:
    assert runner_key("model.lr") == "model.lr"  # jsonargparse's short form
    assert config_key("lr") == "model.init_args.lr"  # a plain key configures the model


def test_trial_fit_config_sets_params_and_drops_defaults() -> None:
    dump = {
        "seed_everything": True,
        "trainer": {"max_epochs": 3, "accelerator": "auto", "callbacks": None},
        "model": {"class_path": "m.M", "init_args": {"lr": 0.1, "dims": [1, 2]}},
        "data": {"class_path": "m.D", "init_args": {"batch_size": 8}},
        "optimizer": None,
    }
    out = trial_fit_config(dump, {"model.lr": 0.01, "model.dims": (4, 4), "data.batch_size": 32,
                                 "trainer.gradient_clip_val": 1.0}, seed=7)
    assert out == {
        "seed_everything": 7,
        "trainer": {"max_epochs": 3, "gradient_clip_val": 1.0},
        "model": {"class_path": "m.M", "init_args": {"lr": 0.01, "dims": [4, 4]}},
        "data": {"class_path": "m.D", "init_args": {"batch_size": 32}},
    }
    assert dump["model"]["init_args"]["lr"] == 0.1  # the dump is not changed
    # search.seed: null -> no seeding: the config's own seed_everything (a seed LightningCLI chose) would seed it.
    assert trial_fit_config(dump, {}, seed=None)["seed_everything"] is False


def _plan(tmp: Path, monkeypatch: pytest.MonkeyPatch, space: dict, **sections: object):  # noqa: ANN202
    config = search_config(tmp)
    config["search"]["space"] = space
    config.update(sections)
    path = write_config(tmp / "search.yaml", config)
    monkeypatch.setattr(sys, "argv", ["frameworm-search"])
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # tiny.TinyModel
    return build_plan(SearchCLI(args=["-c", str(path), "--seed_everything", "0"], run=False).config)


OPTIMIZER = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.5}}
SCHEDULER = {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1}}


def test_optimizer_and_scheduler_keys_are_space_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan(tmp_path, monkeypatch, {"optimizer.init_args.lr": [0.01, 0.1], "lr_scheduler.init_args.gamma": [0.5, 0.9],
                                         "optimizer.momentum": [0.0, 0.9]},
                 optimizer=OPTIMIZER, lr_scheduler=SCHEDULER)
    assert set(plan.space) == {"optimizer.lr", "lr_scheduler.gamma", "optimizer.momentum"}


@pytest.mark.parametrize(
    ("space", "sections", "message"),
    [
        ({"optimizer.init_args.lrr": [0.1, 0.2]}, {"optimizer": OPTIMIZER},
         "unknown search.space key 'optimizer.init_args.lrr': SGD has no argument 'lrr'"),
        ({"optimizer.init_args.params": [1, 2]}, {"optimizer": OPTIMIZER},
         "unknown search.space key 'optimizer.init_args.params': SGD has no argument 'params'"),
        ({"optimizer.init_args.lr": [0.1, 0.2]}, {},
         "search.space key 'optimizer.init_args.lr': the config has no optimizer class to configure; "
         "add optimizer: {class_path: ...} to the config or drop the key."),
        ({"lr_scheduler.init_args.gamma": [0.1, 0.2]}, {"optimizer": OPTIMIZER},
         "the config has no lr_scheduler class to configure"),
    ],
)
def test_a_bad_optimizer_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, space: dict,
                                        sections: dict, message: str) -> None:
    with pytest.raises(ConfigKeyError) as err:
        _plan(tmp_path, monkeypatch, space, **sections)
    assert message in str(err.value)
