"""Callbacks a LightningCLI app adds besides ``trainer.callbacks`` reach every trial, as they reach ``fit``:
a callback group (``parser.add_lightning_class_args(EarlyStopping, "early_stopping")``) and
``trainer_defaults``' callbacks (``tests/cli/callback_cli.py``)."""

from __future__ import annotations

from pathlib import Path

from frameworm_lightning import Study, TrialState
from tests.cli.conftest import run_cli, search_config, write_config


def test_a_callback_group_and_the_trainer_defaults_callbacks_run_in_every_trial(tmp_path: Path) -> None:
    config = search_config(tmp_path, n_trials=2)
    config["trainer"]["max_epochs"] = 4
    # Stops after the second epoch: no epoch improves val_loss by 100.
    config["early_stopping"] = {"monitor": "val_loss", "patience": 0, "min_delta": 100.0}
    write_config(tmp_path / "search.yaml", config)
    run = run_cli("search", "-c", "search.yaml", cwd=tmp_path, script="callback_cli.py")
    assert run.returncode == 0, run.stderr[-3000:]
    trials = Study.load("TinyModel", f"sqlite:///{tmp_path / 'study.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        assert len(t.intermediate_values) == 2  # EarlyStopping of the early_stopping: section stopped it
        assert (Path(t.system_attrs["trial_dir"]) / "marker.txt").read_text() == "2"  # trainer_defaults' Marker ran
        assert t.system_attrs["cli_config"]["early_stopping"]["min_delta"] == 100.0  # fit -c config.yaml stops alike
