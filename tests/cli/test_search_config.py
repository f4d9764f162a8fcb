"""Space keys as LightningCLI spells them, mapped onto the runner's routing and back."""

from __future__ import annotations

import pytest

from frameworm_lightning.cli._search_config import best_fit_config, config_key, runner_key


@pytest.mark.parametrize(
    ("config", "runner"),
    [
        ("model.init_args.lr", "model.lr"),
        ("model.init_args.optimizer.lr", "model.optimizer.lr"),
        ("data.init_args.batch_size", "data.batch_size"),
        ("trainer.max_epochs", "trainer.max_epochs"),
    ],
)
def test_keys_round_trip(config: str, runner: str) -> None:
    assert runner_key(config) == runner
    assert config_key(runner) == config


def test_short_and_plain_keys() -> None:
    assert runner_key("model.lr") == "model.lr"  # jsonargparse's short form
    assert config_key("lr") == "model.init_args.lr"  # a plain key configures the model


def test_best_fit_config_sets_params_and_drops_defaults() -> None:
    dump = {
        "seed_everything": True,
        "trainer": {"max_epochs": 3, "accelerator": "auto", "callbacks": None},
        "model": {"class_path": "m.M", "init_args": {"lr": 0.1, "dims": [1, 2]}},
        "data": {"class_path": "m.D", "init_args": {"batch_size": 8}},
        "optimizer": None,
    }
    out = best_fit_config(dump, {"model.lr": 0.01, "model.dims": (4, 4), "data.batch_size": 32,
                                 "trainer.gradient_clip_val": 1.0}, seed=7)
    assert out == {
        "seed_everything": 7,
        "trainer": {"max_epochs": 3, "gradient_clip_val": 1.0},
        "model": {"class_path": "m.M", "init_args": {"lr": 0.01, "dims": [4, 4]}},
        "data": {"class_path": "m.D", "init_args": {"batch_size": 32}},
    }
    assert dump["model"]["init_args"]["lr"] == 0.1  # the dump is not changed
