"""The numbers behind each plot, and each plot as an interactive figure that reads well."""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest

from frameworm_lightning import Real, SearchResult, Study, TrialState
from frameworm_lightning.analysis import PLOT_KINDS, contour_data, history_data, learning_curves, plot, robust_range

from ._images import assert_non_blank_png, require_chromium
from ._studies import additive, build_study


@pytest.fixture(scope="module")
def study() -> Study:
    return build_study("plots", n=36, fn=additive)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_so_far_is_monotone_and_is_the_running_best(mode: str) -> None:
    study = build_study(f"history-{mode}", n=24, mode=mode)
    data = history_data(study)
    assert list(data["number"]) == [t.number for t in study.trials if t.state.is_finished]
    best = data["best_so_far"].dropna().to_numpy()
    steps = np.diff(best)
    assert (steps <= 0).all() if mode == "min" else (steps >= 0).all()
    complete = data["state"] == "COMPLETE"
    running = data["value"].where(complete)
    expected = (running.cummin() if mode == "min" else running.cummax()).ffill()
    np.testing.assert_allclose(data["best_so_far"], expected)
    assert best[-1] == study.best_trial.value


def test_a_pruned_trials_curve_ends_at_its_pruning_step(study: Study) -> None:
    curves = {c.number: c for c in learning_curves(study)}
    pruned = [t for t in study.trials if t.state is TrialState.PRUNED]
    assert len(pruned) >= 4
    for t in pruned:
        curve = curves[t.number]
        expected = 10 * (t.number % 5 + 1)  # build_study prunes trial n after n % 5 + 1 reports
        assert curve.steps[-1] == curve.stopped_at == t.last_step == expected
        assert curve.values[-1] == t.intermediate_values[expected]
        assert curve.reason.startswith("median rule")
    for c in curves.values():
        if c.state == "COMPLETE":
            assert c.stopped_at is None and c.steps == [10, 20, 30, 40, 50]
    # The figure marks each pruned trial with one point at that step, its number in customdata.
    fig = plot(study, "curves")
    (marks,) = [trace for trace in fig.data if trace.name == "pruned here"]
    where = {n: (x, y) for n, x, y in zip(marks.customdata, marks.x, marks.y)}
    assert sorted(where) == sorted(t.number for t in pruned)
    for t in pruned:
        assert where[t.number] == (t.last_step, t.intermediate_values[t.last_step])


def test_contour_is_the_forest_marginal_of_the_two_most_important_parameters(study: Study) -> None:
    x_key, y_key, xs, ys, z = contour_data(study, resolution=30)
    assert (x_key, y_key) == ("lr", "depth")
    assert xs.shape == ys.shape == (30,) and z.shape == (30, 30)
    assert np.isfinite(z).all()
    # The objective is lowest at lr = 10**-2.5 (the middle of the log range) and depth = 1.
    j, i = np.unravel_index(np.argmin(z), z.shape)
    assert abs(xs[i] - 0.5) < 0.2 and ys[j] < 0.3
    x_key, y_key, *_ = contour_data(study, params=("noise", "act"), resolution=5)
    assert (x_key, y_key) == ("noise", "act")
    with pytest.raises(ValueError, match="unknown parameter"):
        contour_data(study, params=("lr", "nope"))
    with pytest.raises(ValueError, match="two different"):
        contour_data(study, params=("lr", "lr"))


@pytest.mark.parametrize("kind", list(PLOT_KINDS))
def test_each_plot_is_a_plotly_figure_whose_hover_names_the_trial(study: Study, kind: str) -> None:
    fig = plot(study, kind)
    assert isinstance(fig, go.Figure) and fig.data
    json.loads(fig.to_json())  # serialisable, as the report and the dashboard send it
    if kind in ("importance", "parallel"):
        return  # bars of parameters, and plotly's parallel coordinates have no hover
    texts = [t for trace in fig.data for t in (trace.hovertext or ())]
    best = study.best_trial
    assert any(t.startswith(f"<b>trial {best.number}</b> · COMPLETE") and "lr = " in t and "act = " in t
               for t in texts), texts[:3]


def test_a_diverged_trial_does_not_flatten_the_plots_and_is_marked() -> None:
    study = build_study("diverged", n=20, fn=additive, prune_every=None, fail=())
    t = study.ask(budget=21)
    for step in (10, 20, 30):
        t.report(step, 8e23)
    t.complete(8e23)
    normal = [x.value for x in study.trials if x.value < 1e6]
    for kind in ("history", "curves", "slice", "edf"):
        fig = plot(study, kind)
        axis = fig.layout.xaxis if kind == "edf" else fig.layout.yaxis
        lo, hi = axis.range
        assert hi < 2 * max(normal) + 1 and lo > min(normal) - max(normal), (kind, axis.range)
    outside = [trace for trace in plot(study, "history").data if trace.name.startswith("outside")]
    assert len(outside) == 1 and list(outside[0].x) == [t.number]
    assert "8e+23" in outside[0].hovertext[0]
    assert robust_range([1.0, 2.0, 3.0]) == pytest.approx((0.9, 3.1))
    assert robust_range([math.nan, math.inf]) is None


def test_axes_follow_the_space_and_trial_numbers_are_integers(study: Study) -> None:
    slices = plot(study, "slice")
    axes = {slices.layout[name].title.text: slices.layout[name] for name in slices.layout
            if name.startswith("xaxis")}
    assert axes["lr"].type == "log" and axes["act"].type == "category"
    assert list(axes["act"].categoryarray) == ["relu", "gelu", "tanh"]
    contour = plot(study, "contour", params=("lr", "act"))
    assert contour.layout.xaxis.type == "log" and list(contour.layout.yaxis.ticktext) == ["relu", "gelu", "tanh"]
    history = plot(study, "history").layout.xaxis
    assert history.tickformat == "d" and float(history.dtick).is_integer() and history.dtick >= 1


def test_importance_error_bars_stay_within_zero_and_one() -> None:
    lopsided = build_study("lopsided", n=24, space={"lr": Real(1e-4, 1e-1, log=True), "noise": Real(0, 1)},
                           fn=lambda p: math.log10(p["lr"]) ** 2, prune_every=None, fail=())
    (bars,) = plot(lopsided, "importance").data
    x = np.asarray(bars.x)
    assert x.max() > 0.9
    assert (x + np.asarray(bars.error_x.array) <= 1.0 + 1e-12).all()
    assert (x - np.asarray(bars.error_x.arrayminus) >= -1e-12).all()


def test_plots_of_an_empty_or_one_parameter_study_say_why_they_are_empty() -> None:
    empty = Study.create("empty", {"x": Real(0, 1)}, storage="memory")
    for kind in PLOT_KINDS:
        fig = plot(empty, kind)
        assert fig.layout.annotations, kind
    assert "two parameters" in plot(empty, "contour").layout.annotations[0].text


def test_unknown_kind_lists_the_kinds(study: Study) -> None:
    with pytest.raises(ValueError, match="history, curves, importance, parallel, slice, contour, edf"):
        plot(study, "pie")


def test_result_plot_returns_the_figure_and_saves_html(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    build_study("stored", n=16, storage=url)
    result = SearchResult(Study.load("stored", url))
    path = tmp_path / "out" / "history.html"
    fig = result.plot("history", path)
    assert isinstance(fig, go.Figure)
    page = path.read_text(encoding="utf-8")
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inlined: works offline
    best = history_data(result)["best_so_far"].iloc[-1]
    assert math.isclose(best, result.best_score)
    with pytest.raises(ValueError, match=r"\.html"):
        result.plot("history", tmp_path / "history.txt")


def test_png_export_through_kaleido_and_chromium(study: Study, tmp_path) -> None:
    require_chromium()
    path = tmp_path / "history.png"
    plot(study, "history", path)
    assert_non_blank_png(path)
