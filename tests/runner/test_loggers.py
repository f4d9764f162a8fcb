"""Experiment trackers on real files: each trial's outcome in TensorBoard's HPARAMS data and in MLflow."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch.callbacks import Callback

from frameworm_lightning import Real, SearchResult, SearchRunner, TrialState
from frameworm_lightning.runner._loggers import OUTCOME_METRICS, TrialLogContext, build_loggers, run_name
from tests.analysis._tiny import Tiny, TinyData


class PruneOddTrials(Callback):
    """Stops odd-numbered trials at global step 2, as a stopping policy would."""

    def bind_trial(self, trial: Any) -> None:
        self.trial = trial

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.trial.number % 2 == 1 and trainer.global_step >= 2 and not trainer.sanity_checking:
            self.trial.request_prune("test: odd trials stop at step 2")
            trainer.should_stop = True


def _search(root: Path, loggers: Any) -> SearchResult:
    runner = SearchRunner(
        metric="val_loss", n_trials=3, storage=f"sqlite:///{root / 'db.sqlite'}", study_name="tracked",
        root_dir=root, quiet=True, loggers=loggers, callbacks=[PruneOddTrials()],
        trainer_kwargs={"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 1, "log_every_n_steps": 1,
                        "accelerator": "cpu"},
    )
    result = runner.fit(Tiny, {"lr": Real(1e-3, 0.5, log=True)}, datamodule=TinyData)
    assert [t.state for t in result.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    return result


def test_run_names_sort_in_trial_order(tmp_path: Path) -> None:
    names = [run_name(n) for n in (0, 2, 10, 11, 100)]
    assert names == sorted(names) and names[1] == "trial_0002"
    (tb,) = build_loggers("tensorboard", TrialLogContext("s", 12, str(tmp_path)))
    assert Path(tb.log_dir) == tmp_path / "s" / "trial_0012"


def test_tensorboard_hparams_show_each_trials_objective_state_and_pruning_step(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    result = _search(tmp_path, "tensorboard")
    for trial in result.trials:
        run = tmp_path / "tracked" / run_name(trial.number)
        acc = EventAccumulator(str(run))
        acc.Reload()
        assert "hp_metric" not in acc.Tags()["scalars"]
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
        experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
        assert [m.name.tag for m in experiment.metric_infos] == list(OUTCOME_METRICS)
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert start.hparams["state"].string_value == trial.state.value
        assert start.hparams["trial"].number_value == trial.number
        assert math.isclose(start.hparams["lr"].number_value, trial.params["lr"], rel_tol=1e-6)
        scalars = {tag: acc.Scalars(tag)[-1].value for tag in OUTCOME_METRICS}
        if trial.state is TrialState.COMPLETE:
            assert math.isclose(scalars["search/objective"], trial.value, rel_tol=1e-6)
            assert math.isnan(scalars["search/pruned_step"])
        else:
            assert scalars["search/pruned_step"] == trial.last_step == 2


def test_mlflow_gets_params_outcome_metrics_and_state_tags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="install the trackers extra: mlflow-skinny")
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    result = _search(tmp_path, functools.partial(MLFlowLogger, tracking_uri=uri))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tracked")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == [run_name(t.number) for t in result.trials]
    for trial in result.trials:
        data = runs[run_name(trial.number)].data
        assert float(data.params["lr"]) == pytest.approx(trial.params["lr"])
        assert data.tags["frameworm.state"] == trial.state.value and data.tags["frameworm.study"] == "tracked"
        assert data.tags["frameworm.trial"] == str(trial.number)
        if trial.state is TrialState.COMPLETE:
            assert data.metrics["search/objective"] == pytest.approx(trial.value)
            assert "search/pruned_step" not in data.metrics
        else:
            assert data.metrics["search/pruned_step"] == 2 and data.tags["frameworm.reason"].startswith("test:")


class RecordWandbRun(Callback):
    """Writes what each trial's W&B run was called, grouped and tagged, while it runs, to ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def bind_trial(self, trial: Any) -> None:
        self.number = trial.number

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        run = trainer.logger.experiment
        facts = {"name": run.name, "group": run.group, "tags": list(run.tags), "dir": run.dir,
                 "lr": run.config["lr"]}
        (self.folder / f"run{self.number}.json").write_text(json.dumps(facts))


def wandb_summary(run_dir: Path) -> dict[str, Any]:
    """The summary of an offline W&B run, read from its ``.wandb`` file.

    Offline runs keep everything in that file only (no ``wandb-summary.json``): LevelDB's
    log format (a 7-byte ``:W&B`` header, 32 KiB blocks of records, each with a 7-byte
    header: CRC, length, FULL/FIRST/MIDDLE/LAST) around W&B's ``Record`` protobufs.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("*.wandb")
    raw, pos, chunk, summary = path.read_bytes(), 7, b"", {}
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0:
            break
        chunk += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "summary":
                for item in record.summary.update:
                    summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_wandb_gets_one_run_per_trial_with_outcome_in_its_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  n_jobs: int) -> None:
    pytest.importorskip("wandb", reason="install the trackers extra: wandb")
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")  # no account, no network: runs are written under save_dir
    monkeypatch.setenv("WANDB_SILENT", "true")
    runner = SearchRunner(
        metric="val_loss", n_trials=3, storage=f"sqlite:///{tmp_path / 'db.sqlite'}", study_name="tracked",
        root_dir=tmp_path, quiet=True, loggers=functools.partial(WandbLogger, project="fw-test"), n_jobs=n_jobs,
        callbacks=[PruneOddTrials(), RecordWandbRun(tmp_path)],
        trainer_kwargs={"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 1, "log_every_n_steps": 1,
                        "accelerator": "cpu"},
    )
    result = runner.fit(Tiny, {"lr": Real(1e-3, 0.5, log=True)}, datamodule=TinyData)
    assert wandb.run is None  # each trial's run was finished, none leaks into the next
    if n_jobs == 1:
        wandb.teardown()  # W&B's service may still be writing the last run's file: wait, as at exit
    # With n_jobs=2 nothing is waited for here: each trial's process flushed its run before exiting.
    assert sorted(t.state for t in result.trials) == sorted([TrialState.COMPLETE, TrialState.PRUNED,
                                                             TrialState.COMPLETE])
    dirs = set()
    for trial in result.trials:
        run = json.loads((tmp_path / f"run{trial.number}.json").read_text())
        name = run_name(trial.number)
        assert run["name"] == f"tracked/{name}" and run["group"] == "tracked"
        assert set(run["tags"]) == {"tracked", name}
        assert run["lr"] == pytest.approx(trial.params["lr"])
        # Each trial's run lives in the trial's own folder, apart from the others.
        assert Path(run["dir"]).is_relative_to(tmp_path / "tracked" / name)
        dirs.add(run["dir"])
        summary = wandb_summary(Path(run["dir"]).parent)
        assert summary["state"] == trial.state.value
        if trial.state is TrialState.COMPLETE:
            assert summary["search/objective"] == pytest.approx(trial.value)
            assert "search/pruned_step" not in summary  # W&B would show a NaN as null: left out, as in MLflow
        else:
            assert summary["search/pruned_step"] == trial.last_step == 2
    assert len(dirs) == 3
