"""A small real search: per-trial loggers, config.yaml, kept checkpoints, reuse of the best model."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger

from frameworm_lightning import FramewormError, Real, SearchResult, SearchRunner, Study, TrialState
from frameworm_lightning.runner._artifacts import RUNNER_ATTR, jsonable
from frameworm_lightning.runner._loggers import TrialLogContext, build_loggers, check_loggers

from ._studies import build_study
from ._tiny import Tiny, TinyData


class Opaque:
    """An argument JSON cannot hold."""

    def __repr__(self) -> str:
        return "Opaque()"


def extra_logger(ctx: TrialLogContext) -> Logger:
    """A second logger, built by a factory from the trial's context."""
    return CSVLogger(save_dir=str(Path(ctx.root_dir) / "extra"), name=f"{ctx.study_name}-extra", version=ctx.version)


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchResult, Path, str]:
    root = tmp_path_factory.mktemp("runs")
    url = f"sqlite:///{root / 'db.sqlite'}"
    runner = SearchRunner(
        metric="val_loss", n_trials=3, storage=url, study_name="tiny", root_dir=root, quiet=True,
        trainer_kwargs={"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 1, "log_every_n_steps": 1,
                        "accelerator": "cpu"},
        loggers=["csv", extra_logger], keep_checkpoints="best",
    )
    result = runner.fit(Tiny, {"lr": Real(1e-3, 0.5, log=True), "data.size": [8, 16]}, datamodule=TinyData,
                        model_kwargs={"unused": 0.25, "extra": Opaque()})
    assert result.count(TrialState.COMPLETE) == 3, result.to_dataframe()[["state", "error"]]
    return result, root, url


def test_each_trial_saves_its_config_as_yaml(search: tuple[SearchResult, Path, str]) -> None:
    result, root, _ = search
    for t in result.trials:
        config = yaml.safe_load((root / "tiny" / f"trial_{t.number:04d}" / "config.yaml").read_text())
        assert config["study"] == "tiny" and config["trial"] == t.number and config["seed"] == t.number
        assert config["params"] == t.params
        assert config["model"] == {"unused": 0.25, "extra": "Opaque()", "lr": t.params["lr"]}
        assert config["data"] == {"size": t.params["data.size"]}
        assert config["trainer"]["max_epochs"] == 2
        assert config["module"].endswith("_tiny:Tiny") and config["datamodule"].endswith("_tiny:TinyData")


def test_each_trial_logs_to_its_own_runs_named_after_study_and_trial(search: tuple[SearchResult, Path, str]) -> None:
    result, root, _ = search
    for t in result.trials:
        run = root / "tiny" / f"trial_{t.number:04d}"  # CSVLogger(save_dir=root, name=study, version=trial_000n)
        assert "val_loss" in (run / "metrics.csv").read_text().splitlines()[0]
        hparams = yaml.safe_load((run / "hparams.yaml").read_text())
        assert hparams["lr"] == t.params["lr"] and hparams["study"] == "tiny" and hparams["trial"] == t.number
        extra = root / "extra" / "tiny-extra" / f"trial_{t.number:04d}"
        assert (extra / "metrics.csv").exists() and (extra / "hparams.yaml").exists()


def test_only_the_best_checkpoint_is_kept(search: tuple[SearchResult, Path, str]) -> None:
    result, root, _ = search
    best = Path(result.best_checkpoint)
    assert best.exists() and best.parent.parent == root / "tiny" / f"trial_{result.best_trial.number:04d}"
    for t in result.trials:
        if t.number != result.best_trial.number:
            assert t.system_attrs["checkpoint_path"] is None
            assert not Path(t.system_attrs["checkpoint_removed"]).exists()
    assert sorted(root.glob("tiny/trial_*/checkpoints/*.ckpt")) == [best]


def test_the_runner_records_how_to_rebuild_its_models(search: tuple[SearchResult, Path, str]) -> None:
    result, root, _ = search
    record = result.runner_record()
    assert record == result.study.storage.load_study("tiny").user_attrs[RUNNER_ATTR]
    assert record["module_cls"].endswith("_tiny:Tiny")
    assert record["datamodule"]["class"].endswith("_tiny:TinyData")
    assert record["model_kwargs"] == {"unused": 0.25} and record["not_recorded"] == ["model_kwargs.extra"]
    assert record["trainer_kwargs"]["max_epochs"] == 2 and record["root_dir"] == str(root.resolve())


def test_load_best_model_from_a_study_read_back_from_storage(search: tuple[SearchResult, Path, str]) -> None:
    result, _, url = search
    reread = SearchResult(Study.load("tiny", url))
    model = reread.load_best_model(Tiny)
    assert isinstance(model, Tiny)
    assert model.hparams.lr == pytest.approx(reread.best_params["lr"]) and model.hparams.unused == 0.25
    saved = torch.load(reread.best_checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name])
    assert reread.load_best_model(Tiny, extra="given").extra == "given"


def test_retrain_best_trains_the_best_config_with_a_full_budget(search: tuple[SearchResult, Path, str]) -> None:
    result, root, url = search
    reread = SearchResult(Study.load("tiny", url))
    model = reread.retrain_best(max_epochs=3, datamodule=TinyData, module_cls=Tiny,
                                trainer_kwargs={"enable_progress_bar": False, "enable_model_summary": False})
    assert isinstance(model, Tiny) and model.hparams.lr == pytest.approx(reread.best_params["lr"])
    assert model.trainer.current_epoch == 3 and model.trainer.max_epochs == 3
    assert model.trainer.datamodule.size == reread.best_params["data.size"]
    checkpoint = root / "tiny" / "retrain_best" / "checkpoints" / "best.ckpt"
    assert checkpoint.exists() and (root / "tiny" / "retrain_best" / "metrics.csv").exists()
    retrained = reread.study.storage.load_study("tiny").user_attrs["frameworm.retrained"]
    assert retrained == {"trial": reread.best_trial.number, "max_epochs": 3, "checkpoint_path": str(checkpoint)}


def test_reuse_needs_a_module_class_for_a_study_the_runner_did_not_run(tmp_path: Path) -> None:
    result = SearchResult(build_study("by-hand", n=4, prune_every=None, fail=()))
    assert result.runner_record() is None
    with pytest.raises(FramewormError, match="module_cls="):
        result.retrain_best(max_epochs=1)
    with pytest.raises(FramewormError, match="no checkpoint"):
        result.load_best_model(Tiny)


# Loggers and records, without training -------------------------------------------------------
def test_build_loggers_names_each_trial_after_its_study_and_number(tmp_path: Path) -> None:
    ctx = TrialLogContext("s", 4, str(tmp_path))
    (csv,) = build_loggers(None, ctx)
    assert isinstance(csv, CSVLogger) and Path(csv.log_dir) == tmp_path / "s" / "trial_0004"
    (custom,) = build_loggers(functools.partial(CSVLogger, name="mine"), ctx)  # the partial's args win
    assert custom.name == "mine" and custom.version == "trial_0004"
    (made,) = build_loggers(extra_logger, ctx)
    assert made.name == "s-extra"
    instance = CSVLogger(str(tmp_path))
    assert build_loggers([instance], ctx) == [instance]
    assert build_loggers(False, ctx) is False
    assert len(build_loggers(["csv", CSVLogger], ctx)) == 2


def test_tensorboard_logger_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="TensorBoard is optional")
    (tb,) = build_loggers("tensorboard", TrialLogContext("s", 1, str(tmp_path)))
    assert Path(tb.log_dir) == tmp_path / "s" / "trial_0001"


def test_bad_logger_or_checkpoint_settings_fail_before_training() -> None:
    with pytest.raises(ValueError, match="unknown logger 'nope'"):
        SearchRunner(loggers="nope")
    with pytest.raises(ValueError, match="a logger must be"):
        check_loggers([3])
    with pytest.raises(ValueError, match="keep_checkpoints="):
        SearchRunner(keep_checkpoints="some")


def test_jsonable_leaves_out_and_lists_what_json_cannot_hold() -> None:
    dropped: list[str] = []
    value = jsonable({"a": 1, "b": [Path("x"), Opaque()], "c": {"d": None, "e": Opaque()}}, "kw", dropped)
    assert value == {"a": 1, "b": ["x", None], "c": {"d": None}}
    assert dropped == ["kw.b[1]", "kw.c.e"]


def test_result_and_runner_agree_on_the_record_attribute() -> None:
    from frameworm_lightning import result as result_module

    assert result_module._RUNNER_ATTR == RUNNER_ATTR


def test_remove_checkpoints_keeps_the_best_and_what_a_pending_trial_resumes_from(tmp_path: Path) -> None:
    from frameworm_lightning.runner._artifacts import remove_checkpoints

    study = Study.create("ckpts", {"x": Real(0, 1)}, storage="memory")
    files = []
    for value in (0.1, 0.5, 0.9):
        trial = study.ask()
        files.append(tmp_path / f"trial_{trial.number}" / "checkpoints" / "best.ckpt")
        files[-1].parent.mkdir(parents=True)
        files[-1].write_bytes(b"ckpt")
        trial.complete(value, checkpoint_path=str(files[-1]))
    pending = study.ask()
    pending.set_system_attr("resume_checkpoint", str(files[2]))  # e.g. a promoted trial
    assert remove_checkpoints(study) == [files[1]]
    assert files[0].exists() and files[2].exists() and not files[1].parent.exists()
    removed = study.trials[1].system_attrs
    assert removed["checkpoint_path"] is None and removed["checkpoint_removed"] == str(files[1])
    pending.complete(1.0)


def test_retrain_best_refuses_params_only_a_trial_callback_could_apply(tmp_path: Path) -> None:
    # A LightningCLI search (frameworm-search) searches optimizer.* and lr_scheduler.*, which its
    # own trial callback applies; retraining without it would silently use the defaults.
    study = Study.create("cli", {"lr": Real(1e-3, 0.5, log=True), "optimizer.init_args.lr": Real(1e-3, 0.1)},
                         metric="val_loss", storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    trial = study.ask()
    trial.complete(0.5)
    with pytest.raises(FramewormError, match=r"optimizer\.init_args\.lr.*frameworm-search best"):
        SearchResult(study).retrain_best(max_epochs=1, module_cls=Tiny, datamodule=TinyData, root_dir=tmp_path)
    assert not (tmp_path / "cli").exists()  # nothing trained


def test_retrain_best_after_a_search_with_trainer_callbacks_runs_and_names_what_it_runs_without(tmp_path: Path) -> None:
    # The user's callbacks cannot be stored (JSON); their places were recorded as None and
    # retrain_best crashed inside Lightning (AttributeError: 'NoneType' object has no attribute 'log').
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    fast = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "logger": False,
            "enable_progress_bar": False, "enable_model_summary": False}
    result = SearchRunner(metric="val_loss", n_trials=1, storage=url, root_dir=tmp_path, quiet=True,
                          trainer_kwargs={**fast, "callbacks": [EarlyStopping("val_loss"), ModelCheckpoint(
                              monitor="val_loss", save_top_k=2)]}).fit(Tiny, {"lr": Real(1e-3, 0.5)},
                                                                        datamodule=TinyData)
    with pytest.warns(UserWarning, match=r"retrain_best runs without trainer_kwargs\.callbacks\[0\], "
                                         r"trainer_kwargs\.callbacks\[1\] \(not stored with the study"):
        model = result.retrain_best(max_epochs=1, module_cls=Tiny, datamodule=TinyData)
    assert model.trainer.current_epoch == 1
    assert not any(isinstance(cb, EarlyStopping) for cb in model.trainer.callbacks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = result.retrain_best(max_epochs=1, module_cls=Tiny, datamodule=TinyData,
                                    trainer_kwargs={"callbacks": [EarlyStopping("val_loss", patience=7)]})
    assert not [w for w in caught if "retrain_best runs without" in str(w.message)]
    assert [cb.patience for cb in model.trainer.callbacks if isinstance(cb, EarlyStopping)] == [7]


class SavesAnObject(Tiny):
    """Puts ``extra`` in its hyperparameters too (``save_hyperparameters()``, which Lightning only warns about)."""

    def __init__(self, lr: float = 0.1, extra: Any = None) -> None:
        super().__init__(lr=lr, extra=extra)
        self.save_hyperparameters()


def test_load_best_model_of_a_checkpoint_holding_an_object_names_it_and_the_fixes(tmp_path: Path) -> None:
    # The error ended in torch's own text (ANSI codes, "two options" about torch.load) and named no fix.
    result = SearchRunner(metric="val_loss", n_trials=1, root_dir=tmp_path, quiet=True,
                          trainer_kwargs={"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1}).fit(
        SavesAnObject, {"lr": Real(1e-3, 0.5, log=True)}, datamodule=TinyData, model_kwargs={"extra": torch.nn.Linear(1, 1)})
    with pytest.raises(FramewormError, match=r"is not a plain weights file, so it is not loaded \(weights_only=True "
                                             r"refused it: it holds a pickled torch\.nn\.modules\.linear\.Linear\)\. "
                                             r".*save_hyperparameters\(ignore=\[\.\.\.\]\).*if you trust the file, "
                                             r"load it yourself: SavesAnObject\.load_from_checkpoint\(.*"
                                             r"weights_only=False\)") as caught:
        result.load_best_model()
    assert "\x1b" not in str(caught.value)
    model = SavesAnObject.load_from_checkpoint(result.best_checkpoint, weights_only=False)  # the fix it names works
    assert isinstance(model.hparams.extra, torch.nn.Linear)


@pytest.mark.parametrize(("resource", "retrained_steps"), [("epochs", 2 * 4), ("steps", 6)])
def test_retrain_best_after_a_halving_search_trains_the_budget_its_policy_gave(tmp_path: Path, resource: str,
                                                                              retrained_steps: int) -> None:
    # The policy's limits (max_resource) never reached the record: retrain_best() trained with Lightning's
    # own default, max_epochs=1000, where the search had trained its best config for 2 epochs (or 6 steps).
    from frameworm_lightning import ASHA

    policy = ASHA(min_resource=1, max_resource=2, eta=2) if resource == "epochs" else \
        ASHA(min_resource=3, max_resource=6, eta=2, resource="steps")
    result = SearchRunner(metric="val_loss", n_trials=2, root_dir=tmp_path, quiet=True, callbacks=[policy],
                          trainer_kwargs={"limit_val_batches": 1, "enable_progress_bar": False}).fit(
        Tiny, {"lr": Real(1e-3, 0.5, log=True)}, datamodule=TinyData)
    assert result.runner_record()["trainer_limits"] == policy.trainer_limits()
    for t in result.trials:  # what each trial trained with
        config = yaml.safe_load((Path(t.system_attrs["trial_dir"]) / "config.yaml").read_text())
        assert {k: config["trainer"][k] for k in policy.trainer_limits()} == policy.trainer_limits()
    model = result.retrain_best()
    assert model.trainer.global_step == retrained_steps  # 4 batches an epoch
    model = result.retrain_best(max_epochs=3)  # replaces the budget, on steps too
    assert model.trainer.global_step == 3 * 4
