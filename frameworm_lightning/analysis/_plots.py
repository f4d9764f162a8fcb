"""Plots of a study as interactive plotly figures.

Each plot has a data function that returns the numbers it draws (tested on their own)
and a ``plot_*`` function that returns a :class:`plotly.graph_objects.Figure`: zoom, pan
and hover (trial number, state, value and params) work in a notebook, in the HTML
report and in the dashboard. :func:`plot` picks a plot by name and can save it as
HTML (self-contained) or, with the ``export`` extra, as PNG/SVG/PDF.

Kinds: ``history`` (values and best so far), ``curves`` (every trial's learning curve,
pruned ones marked where they stopped), ``importance`` (fANOVA bars), ``parallel``
(parallel coordinates), ``slice`` (one panel per parameter), ``contour`` (the forest's
prediction over a pair of parameters), ``edf`` (the empirical distribution of the
values: how often a trial reaches a value).

Axes follow the space: a ``log=True`` parameter gets a log axis, a categorical one its
choices, trial numbers integer ticks. Values far outside the bulk of the trials (a
diverged trial's 8e23) do not flatten a plot: the value axis shows a robust range
(:func:`robust_range`) and the points beyond it are drawn on its edge as triangles,
their true value in the hover text.

Example:
    >>> from frameworm_lightning import Real, Study
    >>> from frameworm_lightning.analysis import plot
    >>> study = Study.create("plots", {"x": Real(0, 1)}, metric="loss", storage="memory")
    >>> while (t := study.ask(budget=4)) is not None:
    ...     _ = t.complete(t.params["x"])
    >>> fig = plot(study, "history")
    >>> [trace.name for trace in fig.data]
    ['complete (4)', 'best so far']
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
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from frameworm_lightning.analysis._frame import (
    StudyLike,
    best_trial,
    complete_trials,
    param_keys,
    params_of,
    resolve,
)
from frameworm_lightning.analysis._importance import fit_anova, importance_table
from frameworm_lightning.space import Categorical, Dimension, Integer, Real
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = [
    "PLOT_KINDS",
    "Curve",
    "contour_data",
    "edf_data",
    "history_data",
    "learning_curves",
    "plot",
    "plot_contour",
    "plot_curves",
    "plot_edf",
    "plot_history",
    "plot_importance",
    "plot_parallel",
    "plot_slice",
    "robust_range",
]

STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAILED": "#d62728", "RUNNING": "#17becf",
                "WAITING": "#7f7f7f"}
_STATE_SYMBOLS = {"COMPLETE": "circle", "PRUNED": "x", "FAILED": "triangle-down", "RUNNING": "diamond"}
BEST_COLOR = "#d62728"
_OUTSIDE_COLOR = "#7f7f7f"
# Plotly's default template is fine on screen; a white one prints and screenshots better.
_TEMPLATE = "plotly_white"


def _layout(fig: go.Figure, title: str, height: int = 450) -> go.Figure:
    fig.update_layout(title=title, template=_TEMPLATE, height=height, hovermode="closest",
                      margin={"l": 60, "r": 20, "t": 60, "b": 50},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0.0})
    return fig


def _message(title: str, text: str) -> go.Figure:
    """An empty figure that says why it is empty."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14, "color": "dimgray"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=300)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _hover_text(trial: FrozenTrial, study: Any, value: float | None = None) -> str:
    """``trial 7 · COMPLETE`` then the value and one ``key=value`` line per param."""
    lines = [f"<b>trial {trial.number}</b> · {trial.state.value}"]
    shown = trial.value if value is None else value
    if shown is not None and not (isinstance(shown, float) and math.isnan(shown)):
        lines.append(f"{study.metric} = {shown:.6g}")
    lines += [f"{k} = {_short(v)}" for k, v in params_of(study, trial).items()]
    if trial.reason:
        reason = trial.reason if len(trial.reason) <= 80 else trial.reason[:77] + "..."
        lines.append(f"<i>{reason.replace('<', '&lt;')}</i>")
    return "<br>".join(lines)


def _int_axis(n: int) -> dict[str, Any]:
    """Integer ticks for an axis of trial numbers 0..n (never 0.5)."""
    step = 1
    for candidate in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        step = candidate
        if n / candidate <= 12:
            break
    return {"tick0": 0, "dtick": step, "tickformat": "d"}


def robust_range(values: Sequence[float] | np.ndarray, k: float = 3.0) -> tuple[float, float] | None:
    """The value axis range: the data's range, cut at ``k`` interquartile ranges past the quartiles.

    Returns ``None`` when there is no finite value. A diverged trial (``8e23`` among
    values near 1) falls outside the range instead of stretching it; with no outlier
    the range is the data's own range plus 5% on each side.

    Example:
        >>> lo, hi = robust_range([1.0, 1.2, 0.9, 1.1, 8e23])
        >>> hi < 3
        True
    """
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if data.size == 0:
        return None
    lo, hi = float(data.min()), float(data.max())
    if data.size >= 4:
        q1, q3 = np.percentile(data, [25, 75])
        spread = q3 - q1 or (abs(q3) * 0.1 or 1.0)
        lo, hi = max(lo, q1 - k * spread), min(hi, q3 + k * spread)
        inside = data[(data >= lo) & (data <= hi)]
        lo, hi = float(inside.min()), float(inside.max())
    pad = (hi - lo) * 0.05 or (abs(hi) * 0.05 or 0.5)
    return lo - pad, hi + pad


def _split_outside(values: np.ndarray, bounds: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the values below and above ``bounds`` (infinities included)."""
    if bounds is None:
        return np.zeros(values.shape, bool), np.zeros(values.shape, bool)
    with np.errstate(invalid="ignore"):
        return values < bounds[0], values > bounds[1]


def _add_outside(fig: go.Figure, xs: np.ndarray, values: np.ndarray, texts: Sequence[str],
                 bounds: tuple[float, float] | None, **where: Any) -> int:
    """Draw the points outside ``bounds`` on its edge as triangles; returns how many."""
    below, above = _split_outside(values, bounds)
    count = 0
    for mask, edge, symbol in ((below, 0, "triangle-down-open"), (above, 1, "triangle-up-open")):
        if not mask.any() or bounds is None:
            continue
        count += int(mask.sum())
        fig.add_trace(go.Scatter(
            x=xs[mask], y=np.full(int(mask.sum()), bounds[edge]), mode="markers", name=f"outside the range ({int(mask.sum())})",
            marker={"symbol": symbol, "size": 11, "color": _OUTSIDE_COLOR, "line": {"width": 2}},
            hovertext=[texts[i] for i in np.flatnonzero(mask)], hovertemplate="%{hovertext}<extra>outside</extra>",
            cliponaxis=False,
        ), **where)
    return count


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


def plot_history(source: StudyLike) -> go.Figure:
    """Each trial's value by trial number, and the best value so far as a step line."""
    study, trials = resolve(source)
    title = f"Optimisation history of {study.name!r}"
    data = history_data(source)
    if data["value"].notna().sum() == 0:
        return _message(title, "no finished trial has a value yet")
    by_number = {t.number: t for t in trials}
    bounds = robust_range(data["value"].to_numpy())
    fig = go.Figure()
    for state in ("COMPLETE", "PRUNED", "FAILED"):
        part = data[(data["state"] == state) & data["value"].notna()]
        if not len(part):
            continue
        values = part["value"].to_numpy()
        below, above = _split_outside(values, bounds)
        inside = ~(below | above)
        texts = [_hover_text(by_number[n], study) for n in part["number"]]
        fig.add_trace(go.Scatter(
            x=part["number"][inside], y=values[inside], mode="markers", name=f"{state.lower()} ({len(part)})",
            marker={"symbol": _STATE_SYMBOLS[state], "color": STATE_COLORS[state], "size": 8},
            hovertext=[texts[i] for i in np.flatnonzero(inside)], hovertemplate="%{hovertext}<extra></extra>",
        ))
        _add_outside(fig, part["number"].to_numpy(), values, texts, bounds)
    best = data[data["best_so_far"].notna()]
    if len(best):
        top = best_trial(source)
        fig.add_trace(go.Scatter(
            x=best["number"], y=best["best_so_far"], mode="lines", line={"shape": "hv", "color": BEST_COLOR, "width": 2},
            name="best so far", hovertemplate=f"best so far = %{{y:.6g}}<extra>trial {top.number if top else '?'}</extra>",
        ))
    fig.update_xaxes(title="trial", **_int_axis(int(data["number"].max())))
    fig.update_yaxes(title=f"{study.metric} ({study.mode})", range=list(bounds) if bounds else None)
    return _layout(fig, title)


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
    """The learning curve of every trial that reported at least one value (running ones too)."""
    _, trials = resolve(source)
    curves = []
    for t in trials:
        if not t.intermediate_values:
            continue
        steps = sorted(t.intermediate_values)
        stopped = steps[-1] if t.state in (TrialState.PRUNED, TrialState.FAILED) else None
        curves.append(Curve(t.number, t.state.value, steps, [t.intermediate_values[s] for s in steps], stopped,
                            t.reason))
    return curves


def plot_curves(source: StudyLike) -> go.Figure:
    """Every trial's learning curve; a pruned trial ends with an ``x`` at the step it stopped.

    The ``x`` marks are one trace named ``pruned here`` whose ``customdata`` holds the
    trial numbers; the best trial's curve is drawn last, thick and red.
    """
    study, trials = resolve(source)
    title = f"Learning curves of {study.name!r}"
    curves = learning_curves(source)
    if not curves:
        return _message(title, "no trial reported a value yet")
    by_number = {t.number: t for t in trials}
    bounds = robust_range([v for c in curves for v in c.values])
    top = best_trial(source)
    fig = go.Figure()
    shown: set[str] = set()
    for c in curves:
        if top is not None and c.number == top.number:
            continue
        text = _hover_text(by_number[c.number], study)
        values = np.clip(np.asarray(c.values, dtype=float), *bounds) if bounds else c.values
        fig.add_trace(go.Scatter(
            x=c.steps, y=values, mode="lines", name=c.state.lower(), legendgroup=c.state,
            showlegend=c.state not in shown, opacity=0.55,
            line={"color": STATE_COLORS.get(c.state, "gray"), "width": 1, "dash": "dot" if c.state == "FAILED" else None},
            hovertext=[text] * len(c.steps), customdata=c.values,
            hovertemplate="%{hovertext}<br>step %{x}: %{customdata:.6g}<extra></extra>",
        ))
        shown.add(c.state)
    pruned = [c for c in curves if c.state == "PRUNED" and c.stopped_at is not None]
    if pruned:
        ys = np.array([c.values[-1] for c in pruned], dtype=float)
        fig.add_trace(go.Scatter(
            x=[c.stopped_at for c in pruned], y=np.clip(ys, *bounds) if bounds else ys, mode="markers",
            name="pruned here", marker={"symbol": "x", "size": 9, "color": "black"},
            customdata=[c.number for c in pruned],
            hovertext=[_hover_text(by_number[c.number], study, c.values[-1]) + f"<br>pruned at step {c.stopped_at}"
                       for c in pruned],
            hovertemplate="%{hovertext}<extra></extra>",
        ))
    best = next((c for c in curves if top is not None and c.number == top.number), None)
    if best is not None:
        fig.add_trace(go.Scatter(
            x=best.steps, y=best.values, mode="lines+markers", name=f"best (trial {best.number})",
            line={"color": BEST_COLOR, "width": 3}, marker={"size": 4},
            hovertext=[_hover_text(by_number[best.number], study)] * len(best.steps),
            hovertemplate="%{hovertext}<br>step %{x}: %{y:.6g}<extra></extra>",
        ))
    fig.update_xaxes(title="global step")
    fig.update_yaxes(title=study.metric, range=list(bounds) if bounds else None)
    return _layout(fig, title)


# Parallel coordinates --------------------------------------------------------------------
def _axis_values(dim: Dimension | None, raw: list[Any]) -> tuple[list[float], dict[str, Any]]:
    """Coordinates of ``raw`` on a parameter's axis and the axis' settings (log, categories)."""
    if isinstance(dim, Categorical):
        return [float(dim.index(v)) for v in raw], {"tickvals": list(range(dim.n_values)),
                                                    "ticktext": [_short(c) for c in dim.choices]}
    numeric = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan for v in raw]
    if isinstance(dim, (Real, Integer)) and dim.log:
        logs = [math.log10(v) if v > 0 else math.nan for v in numeric]
        lo, hi = math.log10(dim.low), math.log10(dim.high)
        ticks = list(range(math.ceil(lo), math.floor(hi) + 1)) or [lo, hi]
        return logs, {"tickvals": ticks, "ticktext": [_short(10.0 ** t) for t in ticks], "range": [lo, hi]}
    if isinstance(dim, (Real, Integer)):
        return numeric, {"range": [float(dim.low), float(dim.high)]}
    return numeric, {}


def plot_parallel(source: StudyLike) -> go.Figure:
    """One line per complete trial through one axis per parameter and one for the value.

    Drag along an axis to select a range. Values outside :func:`robust_range` sit on
    the edge of the value axis, whose label says how many were moved there.
    """
    study, _ = resolve(source)
    trials = complete_trials(source)
    title = f"Parallel coordinates of {study.name!r} ({len(trials)} complete trials)"
    if not trials:
        return _message(title, "no complete trial yet")
    keys = param_keys(study, trials)
    dims = []
    for key in keys:
        dim = study.space[key] if key in (study.space or {}) else None
        coords, axis = _axis_values(dim, [params_of(study, t).get(key) for t in trials])
        dims.append({"label": key + (" (log)" if "range" in axis and isinstance(dim, (Real, Integer)) and dim.log else ""),
                     "values": coords, **axis})
    values = np.array([t.value for t in trials], dtype=float)
    bounds = robust_range(values)
    below, above = _split_outside(values, bounds)
    clipped = np.clip(values, *bounds) if bounds else values
    label = study.metric + (f" ({int(below.sum() + above.sum())} clipped)" if (below | above).any() else "")
    dims.append({"label": label, "values": clipped, "range": list(bounds) if bounds else None})
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        line={"color": clipped, "colorscale": "Viridis", "reversescale": study.mode == "min", "showscale": True,
              "colorbar": {"title": study.metric}},
        labelangle=-20,
    ))
    fig = _layout(fig, title)
    fig.update_layout(margin={"l": 80, "r": 80, "t": 110, "b": 40})
    return fig


# Slices ----------------------------------------------------------------------------------
def _set_param_axis(fig: go.Figure, dim: Dimension | None, row: int, col: int, title: str) -> None:
    if isinstance(dim, Categorical):
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=[_short(c) for c in dim.choices],
                         title=title, row=row, col=col)
    elif isinstance(dim, (Real, Integer)) and dim.log:
        decades = math.log10(float(dim.high) / float(dim.low))  # one label per decade (or per few), never crowded
        fig.update_xaxes(type="log", title=title, row=row, col=col, dtick=max(1, math.ceil(decades / 4)),
                         tickformat="~g")
    else:
        fig.update_xaxes(title=title, row=row, col=col, nticks=6)


def plot_slice(source: StudyLike, cols: int = 3) -> go.Figure:
    """One panel per parameter: the value of each complete trial against that parameter.

    The points are coloured by trial number (darker is later); log parameters get log
    axes with few ticks, so their labels never overlap.
    """
    study, _ = resolve(source)
    trials = complete_trials(source)
    title = f"Slices of {study.name!r}"
    if not trials:
        return _message(title, "no complete trial yet")
    keys = param_keys(study, trials)
    ncols = max(1, min(len(keys), cols))
    nrows = math.ceil(len(keys) / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.22 / max(nrows - 1, 1) if nrows > 1 else 0.1)
    values = np.array([t.value for t in trials], dtype=float)
    bounds = robust_range(values)
    numbers = np.array([t.number for t in trials])
    texts = [_hover_text(t, study) for t in trials]
    below, above = _split_outside(values, bounds)
    inside = ~(below | above)
    for i, key in enumerate(keys):
        row, col = i // ncols + 1, i % ncols + 1
        dim = study.space[key] if key in (study.space or {}) else None
        raw = [params_of(study, t).get(key) for t in trials]
        xs = np.array([_short(v) for v in raw] if isinstance(dim, Categorical) else raw, dtype=object)
        fig.add_trace(go.Scatter(
            x=xs[inside], y=values[inside], mode="markers", name=key, showlegend=False,
            marker={"color": numbers[inside], "colorscale": "Blues", "cmin": 0, "cmax": max(int(numbers.max()), 1),
                    "line": {"color": "gray", "width": 0.5}, "size": 8,
                    "showscale": i == 0, "colorbar": {"title": "trial", "tickformat": "d"}},
            hovertext=[texts[j] for j in np.flatnonzero(inside)], hovertemplate="%{hovertext}<extra></extra>",
        ), row=row, col=col)
        if (~inside).any():
            _add_outside(fig, xs, values, texts, bounds, row=row, col=col)
        _set_param_axis(fig, dim, row, col, key)
    fig.update_yaxes(range=list(bounds) if bounds else None)
    fig.update_yaxes(title=study.metric, col=1)
    fig.for_each_trace(lambda t: t.update(showlegend=False) if t.name and t.name.startswith("outside") else None)
    return _layout(fig, title, height=max(320, 300 * nrows))


# Importance ------------------------------------------------------------------------------
def plot_importance(source: StudyLike, **options: Any) -> go.Figure:
    """Horizontal bars of the fANOVA importance with its spread over the forest's trees.

    An importance is a share of the variance, in ``[0, 1]``, so the error bars are cut
    at 0 and 1 (the spread of a share near 1 is one-sided).
    """
    study, _ = resolve(source)
    title = f"Parameter importance of {study.name!r} (fANOVA on a random forest)"
    try:
        table = importance_table(source, **options)
    except ValueError as err:
        return _message(title, str(err))
    table = table.iloc[::-1]  # the most important on top
    imp = table["importance"].to_numpy(dtype=float)
    std = table["std"].to_numpy(dtype=float)
    fig = go.Figure(go.Bar(
        x=imp, y=[f"{k}  {v:.2f}" for k, v in zip(table.index, imp)], orientation="h",  # the value in the label
        marker={"color": STATE_COLORS["COMPLETE"]}, customdata=std,
        error_x={"type": "data", "symmetric": False, "array": np.minimum(std, 1.0 - imp),
                 "arrayminus": np.minimum(std, imp), "color": "gray"},
        hovertemplate="%{y}: %{x:.3f} ± %{customdata:.3f} over the trees<extra></extra>",
    ))
    fig.update_yaxes(automargin=True)
    fig.update_xaxes(title=f"share of the variance of {study.metric}", range=[0, 1.0])
    return _layout(fig, title, height=int(160 + 40 * len(table)))


# Contour ---------------------------------------------------------------------------------
def _pick_pair(source: StudyLike, params: Sequence[str] | None) -> tuple[str, str]:
    study, _ = resolve(source)
    keys = list(study.space or ())
    if params is not None:
        pair = tuple(params)
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ValueError(f"params must name two different parameters, but got params={params!r}.")
        unknown = [k for k in pair if k not in keys]
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


def _contour_axis(dim: Dimension, grid: np.ndarray) -> tuple[list[Any], dict[str, Any]]:
    """Grid coordinates on the parameter's own axis (log where the space is), and its settings."""
    if isinstance(dim, Categorical):
        return list(grid), {"tickvals": [dim.encode(c) for c in dim.choices], "ticktext": [_short(c) for c in dim.choices],
                            "range": [0, 1]}
    values = [float(dim.decode(u)) if isinstance(dim, Real) else float(_decode_continuous(dim, u)) for u in grid]
    if getattr(dim, "log", False):
        return values, {"type": "log", "dtick": 1, "tickformat": "~g"}
    return values, {}


def _decode_continuous(dim: Dimension, u: float) -> float:
    """An integer dimension's continuous coordinate at ``u`` (the contour is smooth between integers).

    Inverts ``Integer.encode`` without rounding: each integer owns the cell around it.
    """
    low, high = float(dim.low), float(dim.high)  # type: ignore[attr-defined]
    if getattr(dim, "log", False):
        a, b = math.log(low - 0.5), math.log(high + 0.5)
        return min(max(math.exp(a + u * (b - a)), low), high)
    half = 0.5 * float(getattr(dim, "step", 1))
    return min(max(low - half + u * (high - low + 2 * half), low), high)


def _position(dim: Dimension, value: Any) -> Any:
    return dim.encode(value) if isinstance(dim, Categorical) else value


def plot_contour(source: StudyLike, params: Sequence[str] | None = None, resolution: int = 50,
                 **options: Any) -> go.Figure:
    """Filled contours of the predicted value over two parameters, with the trials on top."""
    study, _ = resolve(source)
    try:
        x_key, y_key, xs, ys, z = contour_data(source, params, resolution, **options)
    except ValueError as err:
        return _message(f"Contour of {study.name!r}", str(err))
    xdim, ydim = study.space[x_key], study.space[y_key]
    cx, xaxis = _contour_axis(xdim, xs)
    cy, yaxis = _contour_axis(ydim, ys)
    fig = go.Figure(go.Contour(
        x=cx, y=cy, z=z, colorscale="Viridis", reversescale=study.mode == "min", ncontours=15,
        colorbar={"title": f"predicted {study.metric}"},
        hovertemplate=f"{x_key} = %{{x:.4g}}<br>{y_key} = %{{y:.4g}}<br>predicted = %{{z:.4g}}<extra></extra>",
    ))
    trials = complete_trials(source)
    fig.add_trace(go.Scatter(
        x=[_position(xdim, params_of(study, t)[x_key]) for t in trials],
        y=[_position(ydim, params_of(study, t)[y_key]) for t in trials],
        mode="markers", name="trials", marker={"color": "white", "size": 7, "line": {"color": "black", "width": 1}},
        hovertext=[_hover_text(t, study) for t in trials], hovertemplate="%{hovertext}<extra></extra>",
    ))
    top = best_trial(source)
    if top is not None:
        best = params_of(study, top)
        fig.add_trace(go.Scatter(
            x=[_position(xdim, best[x_key])], y=[_position(ydim, best[y_key])], mode="markers",
            name=f"best (trial {top.number})", marker={"symbol": "star", "size": 18, "color": BEST_COLOR,
                                                      "line": {"color": "black", "width": 1}},
            hovertext=[_hover_text(top, study)], hovertemplate="%{hovertext}<extra></extra>",
        ))
    fig.update_xaxes(title=x_key, **xaxis)
    fig.update_yaxes(title=y_key, **yaxis)
    return _layout(fig, f"{study.metric} over {x_key} and {y_key} (random-forest marginal)", height=520)


# Empirical distribution ------------------------------------------------------------------
def edf_data(source: StudyLike) -> pd.DataFrame:
    """The complete trials sorted from best to worst: ``number``, ``value``, ``fraction``.

    ``fraction`` is the share of complete trials at least as good as this one, so the
    curve rises from ``1/n`` to 1; a sampler whose curve rises earlier finds good values
    more often.
    """
    study, _ = resolve(source)
    trials = sorted(complete_trials(source), key=lambda t: (t.value if study.mode == "min" else -t.value, t.number))  # type: ignore[operator]
    n = len(trials)
    return pd.DataFrame({"number": [t.number for t in trials], "value": [float(t.value) for t in trials],  # type: ignore[arg-type]
                         "fraction": [(i + 1) / n for i in range(n)]}, columns=["number", "value", "fraction"])


def plot_edf(source: StudyLike) -> go.Figure:
    """The empirical distribution function of the complete trials' values."""
    study, trials = resolve(source)
    title = f"Empirical distribution of {study.metric} in {study.name!r}"
    data = edf_data(source)
    if data.empty:
        return _message(title, "no complete trial yet")
    by_number = {t.number: t for t in trials}
    values = data["value"].to_numpy()
    bounds = robust_range(values)
    below, above = _split_outside(values, bounds)
    fig = go.Figure(go.Scatter(
        x=np.clip(values, *bounds) if bounds else values, y=data["fraction"], mode="lines+markers",
        line={"shape": "hv", "color": STATE_COLORS["COMPLETE"]}, name="complete trials",
        hovertext=[_hover_text(by_number[n], study) for n in data["number"]],
        hovertemplate="%{hovertext}<br>%{y:.0%} of the trials are at least this good<extra></extra>",
    ))
    best = data.iloc[0]
    fig.add_trace(go.Scatter(x=[best["value"]], y=[best["fraction"]], mode="markers", name=f"best (trial {int(best['number'])})",
                             marker={"symbol": "star", "size": 14, "color": BEST_COLOR},
                             hovertext=[_hover_text(by_number[int(best["number"])], study)],
                             hovertemplate="%{hovertext}<extra></extra>"))
    outside = int(below.sum() + above.sum())
    fig.update_xaxes(title=study.metric + (f" ({outside} outside the range, on its edge)" if outside else ""),
                     range=list(bounds) if bounds else None)
    fig.update_yaxes(title="fraction of complete trials", range=[0, 1.05], tickformat=".0%")
    return _layout(fig, title)


# Dispatch --------------------------------------------------------------------------------
PLOT_KINDS: dict[str, Callable[..., go.Figure]] = {
    "history": plot_history,
    "curves": plot_curves,
    "importance": plot_importance,
    "parallel": plot_parallel,
    "slice": plot_slice,
    "contour": plot_contour,
    "edf": plot_edf,
}

_STATIC = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".webp")


def save_figure(fig: go.Figure, path: str | os.PathLike[str], *, scale: float = 2.0) -> Path:
    """Write ``fig`` as self-contained HTML (``.html``) or a static image (``.png``, ``.svg``, ``.pdf``).

    Static images are drawn by kaleido (the ``export`` extra) in a headless Chrome or
    Chromium already on the machine (Debian: ``apt-get install chromium``); nothing is
    downloaded.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".htm", *_STATIC):
        raise ValueError(f"cannot save a plot as {path.name!r}: use .html, or {', '.join(_STATIC)} with the export extra.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".html", ".htm"):
        fig.write_html(path, include_plotlyjs=True, full_html=True, config={"responsive": True})
        return path
    try:
        import kaleido  # noqa: F401, PLC0415 - optional: static export only
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"saving {path.name!r} needs kaleido; install it with pip install 'frameworm-lightning[export]' "
            "(and Chromium: apt-get install chromium), or save as .html.", name="kaleido") from None
    try:
        fig.write_image(path, scale=scale)
    except (RuntimeError, OSError, ValueError) as err:
        if "chrome" in str(err).lower():
            raise RuntimeError(f"saving {path.name!r} needs Chrome or Chromium on this machine "
                               f"(Debian: apt-get install chromium): {err}") from None
        raise
    return path


def plot(source: StudyLike, kind: str = "history", path: str | os.PathLike[str] | None = None,
         **options: Any) -> go.Figure:
    """Draw the plot ``kind`` (see :data:`PLOT_KINDS`); save it when ``path`` is given.

    ``options`` go to the plot function, e.g. ``plot(study, "contour", params=("lr", "wd"))``.
    ``path`` ending in ``.html`` is a self-contained page; ``.png``/``.svg``/``.pdf`` need
    the ``export`` extra (see :func:`save_figure`).
    """
    try:
        draw = PLOT_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown plot kind {kind!r}; choose one of {', '.join(PLOT_KINDS)}.") from None
    fig = draw(source, **options)
    if path is not None:
        save_figure(fig, path)
    return fig
