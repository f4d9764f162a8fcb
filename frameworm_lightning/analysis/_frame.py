"""Trials as a table: one row per trial, the best trial and the top ``k``.

Every analysis function takes a :class:`~frameworm_lightning.Study` (read fresh from its
storage, so a study loaded with ``Study.load`` works as well as a live one) or a
:class:`~frameworm_lightning.SearchResult` (its snapshot of trials, so the table agrees
with ``result.best_trial``).

Example:
    >>> from frameworm_lightning import Real, Study
    >>> from frameworm_lightning.analysis import trials_dataframe, top_trials
    >>> study = Study.create("frame", {"x": Real(0, 1)}, metric="loss", storage="memory")
    >>> for x in (0.2, 0.8, 0.5):
    ...     _ = study.enqueue({"x": x})
    >>> while (t := study.ask(budget=3)) is not None:
    ...     _ = t.complete(t.params["x"])
    >>> trials_dataframe(study)[["number", "state", "value"]].shape
    (3, 3)
    >>> [t.number for t in top_trials(study, 2)]
    [0, 2]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Union

import pandas as pd

from frameworm_lightning.study import Study
from frameworm_lightning.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from frameworm_lightning.result import SearchResult

__all__ = ["StudyLike", "best_trial", "complete_trials", "param_keys", "params_of", "resolve", "top_k", "top_trials",
           "trials_dataframe"]

StudyLike = Union["Study", "SearchResult"]

PARAM_PREFIX = "params_"


def resolve(source: StudyLike) -> tuple[Study, list[FrozenTrial]]:
    """The study behind ``source`` and the trials to analyse.

    A :class:`SearchResult` gives its own snapshot of trials; a :class:`Study` is read
    from storage now.
    """
    if isinstance(source, Study):
        return source, source.trials
    if isinstance(getattr(source, "study", None), Study):  # a SearchResult (which imports this module lazily)
        return source.study, list(source.trials)
    raise TypeError(f"expected a Study or a SearchResult, but got {type(source).__name__} ({source!r}).")


def param_keys(study: Study, trials: list[FrozenTrial]) -> list[str]:
    """The parameter names to show: the space's keys, or for a study recorded without a
    space (the stopping callbacks in a plain script) every key some trial has, in order seen."""
    if study.space:
        return list(study.space)
    seen: dict[str, None] = {}
    for t in trials:
        seen.update(dict.fromkeys(t.params))
    return list(seen)


def params_of(study: Study, trial: FrozenTrial) -> dict[str, Any]:
    """The trial's params with their exact Python values (as far as the space knows them)."""
    if not study.space:
        return dict(trial.params)
    return {**trial.params, **study.space.canonical(trial.params)}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def complete_trials(source: StudyLike) -> list[FrozenTrial]:
    """``COMPLETE`` trials with a finite value and params for every key of the space."""
    study, trials = resolve(source)
    keys = param_keys(study, trials)
    return [
        t for t in trials
        if t.state is TrialState.COMPLETE and _finite(t.value) and all(k in t.params for k in keys)
    ]


def top_trials(source: StudyLike, k: int = 5) -> list[FrozenTrial]:
    """The ``k`` best complete trials, best first (ties broken by trial number)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, but got k={k!r}.")
    study, _ = resolve(source)
    sign = 1.0 if study.mode == "min" else -1.0
    ranked = sorted(complete_trials(source), key=lambda t: (sign * t.value, t.number))  # type: ignore[operator]
    return ranked[:k]


def best_trial(source: StudyLike) -> FrozenTrial | None:
    """The best complete trial, or ``None`` when no trial completed."""
    best = top_trials(source, 1)
    return best[0] if best else None


def _row(trial: FrozenTrial, keys: list[str], study: Study) -> dict[str, Any]:
    params = params_of(study, trial)
    steps = sorted(trial.intermediate_values)
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.value,
        "value": trial.value if trial.value is not None else math.nan,
    }
    for key in keys:
        row[PARAM_PREFIX + key] = params.get(key)
    row.update({
        "duration": trial.duration if trial.duration is not None else math.nan,
        "steps": len(steps),
        "last_step": steps[-1] if steps else pd.NA,
        "reason": trial.reason,
        "error": trial.error,
        "datetime_start": pd.Timestamp(trial.datetime_start) if trial.started_at is not None else pd.NaT,
        "datetime_complete": pd.Timestamp(trial.datetime_complete) if trial.completed_at is not None else pd.NaT,
        "checkpoint_path": trial.system_attrs.get("checkpoint_path"),
        "trial_dir": trial.system_attrs.get("trial_dir"),
        # a halving policy's paused trial and the trial that continued it (same params, its checkpoint)
        "promoted_to": trial.system_attrs.get("promoted_to", pd.NA),
        "promoted_from": trial.system_attrs.get("promoted_from", pd.NA),
    })
    for key, value in sorted(trial.user_attrs.items()):
        row["user_attrs_" + key] = value
    return row


def trials_dataframe(source: StudyLike, states: tuple[TrialState, ...] | None = None) -> pd.DataFrame:
    """Every trial as one row.

    Columns: ``number``, ``state``, ``value`` (NaN when there is none), one
    ``params_<key>`` column per space key, ``duration`` (seconds), ``steps`` (how many
    values were reported), ``last_step`` (the global step of the last report, where a
    pruned trial stopped), ``reason`` (why a trial was pruned or failed, or why a
    stopping policy ended a complete one early), ``error`` (a
    failure's traceback), ``datetime_start``/``datetime_complete`` (UTC),
    ``checkpoint_path``, ``trial_dir``, ``promoted_to`` (the trial that continued a
    trial a halving policy paused; stored ``PRUNED``, it was not stopped) and
    ``promoted_from`` (the paused trial a promoted one resumed), and one
    ``user_attrs_<key>`` per user attribute.

    Args:
        states: keep only trials in these states (default: all).
    """
    study, trials = resolve(source)
    keys = param_keys(study, trials)
    if states is not None:
        trials = [t for t in trials if t.state in states]
    rows = [_row(t, keys, study) for t in trials]
    columns = ["number", "state", "value", *(PARAM_PREFIX + k for k in keys), "duration", "steps", "last_step",
               "reason", "error", "datetime_start", "datetime_complete", "checkpoint_path", "trial_dir",
               "promoted_to", "promoted_from"]
    frame = pd.DataFrame(rows, columns=columns + sorted({c for r in rows for c in r} - set(columns)))
    frame["steps"] = frame["steps"].astype("int64")
    for column in ("last_step", "promoted_to", "promoted_from"):
        frame[column] = frame[column].astype("Int64")
    frame["value"] = frame["value"].astype("float64")
    frame["duration"] = frame["duration"].astype("float64")
    return frame


def top_k(source: StudyLike, k: int = 5) -> pd.DataFrame:
    """The rows of :func:`trials_dataframe` for the ``k`` best complete trials, best first."""
    numbers = [t.number for t in top_trials(source, k)]
    frame = trials_dataframe(source, states=(TrialState.COMPLETE,))
    return frame.set_index("number").loc[numbers].reset_index()
