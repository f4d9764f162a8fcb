"""Halving policies in a Trainer: the run's length, rung checkpoints, the last rung on steps.

A ``SearchRunner`` gives each trial's ``Trainer`` the policy's limits up front (so a
OneCycleLR planned over ``estimated_stepping_batches`` anneals); a pause at the end of
an epoch is saved where a resume starts the next epoch; paused checkpoints are removed
once no trial will resume from them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

import frameworm_lightning.stopping as stopping
from frameworm_lightning import FramewormError, GridSampler, SearchRunner, TrialState
from frameworm_lightning.stopping import ASHA, SuccessiveHalving, trained_steps

from ._models import QUIET, CurveModule, HoldsAModule, ScheduledModule


def search(tmp_path: Path, policy: pl.Callback, xs: list[float], module: type = CurveModule,
           **kwargs: Any) -> list[Any]:
    trainer_kwargs = {"max_epochs": 100, "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                      **kwargs.pop("trainer_kwargs", {})}
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), root_dir=tmp_path, quiet=True, callbacks=[policy],
                          trainer_kwargs=trainer_kwargs, **kwargs)
    return runner.fit(module, {"x": xs}).trials


def test_the_runner_gives_the_trainer_the_run_length_so_a_one_cycle_schedule_anneals(tmp_path: Path) -> None:
    ScheduledModule.final_lr.clear()
    ScheduledModule.epoch_ends.clear()
    done = search(tmp_path, SuccessiveHalving(min_resource=1, max_resource=3, eta=3), [0.0, 0.1, 0.2],
                  module=ScheduledModule, save_checkpoints=False)
    [final] = [t for t in done if t.state is TrialState.COMPLETE]
    assert final.params["x"] == 0.0 and trained_steps(final) == 16
    # the promoted config ended its OneCycleLR where a plain 24-step cycle ends (planned over
    # max_epochs=100 it would still be near its peak); the paused ones stopped mid-cycle
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=24)
    for _ in range(24):
        optimizer.step()
        cycle.step()
    assert ScheduledModule.final_lr[0.0] == pytest.approx(optimizer.param_groups[0]["lr"])
    assert ScheduledModule.final_lr[0.0] < 1e-3
    assert ScheduledModule.final_lr[0.1] > 0.09


@pytest.mark.parametrize("trainer_kwargs", [{}, {"val_check_interval": 0.5}])  # checked at the epoch end / validation
def test_a_promoted_trial_does_not_replay_the_epoch_end_it_paused_at(tmp_path: Path,
                                                                     trainer_kwargs: dict[str, Any]) -> None:
    ScheduledModule.epoch_ends.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = search(tmp_path, SuccessiveHalving(min_resource=1, max_resource=3, eta=3), [0.0, 0.1, 0.2],
                      module=ScheduledModule, trainer_kwargs=trainer_kwargs)
    # each config ran on_train_epoch_end once per epoch it trained: 3 for the promoted one, 1 for the others
    assert ScheduledModule.epoch_ends == {0.0: 3, 0.1: 1, 0.2: 1}
    child = next(t for t in done if "promoted_from" in t.system_attrs)
    assert sorted(child.intermediate_values)[-1] == 24 and min(child.intermediate_values) > 8
    shown = [str(w.message) for w in caught]
    assert not [m for m in shown if "ended before the epoch ended" in m or "ModelCheckpoint" in m], shown
    assert not [m for m in shown if "dirpath has changed" in m], shown  # the trial checkpoint restarts in its folder
    best = Path(child.system_attrs["checkpoint_path"])
    assert best.is_file() and best.parent.parent == Path(child.system_attrs["trial_dir"])  # its own best, its own folder



@pytest.mark.parametrize("trainer_kwargs", [{}, {"val_check_interval": 0.5}])
def test_a_promoted_trial_on_steps_judges_no_stale_epoch_end(tmp_path: Path, trainer_kwargs: dict[str, Any]) -> None:
    # On steps a fresh trial's Trainer has max_steps (iteration-based training), whose resume replayed the end
    # of the epoch a pause was saved at, with no metric: a rung recorded twice, a report at the paused step, and
    # the runner's best checkpoint warned "could not find the monitored key" in every promoted trial. A
    # promoted trial now resumes bounded by epochs (resume_limits), which replays nothing.
    ScheduledModule.epoch_ends.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = search(tmp_path, SuccessiveHalving(min_resource=8, max_resource=24, eta=3, resource="steps"),
                      [0.0, 0.1, 0.2], module=ScheduledModule, trainer_kwargs=trainer_kwargs)
    child = next(t for t in done if "promoted_from" in t.system_attrs)
    parent = done[child.system_attrs["promoted_from"]]
    assert child.state is TrialState.COMPLETE and trained_steps(child) == 16
    assert min(child.intermediate_values) > 8 and max(child.intermediate_values) == 24
    assert child.system_attrs["fw_rungs"]["8"] == [parent.intermediate_values[8], True]
    assert child.reason == "reached the largest resource, 24 steps"
    shown = [str(w.message) for w in caught]
    assert not [m for m in shown if "could not find the monitored key" in m], shown

def test_paused_checkpoints_are_removed_once_no_trial_resumes_from_them(tmp_path: Path) -> None:
    xs = [0.0, 0.4, 0.8, 0.3, 0.7, 0.2, 0.6, 0.1, 0.5]
    done = search(tmp_path, ASHA(min_resource=1, max_resource=9, eta=3), xs, keep_checkpoints="best",
                  trainer_kwargs={"limit_train_batches": 2})
    assert any(t.system_attrs.get("fw_checkpoint_removed") for t in done)
    assert sorted(p.name for p in tmp_path.rglob("*.ckpt")) == ["best.ckpt"]
    assert all(t.system_attrs.get("fw_checkpoint") is None for t in done)


def test_steps_with_one_validation_an_epoch_record_the_last_rung(tmp_path: Path) -> None:
    # 8 steps an epoch, validated once per epoch; the last rung, 36 steps, falls mid-epoch.
    xs = [0.0, 0.4, 0.8, 0.3, 0.7, 0.2, 0.6, 0.1, 0.5]
    done = search(tmp_path, ASHA(min_resource=4, max_resource=36, eta=3, resource="steps"), xs,
                  save_checkpoints=False)
    [final] = [t for t in done if t.state is TrialState.COMPLETE]
    assert max(final.intermediate_values) == 36
    assert final.system_attrs["fw_rungs"]["36"][0] == pytest.approx(final.value)
    assert final.system_attrs["fw_stop"]["reason"] == "max_resource"


def test_in_a_users_trainer_a_halving_policy_says_which_limits_to_set(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    policy = ASHA("val_loss", 1, 3, storage=url, study="asha")
    assert policy.trainer_limits() == {"max_epochs": 3}
    assert ASHA("val_loss", 4, 36, resource="steps").trainer_limits() == {"max_steps": 36, "max_epochs": -1}
    with pytest.warns(UserWarning, match=r"pass Trainer\(max_epochs=3\)"):
        trainer = pl.Trainer(**QUIET, max_epochs=10, callbacks=[policy])
        trainer.fit(CurveModule())
    assert trainer.max_epochs == 10 and trainer.current_epoch == 3  # it stopped at the last rung, wrote nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pl.Trainer(**QUIET, **policy.trainer_limits(), callbacks=[ASHA("val_loss", 1, 3, storage=url, study="asha")],
                   ).fit(CurveModule())


def test_a_halving_policy_says_which_rungs_a_sparser_validation_judges_late(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with pytest.warns(UserWarning, match=r"rungs at 1, 3, 18 epochs.*check_val_every_n_epoch=2.*rungs 1, 3 are "
                                         r"judged at the first validation after them"):
        pl.Trainer(**QUIET, max_epochs=18, check_val_every_n_epoch=2,
                   callbacks=[ASHA("val_loss", 1, 18, storage=url, study="late")]).fit(CurveModule())
    with pytest.warns(UserWarning, match=r"check_val_every_n_epoch=2\): rung 1 is judged at the first validation "
                                         r"after it, on more training than the rung says"):
        pl.Trainer(**QUIET, max_epochs=2, check_val_every_n_epoch=2,
                   callbacks=[ASHA("val_loss", 1, 2, eta=2, storage=url, study="one-late")]).fit(CurveModule())
    with warnings.catch_warnings():  # rungs 2, 4, 8: each one is a validation's epoch
        warnings.simplefilter("error", UserWarning)
        pl.Trainer(**QUIET, max_epochs=8, check_val_every_n_epoch=2,
                   callbacks=[ASHA("val_loss", 2, 8, eta=2, storage=url, study="on-time")]).fit(CurveModule())


def test_no_policy_writes_or_reads_lightnings_private_loops() -> None:
    folder = Path(stopping.__file__).parent
    for source in folder.glob("*.py"):
        text = source.read_text()
        for private in ("fit_loop", "epoch_loop", "batch_progress", "_logger_connector"):
            assert private not in text, f"{source.name} uses trainer.{private}"


class InterruptedOnceWhenPromoted(CurveModule):
    """Ctrl-C at the start of the first promoted trial (one resumed from a paused checkpoint)."""

    marker: Path | None = None

    def on_train_epoch_start(self) -> None:
        marker = type(self).marker
        if self.trainer.global_step > 0 and marker is not None and not marker.exists():
            marker.touch()
            raise KeyboardInterrupt


def test_a_promotion_interrupted_by_ctrl_c_runs_again_when_the_search_resumes(tmp_path: Path) -> None:
    # The re-enqueued promotion lost promoted_from: the scheduler counted it as a fresh
    # config over the budget, never claimed it, and the resumed search ended with no
    # trial trained to max_resource (no COMPLETE trial at all).
    InterruptedOnceWhenPromoted.marker = tmp_path / "interrupted"
    kwargs = {"storage": f"sqlite:///{tmp_path / 'db.sqlite'}", "n_trials": None}
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, SuccessiveHalving(min_resource=1, max_resource=3, eta=3), [0.0, 0.1, 0.2],
               module=InterruptedOnceWhenPromoted, **kwargs)
    done = search(tmp_path, SuccessiveHalving(min_resource=1, max_resource=3, eta=3), [0.0, 0.1, 0.2],
                  module=InterruptedOnceWhenPromoted, **kwargs)
    interrupted = [t for t in done if t.interrupted]
    assert len(interrupted) == 1 and "promoted_from" in interrupted[0].system_attrs
    [final] = [t for t in done if t.state is TrialState.COMPLETE]
    assert final.params["x"] == 0.0 and final.system_attrs["retry_of"] == interrupted[0].number
    assert final.system_attrs["promoted_from"] == interrupted[0].system_attrs["promoted_from"]
    assert trained_steps(final) == 16  # from the pause at 1 epoch to max_resource=3 epochs, 8 batches each


def test_a_module_whose_hyperparameters_hold_an_object_is_promoted(tmp_path: Path) -> None:
    # save_hyperparameters() with an nn.Module argument (Lightning only warns) put it, pickled, in the
    # paused checkpoint, which the promoted trial's fit(ckpt_path=..., weights_only=True) refused:
    # every promotion FAILED ("Weights only load failed") and no config reached max_resource.
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), root_dir=tmp_path, quiet=True,
                          callbacks=[ASHA(min_resource=1, max_resource=2, eta=2)],
                          trainer_kwargs={"num_sanity_val_steps": 0, "limit_train_batches": 2})
    done = runner.fit(HoldsAModule, {"x": [0.0, 0.5]}, model_kwargs={"head": torch.nn.Linear(1, 1)}).trials
    assert not [t for t in done if t.state is TrialState.FAILED], [t.error for t in done]
    [final] = [t for t in done if t.state is TrialState.COMPLETE]
    assert "promoted_from" in final.system_attrs and final.params == {"x": 0.0}


class EpochHooks(pl.Callback):
    """A user's callback that records the (epoch, step) of each epoch start and end, per config."""

    seen: dict[tuple[float, str], list[tuple[int, int]]] = {}

    def _note(self, hook: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        key = (float(pl_module.hparams.x), hook)
        EpochHooks.seen.setdefault(key, []).append((trainer.current_epoch, trainer.global_step))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note("start", trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note("end", trainer, pl_module)


@pytest.mark.parametrize("trainer_kwargs", [{}, {"val_check_interval": 0.5}])
def test_a_promoted_trial_on_steps_runs_the_users_epoch_hooks_once_per_epoch(tmp_path: Path,
                                                                              trainer_kwargs: dict[str, Any]) -> None:
    # Paused at an epoch end (8 steps, 8 batches an epoch) and promoted to 24 steps, the config must see what an
    # uninterrupted 24-step run sees. With max_steps, Lightning's resume replayed the paused epoch's end
    # (Lightning-AI/pytorch-lightning#19617): the module's and the user's on_train_epoch_end ran twice for epoch 0,
    # and the user's ModelCheckpoint saved epoch 0 again in the promoted trial's folder.
    ScheduledModule.epoch_ends.clear()
    EpochHooks.seen.clear()
    every_epoch = ModelCheckpoint(save_top_k=-1, filename="{epoch}-{step}", save_on_train_epoch_end=True)
    policy = SuccessiveHalving(min_resource=8, max_resource=24, eta=3, resource="steps")
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), root_dir=tmp_path, quiet=True,
                          callbacks=[policy, EpochHooks(), every_epoch],
                          trainer_kwargs={"num_sanity_val_steps": 0, **trainer_kwargs})
    done = runner.fit(ScheduledModule, {"x": [0.0, 0.1, 0.2]}).trials
    child = next(t for t in done if "promoted_from" in t.system_attrs)
    assert child.state is TrialState.COMPLETE and trained_steps(child) == 16 and child.params["x"] == 0.0
    assert ScheduledModule.epoch_ends == {0.0: 3, 0.1: 1, 0.2: 1}
    assert EpochHooks.seen[(0.0, "start")] == [(0, 0), (1, 8), (2, 16)]
    assert EpochHooks.seen[(0.0, "end")] == [(0, 8), (1, 16), (2, 24)]
    parent = done[child.system_attrs["promoted_from"]]
    saved = {t.number: sorted(p.name for p in Path(t.system_attrs["trial_dir"]).rglob("epoch=*.ckpt"))
             for t in (parent, child)}
    assert saved == {parent.number: ["epoch=0-step=8.ckpt"],
                     child.number: ["epoch=1-step=16.ckpt", "epoch=2-step=24.ckpt"]}
    assert max(child.intermediate_values) == 24 and child.reason == "reached the largest resource, 24 steps"


def _promoted_without_a_dirpath_warning(runner: SearchRunner) -> tuple[list[Any], Any]:
    """The trials of a three-point grid search, and its promoted trial, checking no "dirpath" warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = runner.fit(CurveModule, {"x": [0.0, 0.1, 0.2]}).trials
    shown = [str(w.message) for w in caught]
    assert not [m for m in shown if "dirpath" in m], shown
    return done, next(t for t in done if "promoted_from" in t.system_attrs)


def _logs_elsewhere(ctx: Any) -> CSVLogger:
    """A logger of the user's whose runs live outside the trials' folders (as MLflow's or W&B's do)."""
    return CSVLogger(save_dir=Path(ctx.root_dir).parent / "elsewhere", name="runs", version=ctx.version)


def test_a_users_model_checkpoint_in_a_loggers_folder_starts_afresh_in_a_promoted_trial(tmp_path: Path) -> None:
    # Without a dirpath a ModelCheckpoint saves in the logger's run folder, here outside the trial's own.
    top_one = ModelCheckpoint(monitor="val_loss", filename="{step}")
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), root_dir=tmp_path / "root", quiet=True,
                          callbacks=[SuccessiveHalving(min_resource=1, max_resource=3, eta=3), top_one],
                          loggers=_logs_elsewhere, trainer_kwargs={"num_sanity_val_steps": 0})
    done, child = _promoted_without_a_dirpath_warning(runner)
    best = Path(child.system_attrs["checkpoint_path"])
    assert best == tmp_path / "elsewhere" / "runs" / f"trial_{child.number:04d}" / "checkpoints" / "step=24.ckpt"


@pytest.mark.parametrize("resource", ["epochs", "steps"])
def test_a_users_model_checkpoint_starts_afresh_in_the_promoted_trials_folder(tmp_path: Path, resource: str) -> None:
    # The pause checkpoint carried the user's ModelCheckpoint state with the paused trial's folder: every
    # promoted trial warned "The dirpath has changed from .../trial_0000/checkpoints to .../trial_0003/...",
    # and best_model_path named the parent's file until the promoted trial saved its own.
    top_two = ModelCheckpoint(monitor="val_loss", save_top_k=2, save_last=True, filename="{step}")
    rungs = (8, 24) if resource == "steps" else (1, 3)
    policy = SuccessiveHalving(min_resource=rungs[0], max_resource=rungs[1], eta=3, resource=resource)
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), root_dir=tmp_path, quiet=True,
                          callbacks=[policy, top_two], trainer_kwargs={"num_sanity_val_steps": 0})
    done, child = _promoted_without_a_dirpath_warning(runner)
    parent = done[child.system_attrs["promoted_from"]]
    files = {t.number: sorted(p.name for p in (Path(t.system_attrs["trial_dir"]) / "checkpoints").glob("*.ckpt")
                              if not p.name.startswith("paused"))
             for t in (parent, child)}
    # the parent keeps its own files; the promoted trial keeps its best two and its last in its own folder
    assert files == {parent.number: ["last.ckpt", "step=8.ckpt"],
                     child.number: ["last.ckpt", "step=16.ckpt", "step=24.ckpt"]}
    best = Path(child.system_attrs["checkpoint_path"])  # the user's ModelCheckpoint is the trial's best
    assert best.name == "step=24.ckpt" and best.parent.parent == Path(child.system_attrs["trial_dir"])
    state = torch.load(best, weights_only=True)["callbacks"]
    [mine] = [v for k, v in state.items() if k.startswith("ModelCheckpoint")]
    assert mine["best_model_score"].item() == pytest.approx(child.value)
    assert sorted(Path(p).name for p in mine["best_k_models"]) == ["step=16.ckpt", "step=24.ckpt"]


class PlateauModule(CurveModule):
    """A :class:`CurveModule` whose ReduceLROnPlateau watches a flat metric (patience 0: it halves the learning
    rate at every epoch after the first), recording the learning rate each config ended with."""

    final_lr: dict[float, float] = {}

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self.log("flat", 1.0)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.01)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "flat"}}

    def on_train_end(self) -> None:
        PlateauModule.final_lr[float(self.hparams.x)] = self.trainer.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize("resource", ["epochs", "steps"])
def test_a_promoted_trials_plateau_schedule_steps_at_every_epoch_it_trained(tmp_path: Path, resource: str) -> None:
    # Lightning steps a ReduceLROnPlateau after the epoch-end hooks, so a pause checkpoint saved in
    # on_train_epoch_end held the schedule one epoch behind: the promoted config ended at 0.005, not 0.0025.
    PlateauModule.final_lr.clear()
    rungs = (8, 24) if resource == "steps" else (1, 3)
    search(tmp_path, SuccessiveHalving(min_resource=rungs[0], max_resource=rungs[1], eta=3, resource=resource),
           [0.0, 0.1, 0.2], module=PlateauModule)
    assert PlateauModule.final_lr[0.0] == pytest.approx(0.01 * 0.5 ** 2)  # as three uninterrupted epochs end
    assert PlateauModule.final_lr[0.1] == pytest.approx(0.01)  # one epoch: the first step only sets the best


@pytest.mark.parametrize(("policy", "shown"), [
    (ASHA(min_resource=8, max_resource=24, eta=3, resource="steps"), "24 steps"),
    (ASHA(min_resource=1, max_resource=3, eta=3), "3 epochs"),
])
def test_a_last_rung_no_validation_reaches_is_an_error_before_training(tmp_path: Path, policy: Any, shown: str) -> None:
    # Validated every 2 epochs (8 steps an epoch), the last rung (epoch 3) is never validated: the fresh trials
    # were stored COMPLETE on the value of epoch 2 with no reason, and a promoted one FAILED 'val_loss was never
    # logged' (it resumed into epoch 3 and stopped there).
    with pytest.raises(FramewormError, match=rf"judges its last rung at {shown}, but the Trainer validates every 2 "
                                         r"epochs \(check_val_every_n_epoch=2\): no validation comes at it"):
        search(tmp_path, policy, [0.0, 0.1, 0.2], trainer_kwargs={"check_val_every_n_epoch": 2})


def test_rungs_on_steps_a_sparser_validation_judges_late_are_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with pytest.warns(UserWarning, match=r"rungs at 4, 8, 16 steps.*check_val_every_n_epoch=2\): rungs 4, 8 are judged "
                                         r"at the first validation after them"):
        pl.Trainer(**QUIET, max_steps=16, check_val_every_n_epoch=2,
                   callbacks=[ASHA("val_loss", 4, 16, eta=2, resource="steps", storage=url, study="late")],
                   ).fit(CurveModule())
