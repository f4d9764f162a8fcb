"""What a search leaves beside its storage so its result can be read and reused later.

* The study's runner record (the study user attribute :data:`RUNNER_ATTR`): the import
  paths of the module and datamodule classes and the JSON-able part of the base
  arguments, so ``SearchResult.load_best_model()`` and ``retrain_best()`` work on a study
  read back from storage in another process. The class paths are names to check the
  caller's classes against, never imported (``docs/trust.md``).
* Each trial's ``config.yaml`` in its directory: the params and the arguments the
  module, datamodule and ``Trainer`` were built with.
* Removing the checkpoints of all trials but the best (``keep_checkpoints="best"``).
* The owner of the trial folders (``<root_dir>/<study>/.frameworm/study.json``): trial
  folders are named by study and number only, so a study of the same name in another
  storage would write into the same ``trial_<n>`` folders; :func:`claim_trial_folders`
  refuses it before anything trains.

Example:
    >>> import_path(Path)
    'pathlib:Path'
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from frameworm_lightning.exceptions import StudyMismatchError

if TYPE_CHECKING:
    from frameworm_lightning.runner._execute import TrialSpec
    from frameworm_lightning.runner._routing import Routed
    from frameworm_lightning.study import Study, Trial

__all__ = [
    "RUNNER_ATTR",
    "claim_trial_folders",
    "import_path",
    "jsonable",
    "remove_checkpoints",
    "runner_record",
    "write_trial_config",
]

RUNNER_ATTR = "frameworm.runner"
RECORD_VERSION = 1
OWNER_FILE = "study.json"  # in <root_dir>/<study>/.frameworm/


def import_path(obj: Any) -> str:
    """``"package.module:Qual.Name"`` for a class or function."""
    return f"{obj.__module__}:{obj.__qualname__}"


def jsonable(value: Any, where: str, dropped: list[str]) -> Any:
    """``value`` with every part JSON cannot hold left out (and its place added to ``dropped``)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]", dropped) for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        out = {}
        for k, v in value.items():
            before = len(dropped)
            item = jsonable(v, f"{where}.{k}", dropped)
            if len(dropped) == before or item is not None:
                out[k] = item
        return out
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return value.item()
    dropped.append(where)
    return None


def runner_record(spec: TrialSpec, study: Study, trainer_limits: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-able description of a search that ``SearchResult`` needs to rebuild its models.

    ``trainer_limits``: what the search's policies set in every trial's Trainer (a halving
    policy's ``max_epochs``/``max_steps``), over ``trainer_kwargs``.
    """
    dropped: list[str] = []
    dm = spec.datamodule
    if dm is None:
        datamodule = None
    elif inspect.isclass(dm):
        datamodule = {"class": import_path(dm)}
    else:
        datamodule = {"instance_of": import_path(type(dm))}
    return {
        "version": RECORD_VERSION,
        "module_cls": import_path(spec.module_cls),
        "datamodule": datamodule,
        "model_kwargs": jsonable(spec.model_kwargs, "model_kwargs", dropped),
        "data_kwargs": jsonable(spec.data_kwargs, "data_kwargs", dropped),
        "trainer_kwargs": jsonable(spec.trainer_kwargs, "trainer_kwargs", dropped),
        "trainer_limits": dict(trainer_limits or {}),
        "not_recorded": dropped,
        "metric": study.metric,
        "mode": study.mode,
        "objective": spec.objective,
        "save_checkpoint": spec.save_checkpoint,
        "seed": spec.seed,
        "root_dir": str(Path(spec.root_dir).resolve()),
        "cwd": os.getcwd(),
    }


def _yamlable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_yamlable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _yamlable(v) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if inspect.isclass(value) or inspect.isfunction(value):
        return import_path(value)
    return repr(value)


def write_trial_config(directory: Path, spec: TrialSpec, trial: Trial, routed: Routed) -> Path:
    """Write ``directory/config.yaml``: what this trial was built with (non-YAML values as ``repr``)."""
    dm = spec.datamodule
    config = {
        "study": spec.study_name,
        "trial": trial.number,
        "metric": trial.study.metric,
        "mode": trial.study.mode,
        "seed": None if spec.seed is None else spec.seed + trial.number,
        "params": trial.params,
        "module": import_path(spec.module_cls),
        "datamodule": None if dm is None else import_path(dm if inspect.isclass(dm) else type(dm)),
        "model": routed.model,
        "data": routed.data,
        "trainer": routed.trainer,
    }
    path = Path(directory) / "config.yaml"
    path.write_text(yaml.safe_dump(_yamlable(config), sort_keys=False), encoding="utf-8")
    return path


def remove_checkpoints(study: Study) -> list[Path]:
    """Delete the checkpoint of every finished trial except the best one; returns what was removed.

    A checkpoint that a waiting or running trial will resume from (its
    ``resume_checkpoint``, e.g. a promotion of a halving scheduler) is kept too. A
    removed trial keeps the old path in its ``checkpoint_removed`` system attribute and
    its ``checkpoint_path`` becomes ``None``.
    """
    trials = study.trials
    best = study.best_trial
    keep = {best.system_attrs.get("checkpoint_path")} if best is not None else set()
    keep |= {t.system_attrs.get("resume_checkpoint") for t in trials if not t.state.is_finished}
    removed = []
    for t in trials:
        path = t.system_attrs.get("checkpoint_path")
        if not t.state.is_finished or not path or path in keep:
            continue
        file = Path(path)
        if file.exists():
            file.unlink()
            removed.append(file)
            try:
                file.parent.rmdir()  # the trial's checkpoints/ folder, once empty
            except OSError:
                pass
        study.storage.set_trial_attr(t.trial_id, "checkpoint_path", None, system=True)  # type: ignore[arg-type]
        study.storage.set_trial_attr(t.trial_id, "checkpoint_removed", path, system=True)  # type: ignore[arg-type]
    return removed


def claim_trial_folders(root_dir: str | os.PathLike[str], study: Study) -> None:
    """Make ``study`` the owner of ``root_dir/<study>/``'s trial folders, or refuse another study's.

    A study is known by its name and creation time (the same in every storage URL that
    reaches it, and in every pull worker). The first stored study to run there owns the
    folders; resuming it (or joining it as a worker) is fine. A study in memory never
    owns them (each run is a new one) but may not write over a stored study's.

    Raises:
        StudyMismatchError: the folders hold the trials of another study of that name.
    """
    folder = Path(root_dir) / study.name
    path = folder / ".frameworm" / OWNER_FILE
    record = None if study.storage.is_memory else study.storage.load_study(study.name)
    mine = None if record is None else {"study": study.name, "created_at": record.created_at,
                                        "storage": study.storage.url}
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))  # data: only compared and shown
    except (OSError, ValueError):
        owner = None
    if not isinstance(owner, dict):
        owner = None
    if owner is not None and (mine is None or owner.get("created_at") != mine["created_at"]):
        created = owner.get("created_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) if isinstance(created, (int, float)) else "?"
        this = "in memory" if mine is None else f"in {study.storage.url}"
        raise StudyMismatchError(
            f"{folder} holds the trial folders of another study named {study.name!r} (created {when} in "
            f"{owner.get('storage')!r}); this search's study ({this}) would overwrite their checkpoints, logs and "
            "config.yaml: pass another root_dir or study_name, resume that study with its own storage, or remove "
            f"{folder} if its trials are no longer needed."
        )
    if mine is not None and owner is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{OWNER_FILE}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(mine), encoding="utf-8")
        os.replace(temporary, path)  # pull workers starting together write the same owner
