"""Plots of a study (matplotlib figures, saved as PNG).

Each plot has a data function that returns the numbers it draws (tested on their own)
and a ``plot_*`` function that draws them on a new :class:`matplotlib.figure.Figure`.
Figures are built without ``pyplot``, so nothing here touches matplotlib's global state
or needs a display. :func:`plot` picks a plot by name and can save it.

Kinds: ``history`` (values and best so far), ``parallel`` (parallel coordinates),
``slice`` (one panel per parameter), ``importance`` (fANOVA bars), ``curves`` (every
trial's learning curve, pruned ones marked where they stopped), ``contour`` (the
forest's prediction over a pair of parameters).

Example:
    >>> from frameworm_lightning import Real, Study
    >>> from frameworm_lightning.analysis import plot
    >>> study = Study.create("plots", {"x": Real(0, 1)}, metric="loss", storage="memory")
    >>> while (t := study.ask(budget=4)) is not None:
    ...     _ = t.complete(t.params["x"])
    >>> fig = plot(study, "history")
    >>> len(fig.axes)
    1
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from frameworm_lightning.analysis._frame import StudyLike, best_trial, complete_trials, resolve
from frameworm_lightning.analysis._importance import fit_anova, importance_table
from frameworm_lightning.space import Categorical, Dimension, Integer, Real
from frameworm_lightning.trial import TrialState

__all__ = [
    "PLOT_KINDS",
    "Curve",
    "contour_data",
    "history_data",
    "learning_curves",
    "plot",
    "plot_contour",
    "plot_curves",
    "plot_history",
    "plot_importance",
    "plot_parallel",
    "plot_slice",
]

_STATE_COLORS = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAILED": "tab:red"}
_BEST_COLOR = "tab:red"


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _message(ax: Axes, text: str) -> None:
    """Say why a panel is empty, in the panel itself."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="dimgray", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _ticks(dim: Dimension, n: int = 5) -> tuple[list[float], list[str]]:
    """Positions in the unit-cube encoding of ``dim`` and their labels in its own values."""
    if isinstance(dim, Categorical) or (isinstance(dim, Integer) and dim.n_values <= 8):
        values = dim.grid()
        return [dim.encode(v) for v in values], [_short(v) for v in values]
    values = [dim.decode(u) for u in np.linspace(0.0, 1.0, n)]
    return [dim.encode(v) for v in values], [_short(v) for v in values]


# History ---------------------------------------------------------------------------------
def history_data(source: StudyLike) -> pd.DataFrame:
    """One row per finished trial: ``number``, ``state``, ``value``, ``best_so_far``.

    ``best_so_far`` is the best value among ``COMPLETE`` trials numbered up to this one
    (NaN before the first), so it never gets worse: non-increasing for ``mode="min"``,
    non-decreasing for ``"max"``.
    """
    study, trials = resolve(source)
    best = math.nan
    rows = []
    for t in trials:
        if not t.state.is_finished:
            continue
        if t.state is TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
            if math.isnan(best) or study.is_better(t.value, best):
                best = t.value
        rows.append({"number": t.number, "state": t.state.value,
                     "value": t.value if t.value is not None else math.nan, "best_so_far": best})
    return pd.DataFrame(rows, columns=["number", "state", "value", "best_so_far"]).astype(
        {"value": "float64", "best_so_far": "float64"})


def plot_history(source: StudyLike) -> Figure:
    """Each trial's value by trial number, and the best value so far as a step line."""
    study, _ = resolve(source)
    data = history_data(source)
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"Optimisation history of {study.name!r}")
    if data["value"].notna().sum() == 0:
        _message(ax, "no finished trial has a value yet")
        return fig
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x"), ("FAILED", "v")):
        part = data[(data["state"] == state) & data["value"].notna()]
        if len(part):
            ax.scatter(part["number"], part["value"], marker=marker, color=_STATE_COLORS[state],
                       label=f"{state.lower()} ({len(part)})", zorder=3)
    best = data[data["best_so_far"].notna()]
    if len(best):
        ax.step(best["number"], best["best_so_far"], where="post", color=_BEST_COLOR, linewidth=2,
                label="best so far", zorder=2)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{study.metric} ({study.mode})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


# Parallel coordinates --------------------------------------------------------------------
def _value_colors(values: np.ndarray, mode: str) -> tuple[Any, Normalize]:
    cmap = colormaps["viridis_r" if mode == "min" else "viridis"]  # the best trials are the darkest
    lo, hi = float(np.min(values)), float(np.max(values))
    return cmap, Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)


def plot_parallel(source: StudyLike) -> Figure:
    """One line per complete trial through one axis per parameter and one for the value."""
    study, _ = resolve(source)
    trials = complete_trials(source)
    keys = list(study.space)
    fig = _figure(max(6.0, 1.6 * (len(keys) + 1) + 1.5), 4.5)
    ax = fig.add_subplot()
    ax.set_title(f"Parallel coordinates of {study.name!r} ({len(trials)} complete trials)")
    if not trials:
        _message(ax, "no complete trial yet")
        return fig
    values = np.array([t.value for t in trials], dtype=float)
    cmap, norm = _value_colors(values, study.mode)
    lo, hi = norm.vmin, norm.vmax
    coords = np.stack([study.space.encode(study.space.canonical(t.params)) for t in trials])
    coords = np.column_stack([coords, (values - lo) / (hi - lo)])  # (n, d + 1), all in [0, 1]
    xs = np.arange(len(keys) + 1)
    order = np.argsort(-values if study.mode == "min" else values)  # draw the best last, on top
    best = int(order[-1])
    for i in order:
        ax.plot(xs, coords[i], color=cmap(norm(values[i])), alpha=0.7, linewidth=1)
    ax.plot(xs, coords[best], color=_BEST_COLOR, linewidth=2.5, label=f"best (trial {trials[best].number})")
    for x, key in zip(xs, keys):
        ax.axvline(x, color="black", linewidth=0.8)
        for pos, label in zip(*_ticks(study.space[key])):
            ax.text(x + 0.03, pos, label, fontsize=7, va="center")
    ax.axvline(xs[-1], color="black", linewidth=0.8)
    for pos in np.linspace(0.0, 1.0, 5):
        ax.text(xs[-1] + 0.03, pos, _short(lo + pos * (hi - lo)), fontsize=7, va="center")
    ax.set_xticks(xs, [*keys, study.metric], rotation=20)
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlim(-0.2, xs[-1] + 0.5)
    ax.legend(loc="upper left", fontsize=8)
    fig.colorbar(_mappable(cmap, norm), ax=ax, label=study.metric)
    return fig


def _mappable(cmap: Any, norm: Normalize) -> Any:
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415

    return ScalarMappable(norm=norm, cmap=cmap)


# Slices ----------------------------------------------------------------------------------
def plot_slice(source: StudyLike) -> Figure:
    """One panel per parameter: the value of each complete trial against that parameter."""
    study, _ = resolve(source)
    trials = complete_trials(source)
    keys = list(study.space)
    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    fig = _figure(4.0 * ncols, 3.4 * nrows)
    fig.suptitle(f"Slices of {study.name!r}")
    values = np.array([t.value for t in trials], dtype=float)
    numbers = np.array([t.number for t in trials])
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        dim = study.space[key]
        ax.set_xlabel(key)
        if i % ncols == 0:
            ax.set_ylabel(study.metric)
        if not trials:
            _message(ax, "no complete trial yet")
            continue
        raw = [study.space.canonical(t.params)[key] for t in trials]
        if isinstance(dim, Categorical):
            xs = np.array([dim.index(v) for v in raw], dtype=float)
            ax.set_xticks(range(dim.n_values), [_short(c) for c in dim.choices])
        else:
            xs = np.array(raw, dtype=float)
            if isinstance(dim, (Real, Integer)) and dim.log:
                ax.set_xscale("log")
        points = ax.scatter(xs, values, c=numbers, cmap="Blues", edgecolors="gray", linewidths=0.5, zorder=3)
        ax.grid(alpha=0.3)
    if trials:
        fig.colorbar(points, ax=fig.axes, label="trial", shrink=0.8)
    return fig


# Importance ------------------------------------------------------------------------------
def plot_importance(source: StudyLike, **options: Any) -> Figure:
    """Horizontal bars of the fANOVA importance, with its spread over the forest's trees."""
    study, _ = resolve(source)
    fig = _figure(7.0, 0.5 * len(study.space) + 2.0)
    ax = fig.add_subplot()
    ax.set_title(f"Parameter importance (fANOVA on a random forest) of {study.name!r}")
    try:
        table = importance_table(source, **options)
    except ValueError as err:
        _message(ax, str(err))
        return fig
    table = table.iloc[::-1]  # the most important on top
    ax.barh(table.index.astype(str), table["importance"], xerr=table["std"], color="tab:blue",
            error_kw={"ecolor": "gray", "capsize": 3})
    for y, v in enumerate(table["importance"]):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlabel("share of the variance of " + study.metric)
    ax.set_xlim(0, max(1.0, float((table["importance"] + table["std"]).max()) * 1.05))
    ax.grid(axis="x", alpha=0.3)
    return fig


# Learning curves -------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """One trial's reported values by global step.

    ``stopped_at`` is the step of the last report of a trial that did not complete
    (where a pruned trial was stopped, where a failed one died), else ``None``.
    """

    number: int
    state: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    stopped_at: int | None = None
    reason: str | None = None


def learning_curves(source: StudyLike) -> list[Curve]:
    """The learning curve of every trial that reported at least one value."""
    _, trials = resolve(source)
    curves = []
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        stopped = steps[-1] if t.state in (TrialState.PRUNED, TrialState.FAILED) else None
        curves.append(Curve(t.number, t.state.value, steps, [t.intermediate_values[s] for s in steps], stopped,
                            t.reason if t.state is not TrialState.COMPLETE else None))
    return curves


def plot_curves(source: StudyLike) -> Figure:
    """Every trial's learning curve; pruned trials end with an ``x`` at the step they stopped."""
    study, _ = resolve(source)
    curves = learning_curves(source)
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_title(f"Learning curves of {study.name!r}")
    if not curves:
        _message(ax, "no trial reported a value yet")
        return fig
    top = best_trial(source)
    labelled: set[str] = set()
    for c in curves:
        style = {"COMPLETE": "-", "PRUNED": "-", "FAILED": ":"}.get(c.state, "--")
        color = _STATE_COLORS.get(c.state, "gray")
        label = None if c.state in labelled else c.state.lower()
        labelled.add(c.state)
        ax.plot(c.steps, c.values, style, color=color, alpha=0.6, linewidth=1, label=label)
        if c.state == "PRUNED" and c.stopped_at is not None:
            ax.plot([c.stopped_at], [c.values[-1]], "x", color="black", markersize=7, markeredgewidth=1.5,
                    label=None if "pruned here" in labelled else "pruned here", gid=f"pruned-{c.number}")
            labelled.add("pruned here")
    best = next((c for c in curves if top is not None and c.number == top.number), None)
    if best is not None:
        ax.plot(best.steps, best.values, color=_BEST_COLOR, linewidth=2.5, label=f"best (trial {best.number})")
    ax.set_xlabel("global step")
    ax.set_ylabel(study.metric)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


# Contour ---------------------------------------------------------------------------------
def _pick_pair(source: StudyLike, params: Sequence[str] | None) -> tuple[str, str]:
    study, _ = resolve(source)
    keys = list(study.space)
    if params is not None:
        pair = tuple(params)
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"params must name two different parameters, but got params={params!r}.")
        unknown = [k for k in pair if k not in study.space]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for the contour; the space has {keys}.")
        return pair[0], pair[1]
    if len(keys) < 2:
        raise ValueError(f"a contour needs two parameters, but the space of {study.name!r} has only {keys}.")
    try:
        ranked = list(importance_table(source).index)
    except ValueError:
        ranked = keys
    return ranked[0], ranked[1]


def contour_data(source: StudyLike, params: Sequence[str] | None = None, resolution: int = 50,
                 **options: Any) -> tuple[str, str, np.ndarray, np.ndarray, np.ndarray]:
    """The forest's prediction over a pair of parameters, others averaged out.

    Returns ``(x_key, y_key, xs, ys, Z)``: ``xs``/``ys`` are ``(resolution,)`` grid
    coordinates in the unit-cube encoding, ``Z[j, i]`` the prediction at ``(xs[i], ys[j])``.
    Without ``params``, the two most important parameters are used.
    """
    study, _ = resolve(source)
    x_key, y_key = _pick_pair(source, params)
    keys = list(study.space)
    anova = fit_anova(source, **options)
    grid = (np.arange(resolution) + 0.5) / resolution
    gx, gy = np.meshgrid(grid, grid)
    z = anova.marginal([keys.index(x_key), keys.index(y_key)], np.column_stack([gx.ravel(), gy.ravel()]))
    return x_key, y_key, grid, grid, z.reshape(resolution, resolution)


def plot_contour(source: StudyLike, params: Sequence[str] | None = None, resolution: int = 50,
                 **options: Any) -> Figure:
    """Filled contours of the predicted value over two parameters, with the trials on top."""
    study, _ = resolve(source)
    fig = _figure(6.5, 5.0)
    ax = fig.add_subplot()
    try:
        x_key, y_key, xs, ys, z = contour_data(source, params, resolution, **options)
    except ValueError as err:
        ax.set_title(f"Contour of {study.name!r}")
        _message(ax, str(err))
        return fig
    ax.set_title(f"{study.metric} over {x_key} and {y_key} (random-forest marginal)")
    filled = ax.contourf(xs, ys, z, levels=15, cmap="viridis_r" if study.mode == "min" else "viridis")
    fig.colorbar(filled, ax=ax, label=f"predicted {study.metric}")
    trials = complete_trials(source)
    points = np.array([[study.space[x_key].encode(t.params[x_key]), study.space[y_key].encode(t.params[y_key])]
                       for t in trials])
    ax.scatter(points[:, 0], points[:, 1], s=18, color="white", edgecolors="black", linewidths=0.6, label="trials")
    top = best_trial(source)
    if top is not None:
        ax.scatter([study.space[x_key].encode(top.params[x_key])], [study.space[y_key].encode(top.params[y_key])],
                   marker="*", s=220, color=_BEST_COLOR, edgecolors="black", label=f"best (trial {top.number})")
    for setter, key in ((ax.set_xticks, x_key), (ax.set_yticks, y_key)):
        setter(*_ticks(study.space[key]))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    ax.legend(loc="upper right", fontsize=8)
    return fig


# Dispatch --------------------------------------------------------------------------------
PLOT_KINDS: dict[str, Callable[..., Figure]] = {
    "history": plot_history,
    "parallel": plot_parallel,
    "slice": plot_slice,
    "importance": plot_importance,
    "curves": plot_curves,
    "contour": plot_contour,
}


def plot(source: StudyLike, kind: str = "history", path: str | os.PathLike[str] | None = None, *,
         dpi: int = 100, **options: Any) -> Figure:
    """Draw the plot ``kind`` (see :data:`PLOT_KINDS`) and save it as PNG when ``path`` is given.

    ``options`` go to the plot function, e.g. ``plot(study, "contour", params=("lr", "wd"))``.
    """
    try:
        draw = PLOT_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown plot kind {kind!r}; choose one of {', '.join(PLOT_KINDS)}.") from None
    fig = draw(source, **options)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=dpi)
    return fig
