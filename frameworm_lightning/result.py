"""The outcome of a search, in memory or read back from storage: analyse it, reuse it.

Analysis (tables, importance, plots, the HTML report) needs the ``analysis`` extra and
is imported when first used; so is Lightning, for reusing the best model.

What storage holds is data, never code (``docs/trust.md``): the class names the runner
recorded are only checked against the classes the caller passes, never imported, and
checkpoints are loaded with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frameworm_lightning.exceptions import FramewormError
from frameworm_lightning.study import Study
from frameworm_lightning.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import lightning.pytorch as pl
    import pandas as pd
    from plotly.graph_objects import Figure

__all__ = ["SearchResult"]

# The study attribute where the runner records how it built its models (runner/_artifacts.py).
_RUNNER_ATTR = "frameworm.runner"
_RETRAINED_ATTR = "frameworm.retrained"


def _check_recorded(what: str, given: type, recorded: Any) -> None:
    """Raise unless ``given`` is the class the runner recorded (by name; nothing is imported).

    A class of the search script is recorded as ``__main__:Name``; the same class
    imported from that script elsewhere (``script:Name``) matches it.
    """
    if recorded is None:
        return
    name = f"{given.__module__}:{given.__qualname__}"
    if not isinstance(recorded, str):
        raise FramewormError(f"the stored {what} {recorded!r} is not a class name; the study's runner record "
                             "is damaged or was not written by frameworm-lightning.")
    module, _, qualname = recorded.partition(":")
    if name == recorded or (module in ("__main__", "__mp_main__") and qualname == given.__qualname__):
        return
    raise FramewormError(f"the study records {what} {recorded!r}, but {name!r} was passed; pass the class the "
                         "search used (stored names are only checked, never imported).")


class SearchResult:
    """What a search found: the best trial, its params and score, and every trial.

    It reads the study's storage, so a result built from a stored study
    (``SearchResult(Study.load(name, storage))``) is the same as the one ``fit`` returned.

    Example:
        >>> from frameworm_lightning import Real, Study
        >>> study = Study.create("r", {"x": Real(0, 1)}, metric="loss")
        >>> t = study.ask(); _ = t.complete(0.5)
        >>> SearchResult(study).best_score
        0.5
    """

    def __init__(self, study: Study, *, module_cls: type[pl.LightningModule] | None = None,
                 datamodule: Any = None) -> None:
        self.study = study
        # The classes the caller trusts (``SearchRunner.fit`` passes its own): used by
        # load_best_model / retrain_best when they are not passed again; still checked
        # against the names in storage, which are never imported.
        self.module_cls = module_cls
        self.datamodule = datamodule
        self.trials: list[FrozenTrial] = study.trials
        complete = [t for t in self.trials if t.state is TrialState.COMPLETE and t.value is not None]
        best: FrozenTrial | None = None
        for t in complete:
            if best is None or study.is_better(t.value, best.value):  # type: ignore[arg-type]
                best = t
        self.best_trial: FrozenTrial | None = best

    @property
    def metric(self) -> str:
        return self.study.metric

    @property
    def mode(self) -> str:
        return self.study.mode

    @property
    def best_params(self) -> dict[str, Any] | None:
        """The best trial's params (dotted keys), or ``None`` if no trial completed."""
        return None if self.best_trial is None else self.study.space.canonical(self.best_trial.params)

    @property
    def best_score(self) -> float | None:
        return None if self.best_trial is None else self.best_trial.value

    @property
    def best_checkpoint(self) -> str | None:
        """Path of the best trial's best checkpoint, when one was saved."""
        return None if self.best_trial is None else self.best_trial.system_attrs.get("checkpoint_path")

    def count(self, state: TrialState) -> int:
        return sum(t.state is state for t in self.trials)

    # Analysis ---------------------------------------------------------------------------
    def to_dataframe(self, states: tuple[TrialState, ...] | None = None) -> pd.DataFrame:
        """Every trial as a row (see :func:`frameworm_lightning.analysis.trials_dataframe`)."""
        from frameworm_lightning.analysis import trials_dataframe  # noqa: PLC0415 - optional extra

        return trials_dataframe(self, states)

    def top(self, k: int = 5) -> pd.DataFrame:
        """The rows of :meth:`to_dataframe` for the ``k`` best complete trials, best first."""
        from frameworm_lightning.analysis import top_k  # noqa: PLC0415

        return top_k(self, k)

    def importance(self, **options: Any) -> dict[str, float]:
        """``{param: importance}`` by functional ANOVA on a random forest, most important first.

        ``options``: ``normalize``, ``n_trees``, ``max_depth``, ``seed``
        (see :func:`frameworm_lightning.analysis.param_importance`).
        """
        from frameworm_lightning.analysis import param_importance  # noqa: PLC0415

        return param_importance(self, **options)

    def plot(self, kind: str = "history", path: str | os.PathLike[str] | None = None, **options: Any) -> Figure:
        """The interactive plotly figure of ``kind`` (``history``, ``curves``, ``importance``,
        ``parallel``, ``slice``, ``contour``, ``edf``), saved at ``path`` (``.html``, or
        ``.png``/``.svg``/``.pdf`` with the ``export`` extra) when given."""
        from frameworm_lightning.analysis import plot  # noqa: PLC0415

        return plot(self, kind, path, **options)

    def report(self, path: str | os.PathLike[str], **options: Any) -> Path:
        """Write the self-contained HTML report.

        ``path`` ending in ``.html`` is the report file itself; otherwise it is a folder
        that receives ``report.html`` and ``trials.csv``.
        """
        from frameworm_lightning.analysis import render_report, write_report  # noqa: PLC0415

        target = Path(path)
        if target.suffix.lower() in (".html", ".htm"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(render_report(self, **options), encoding="utf-8")
            return target
        return write_report(self, target, **options)

    # Reuse ------------------------------------------------------------------------------
    def runner_record(self) -> dict[str, Any] | None:
        """How the runner built this study's models (``None`` for a study it did not run)."""
        record = self.study.storage.load_study(self.study.name)
        return None if record is None else record.user_attrs.get(_RUNNER_ATTR)

    def _require_best(self) -> FrozenTrial:
        if self.best_trial is None:
            raise FramewormError(f"study {self.study.name!r} has no complete trial to reuse.")
        return self.best_trial

    def _module_cls(self, module_cls: type[pl.LightningModule] | None, record: Mapping[str, Any] | None) -> Any:
        recorded = None if record is None else record.get("module_cls")
        module_cls = module_cls if module_cls is not None else self.module_cls
        if module_cls is None:
            hint = f" (the study records {recorded!r})" if isinstance(recorded, str) else ""
            raise FramewormError(f"pass module_cls=, the LightningModule class of study {self.study.name!r}{hint}; "
                                 "classes named in storage are never imported.")
        _check_recorded("module class", module_cls, recorded)
        return module_cls

    def _checkpoint_file(self, record: Mapping[str, Any] | None) -> Path:
        path = self.best_checkpoint
        if not path:
            best = self._require_best()
            trainer_kwargs = (record or {}).get("trainer_kwargs") or {}
            if trainer_kwargs.get("enable_checkpointing") is False:
                why = "the search ran with enable_checkpointing=False"
            elif (record or {}).get("save_checkpoint") is False:
                why = "the search ran with save_checkpoints=False"
            elif best.system_attrs.get("checkpoint_removed"):
                why = f"its checkpoint {best.system_attrs['checkpoint_removed']!r} was removed"
            else:
                why = "none was saved"
            raise FramewormError(f"the best trial ({best.number}) of study {self.study.name!r} has no checkpoint: "
                                 f"{why}; use retrain_best() to train its config again.")
        candidates = [Path(path)]
        if record is not None and not Path(path).is_absolute():
            candidates.append(Path(record["cwd"]) / path)  # relative to where the search ran
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise FramewormError(f"the best checkpoint {path!r} does not exist (looked at "
                             f"{', '.join(str(c) for c in candidates)}).")

    def load_best_model(self, module_cls: type[pl.LightningModule] | None = None, *,
                        map_location: Any = "cpu", **model_kwargs: Any) -> pl.LightningModule:
        """The best trial's module, restored from its best checkpoint.

        Works on a study read back from storage. ``module_cls`` is the class to build:
        the class name the runner recorded is never imported, only compared with it (a
        different class is an error naming both). The module is built with the best
        params applied to the search's recorded ``model_kwargs`` and the ``model_kwargs``
        given here, which replace recorded ones (arguments that could not be recorded,
        such as objects or a dataclass whose fields were searched). The
        checkpoint is loaded with ``weights_only=True``: tensors and plain containers,
        never pickled code.

        Raises:
            FramewormError: no complete trial, no checkpoint, no or another
                ``module_cls``, or a checkpoint that is not a plain weights file.
        """
        from frameworm_lightning.runner._routing import route_params  # noqa: PLC0415

        best = self._require_best()
        record = self.runner_record()
        cls = self._module_cls(module_cls, record)
        file = self._checkpoint_file(record)
        base = {**((record or {}).get("model_kwargs") or {}), **model_kwargs}  # as retrain_best: params applied to both
        routed = route_params(self.study.space.canonical(best.params), base)
        try:
            return cls.load_from_checkpoint(file, map_location=map_location, weights_only=True, **routed.model)
        except pickle.UnpicklingError as err:
            found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
            what = (f"it holds a pickled {found.group(1)}" if found
                    else " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(err)).split())[:300])  # no terminal colours
            raise FramewormError(
                f"the best checkpoint {str(file)!r} is not a plain weights file, so it is not loaded (weights_only=True "
                f"refused it: {what}). A hyperparameter that is an object (an argument saved by "
                "save_hyperparameters()) is the usual cause: search with save_hyperparameters(ignore=[...]), as "
                f"Lightning advises; or, if you trust the file, load it yourself: {cls.__name__}.load_from_checkpoint("
                f"{str(file)!r}, weights_only=False)."
            ) from None

    def retrain_best(
        self,
        max_epochs: int | None = None,
        datamodule: Any = None,
        *,
        module_cls: type[pl.LightningModule] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        datamodule_kwargs: Mapping[str, Any] | None = None,
        trainer_kwargs: Mapping[str, Any] | None = None,
        root_dir: str | os.PathLike[str] | None = None,
        seed: int | None = None,
    ) -> pl.LightningModule:
        """Train a fresh module with the best params again, with a full budget.

        The module, datamodule and ``Trainer`` are built as in the search (recorded
        classes and base arguments, best params applied) without the search's stopping
        callbacks; ``max_epochs`` replaces the trial budget. Output goes to
        ``<root_dir>/<study>/retrain_best/`` (a CSV log and ``checkpoints/best.ckpt``,
        monitored on the study's metric), and the checkpoint path is stored as the
        study attribute ``frameworm.retrained``.

        Args:
            max_epochs: the training budget (default: the search's own, a halving policy's
                ``max_resource`` included).
            datamodule: a LightningDataModule class (built with the routed ``data.*``
                params) or instance; needed when the search had one: the class the
                runner recorded is never imported, only compared with this one.
            module_cls: the LightningModule class (required; compared with the recorded name).
            model_kwargs / datamodule_kwargs / trainer_kwargs: override what was
                recorded (needed for arguments JSON cannot hold).
            root_dir: where to write (default: the search's ``root_dir``).
            seed: ``seed_everything`` seed (default: the best trial's).

        Returns:
            The trained module; ``model.trainer`` is the Trainer that trained it.

        Raises:
            FramewormError: no complete trial, a class missing or different from the
                recorded one, or best params (``optimizer.*``, ``lr_scheduler.*``) that
                only the search's trial callback could apply (before any training).
        """
        import inspect  # noqa: PLC0415

        import lightning.pytorch as pl  # noqa: PLC0415
        from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: PLC0415
        from lightning.pytorch.loggers import CSVLogger  # noqa: PLC0415

        from frameworm_lightning.runner._execute import TrialSpec  # noqa: PLC0415
        from frameworm_lightning.runner._routing import CALLBACK_TARGETS  # noqa: PLC0415

        best = self._require_best()
        applied_by_callbacks = sorted(k for k in best.params if k.split(".", 1)[0] in CALLBACK_TARGETS)
        if applied_by_callbacks:
            raise FramewormError(
                f"the best params hold {', '.join(applied_by_callbacks)}, which the search's own trial callback "
                "applied (a frameworm-search LightningCLI run); retrain_best cannot apply them. Write the best "
                "trial's config with frameworm-search best -c <config> --output best.yaml and train it with "
                "frameworm-search fit -c best.yaml."
            )
        record: Mapping[str, Any] = self.runner_record() or {}
        cls = self._module_cls(module_cls, record or None)
        datamodule = datamodule if datamodule is not None else self.datamodule
        recorded_dm = record.get("datamodule")
        recorded_dm_name = recorded_dm.get("class") or recorded_dm.get("instance_of") \
            if isinstance(recorded_dm, Mapping) else None
        if datamodule is None and recorded_dm:
            raise FramewormError(f"pass datamodule=, the datamodule class (or an instance) of study "
                                 f"{self.study.name!r} (the study records {recorded_dm_name!r}); classes named "
                                 "in storage are never imported.")
        if datamodule is not None:
            _check_recorded("datamodule class", datamodule if inspect.isclass(datamodule) else type(datamodule),
                            recorded_dm_name)
        limits = record.get("trainer_limits") or {}  # the search's budget, where its policy set it (halving)
        given = {"model_kwargs": model_kwargs, "data_kwargs": datamodule_kwargs, "trainer_kwargs": trainer_kwargs}
        missing = []  # what the search had but its record could not hold ("trainer_kwargs.callbacks[0]"), not given again
        for where in record.get("not_recorded", []):
            section, _, rest = where.partition(".")
            if re.split(r"[.\[]", rest, maxsplit=1)[0] not in (given.get(section) or {}):
                missing.append(where)
        if missing:
            warnings.warn(f"retrain_best runs without {', '.join(missing)} (not stored with the study: JSON cannot "
                          "hold them); pass them again to use them, e.g. trainer_kwargs={'callbacks': [...]}.",
                          UserWarning, stacklevel=2)
        spec = TrialSpec(  # the search's own recipe for a run, without its stopping callbacks
            module_cls=cls, datamodule=datamodule,
            model_kwargs={**record.get("model_kwargs", {}), **dict(model_kwargs or {})},
            data_kwargs={**record.get("data_kwargs", {}), **dict(datamodule_kwargs or {})},
            trainer_kwargs={**record.get("trainer_kwargs", {}), **limits, **dict(trainer_kwargs or {})},
        )
        if seed is None and record.get("seed") is not None:
            seed = record["seed"] + best.number
        if seed is not None:
            pl.seed_everything(seed, workers=True, verbose=False)
        routed, model, datamodule = spec.build(self.study.space.canonical(best.params))
        root = Path(root_dir if root_dir is not None else record.get("root_dir", "runs"))
        out = root / self.study.name / "retrain_best"
        kwargs = dict(routed.trainer)
        if max_epochs is not None:
            kwargs["max_epochs"] = max_epochs
            if "max_steps" in limits and "max_steps" not in (trainer_kwargs or {}):
                kwargs.pop("max_steps")  # the policy's budget on steps, which max_epochs replaces
        callbacks = [cb for cb in kwargs.pop("callbacks", None) or [] if cb is not None]  # None: not recorded
        checkpoint = None
        if kwargs.get("enable_checkpointing", True):
            checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=self.metric,
                                         mode=self.mode, save_top_k=1, auto_insert_metric_name=False)
            callbacks.append(checkpoint)
        kwargs.setdefault("logger", CSVLogger(save_dir=str(root), name=self.study.name, version="retrain_best"))
        kwargs.setdefault("default_root_dir", str(out))
        trainer = pl.Trainer(callbacks=callbacks, **kwargs)
        for logger in trainer.loggers:
            logger.log_hyperparams({**best.params, "retrain_of_trial": best.number, "study": self.study.name})
        trainer.fit(model, datamodule=datamodule)
        self.study.storage.set_study_attr(self.study.study_id, _RETRAINED_ATTR, {
            "trial": best.number,
            "max_epochs": kwargs.get("max_epochs"),
            "checkpoint_path": checkpoint.best_model_path if checkpoint is not None else None,
        })
        return model

    def __repr__(self) -> str:
        return (
            f"SearchResult(study={self.study.name!r}, trials={len(self.trials)}, "
            f"best_score={self.best_score!r}, best_params={self.best_params!r})"
        )
