"""What the dashboard shows, read from a storage: study summaries and one study's page data.

Everything here only reads: the storage is opened on an existing database (a SQLite
file that does not exist is an error, never created), and no function writes to it.

Example:
    >>> from frameworm_lightning import Real, Study
    >>> study = Study.create("d", {"x": Real(0, 1)}, metric="loss", storage="memory")
    >>> t = study.ask(); _ = t.complete(0.25)
    >>> [(s["name"], s["counts"]["COMPLETE"], s["best"]) for s in study_summaries(study.storage)]
    [('d', 1, 0.25)]
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from frameworm_lightning.analysis._frame import PARAM_PREFIX, best_trial, param_keys, params_of, trials_dataframe
from frameworm_lightning.storage import Storage, read_storage
from frameworm_lightning.study import Study
from frameworm_lightning.trial import INTERRUPTED, PROMOTED, FrozenTrial, TrialState, count_states


__all__ = ["INTERRUPTED", "PROMOTED", "counts", "read_storage", "study_summaries", "table_frame", "trial_detail"]


def counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state (:func:`~frameworm_lightning.trial.count_states`: interrupted and promoted apart) and ``total``."""
    return {**count_states(trials), "total": len(trials)}


def study_summaries(storage: Storage) -> list[dict[str, Any]]:
    """One summary per stored study: name, metric, mode, counts and best value."""
    summaries = []
    for name in storage.study_names():
        study = Study.load(name, storage)
        trials = study.trials
        best = best_trial(study)
        summaries.append({
            "name": name, "metric": study.metric, "mode": study.mode, "counts": counts(trials),
            "best": None if best is None else best.value, "best_trial": None if best is None else best.number,
        })
    return summaries


_TABLE_COLUMNS = ["number", "state", "value", "last_step", "duration", "reason", "trial_dir"]


def table_frame(study: Study, trials: list[FrozenTrial]) -> pd.DataFrame:
    """The trials table of the dashboard: number, state, value, each param, progress, reason, logs."""
    frame = trials_dataframe(study)
    params = [PARAM_PREFIX + k for k in param_keys(study, trials)]
    frame = frame[[c for c in ["number", "state", "value", *params, *_TABLE_COLUMNS[3:]] if c in frame.columns]]
    frame = frame.rename(columns={c: c[len(PARAM_PREFIX):] for c in params} | {"trial_dir": "logs"})
    frame["duration"] = frame["duration"].round(1)
    return frame


def trial_detail(study: Study, number: int) -> dict[str, Any] | None:
    """One trial as JSON-ready data: params, state, value, reason, error, logs folder, reports."""
    trial = next((t for t in study.trials if t.number == number), None)
    if trial is None:
        return None
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    return {
        "number": trial.number,
        "state": trial.state.value,
        "value": value,
        "params": {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
                   for k, v in params_of(study, trial).items()},
        "reason": trial.reason,
        "error": trial.error,
        "logs": trial.system_attrs.get("trial_dir"),
        "checkpoint": trial.system_attrs.get("checkpoint_path"),
        "last_step": trial.last_step,
        "reports": len(trial.intermediate_values),
        "duration": trial.duration,
    }
