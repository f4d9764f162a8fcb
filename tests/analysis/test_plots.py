"""The numbers behind each plot, and each plot as a valid, non-blank PNG."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from frameworm_lightning import Real, SearchResult, Study, TrialState
from frameworm_lightning.analysis import PLOT_KINDS, contour_data, history_data, learning_curves, plot

from ._images import assert_non_blank_png
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
    # The figure marks each pruned trial with one point at that step.
    fig = plot(study, "curves")
    marks = {line.get_gid(): line for line in fig.axes[0].get_lines() if line.get_gid()}
    for t in pruned:
        line = marks[f"pruned-{t.number}"]
        assert list(line.get_xdata()) == [t.last_step]
        assert list(line.get_ydata()) == [t.intermediate_values[t.last_step]]


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
def test_each_plot_is_a_valid_non_blank_png(study: Study, kind: str, tmp_path) -> None:
    path = tmp_path / f"{kind}.png"
    fig = plot(study, kind, path)
    assert fig.axes
    assert_non_blank_png(path)


def test_plots_of_an_empty_or_one_parameter_study_say_why_they_are_empty(tmp_path) -> None:
    empty = Study.create("empty", {"x": Real(0, 1)}, storage="memory")
    for kind in PLOT_KINDS:
        path = tmp_path / f"{kind}.png"
        plot(empty, kind, path)
        Image.open(io.BytesIO(path.read_bytes())).verify()
    texts = [t.get_text() for t in plot(empty, "contour").axes[0].texts]
    assert any("two parameters" in t for t in texts)


def test_unknown_kind_lists_the_kinds(study: Study) -> None:
    with pytest.raises(ValueError, match="history, parallel, slice, importance, curves, contour"):
        plot(study, "pie")


def test_result_plot_on_a_study_read_back_from_storage(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    build_study("stored", n=16, storage=url)
    result = SearchResult(Study.load("stored", url))
    path = tmp_path / "out" / "history.png"
    result.plot("history", path)
    assert_non_blank_png(path)
    best = history_data(result)["best_so_far"].iloc[-1]
    assert math.isclose(best, result.best_score)
