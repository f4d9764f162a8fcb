"""A study recorded only by stopping callbacks in plain scripts reads back like any other.

Its runs store no search space: :meth:`Study.load` reads one from the params they
recorded, so the study loads, lists, plots and reports; ``frameworm-search trials``
shows it without a ``search.space``; LightningCLI's ``_instantiator`` is not a param.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader, TensorDataset

from frameworm_lightning import Categorical, Integer, Real, SearchResult, Study, TrialState, open_storage
from frameworm_lightning.cli import SearchCLI
from frameworm_lightning.stopping import ImprovementStopping, ThresholdStopping

from ._models import QUIET, CurveModule


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three runs of a training script, each recorded by its callbacks (the last one pruned)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('recorded') / 'runs.db'}"
    for x, batches in ((0.0, 8), (0.2, 4), (1.2, 8)):
        policies = [ImprovementStopping("val_loss", 0.0, 3, storage=url, study="script"),
                    ThresholdStopping("val_loss", threshold=1.5, storage=url, study="script")]
        pl.Trainer(**QUIET, max_epochs=2, callbacks=policies).fit(CurveModule(x=x, batches=batches))
    return url


def test_study_load_reads_the_space_from_the_recorded_params(recorded: str) -> None:
    study = Study.load("script", recorded)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert study.space["x"] == Real(0.0, 1.2)
    assert study.space["batches"] == Integer(4, 8)
    assert study.space["log_val"] == Categorical([True])
    result = SearchResult(study)
    assert result.best_trial.number == 0 and result.best_params["x"] == 0.0


def test_it_lists_plots_and_reports_like_any_study(recorded: str, tmp_path: Path) -> None:
    from frameworm_lightning import analysis

    study = Study.load("script", recorded)
    frame = analysis.trials_dataframe(study)
    assert list(frame["params_x"]) == [0.0, 0.2, 1.2]
    page = analysis.write_report(study, tmp_path, kinds=("history", "slice", "importance"))
    text = page.read_text()
    assert 'id="plot-slice"' in text and 'id="plot-importance"' in text and "Importance table" in text
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 1 + 3


def test_frameworm_search_trials_needs_no_search_space(recorded: str, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SearchCLI(args=["trials", "--model", "tests.stopping._models.CurveModule", "--search.storage", recorded,
                        "--search.study_name", "script"])
    out = capsys.readouterr().out
    assert "3 trials: 2 complete, 1 pruned; best is trial 0" in out


class Bare(pl.LightningModule):
    """A module that never calls ``save_hyperparameters()``: its runs record no params."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=1)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return (self.layer(batch[0]) ** 2).mean()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", 0.5)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_a_study_whose_runs_recorded_no_params_loads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    pl.Trainer(**QUIET, max_epochs=1, callbacks=[ImprovementStopping("val_loss", storage=url, study="bare")]).fit(Bare())
    study = Study.load("bare", url)
    assert len(study.space) == 0 and study.best_trial.value == pytest.approx(0.5)


def test_lightning_clis_instantiator_is_not_a_param(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    policy = {"class_path": "frameworm_lightning.stopping.ImprovementStopping",
              "init_args": {"monitor": "val_loss", "storage": url, "study": "cli"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = LightningCLI(CurveModule, args=[
            "fit", "--model.x=0.25", "--trainer.max_epochs=1", "--trainer.logger=false",
            "--trainer.enable_checkpointing=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.callbacks={json.dumps([policy])}",
        ])
    assert "_instantiator" in cli.model.hparams  # what LightningCLI adds...
    store = open_storage(url)
    [trial] = store.get_trials(store.load_study("cli").study_id)
    assert "_instantiator" not in trial.params and trial.params["x"] == 0.25  # ...is not a hyperparameter


def test_a_run_judged_on_another_metric_than_its_study_names_the_callbacks_own_argument(tmp_path: Path) -> None:
    from frameworm_lightning import StudyMismatchError

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    pl.Trainer(**QUIET, max_epochs=1, callbacks=[ThresholdStopping("val_loss", storage=url, study="s")]).fit(
        CurveModule())
    policy = ThresholdStopping("train_loss", storage=url, study="s")
    with pytest.raises(StudyMismatchError, match=r"metric 'val_loss' is stored, this run uses 'train_loss'.*"
                                                 r"Use another study= name"):
        pl.Trainer(**QUIET, max_epochs=1, callbacks=[policy]).fit(CurveModule())
    assert [t.state for t in open_storage(url).get_trials(open_storage(url).load_study("s").study_id)] == [
        TrialState.COMPLETE]  # the refused run stored nothing
