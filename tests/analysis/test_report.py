"""The self-contained HTML report: its content, and how it works in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from frameworm_lightning import SearchResult, Study
from frameworm_lightning.analysis import REPORT_KINDS, render_report, write_report

from ._browser import chromium_page
from ._images import assert_non_blank_png
from ._studies import additive, build_study, paused_and_promoted

LONG_REASON = "median rule: " + "the value at this step is worse than the median of the earlier trials; " * 6


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'db.sqlite'}"
    study = build_study("report", n=30, fn=additive, storage=url)
    trial = study.ask(budget=31)
    trial.report(10, 5.0)
    trial.prune(LONG_REASON)
    stored = Study.load("report", url)  # the report works on a study read back from storage
    return stored, write_report(stored, tmp_path_factory.mktemp("report"))


def test_report_folder_has_the_page_and_the_trial_table(report: tuple[Study, Path]) -> None:
    study, page = report
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html", "trials.csv"]
    table = pd.read_csv(page.parent / "trials.csv")
    assert list(table["number"]) == [t.number for t in study.trials]


def test_report_is_self_contained_and_escaped(report: tuple[Study, Path]) -> None:
    study, page = report
    text = page.read_text(encoding="utf-8")
    assert [f"plot-{k}" for k in REPORT_KINDS] == re.findall(r'<div id="(plot-\w+)"', text)
    # Nothing is loaded from elsewhere: no external scripts, style sheets or images.
    assert not re.search(r"<script[^>]+src=", text) and "<link" not in text.lower()
    assert not re.search(r'<img[^>]+src="(?!data:)', text)
    # The failed trial's reason and traceback are escaped, never raw HTML.
    assert "<boom>" not in text and "&lt;boom&gt; &amp; diverged" in text
    best = study.best_trial
    assert f"{best.value:.6g} (trial {best.number})" in text
    assert text.count('<tr class="best">') == 2  # in the top-k table and in the table of all trials


def test_result_report_to_one_html_file(tmp_path: Path) -> None:
    result = SearchResult(build_study("one-file", n=8))
    page = result.report(tmp_path / "nested" / "study.html", kinds=("history",))
    assert page == tmp_path / "nested" / "study.html"
    assert page.read_text(encoding="utf-8").count('class="plotly-graph-div"') == 1
    assert sorted(p.name for p in page.parent.iterdir()) == ["study.html"]


@pytest.mark.parametrize("columns", [80, 200])
def test_report_in_chromium_offline_sortable_and_readable(report: tuple[Study, Path], tmp_path: Path,
                                                          columns: int) -> None:
    study, page_path = report
    best = study.best_trial
    # 80 or 200 columns of 8-pixel text.
    with chromium_page(width=columns * 8 + 20, height=1000) as page:
        page.goto(page_path.resolve().as_uri())
        page.wait_for_function("document.querySelectorAll('#plot-history .main-svg').length > 0", timeout=120_000)
        assert page.blocked == []  # works offline: nothing was fetched from anywhere
        # Every plot was drawn by plotly.js, and the history shows the best trial.
        drawn = page.evaluate("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                              ".filter(d => d.querySelector('.main-svg')).length")
        assert drawn == len(REPORT_KINDS)
        names = page.evaluate("document.getElementById('plot-history').data.map(t => t.name)")
        assert "best so far" in names
        curves = page.evaluate("document.getElementById('plot-curves').data.map(t => t.name)")
        assert f"best (trial {best.number})" in curves
        # The page never scrolls sideways; wide tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        # A long pruning reason is one line, its whole text in the tooltip.
        cell = page.locator("#trials td.long", has_text="median rule").first
        assert cell.get_attribute("title").strip() == LONG_REASON.strip()
        height = cell.evaluate("c => c.getBoundingClientRect().height")
        assert height < 40, height
        # Sorting by value puts the best trial first (mode "min": ascending).
        header = page.locator("#trials th", has_text=re.compile(r"^value$"))
        header.click()
        first = page.locator("#trials tbody tr").first.locator("td").first.inner_text()
        assert int(first) == best.number
        header.click()
        assert page.locator("#trials th[aria-sort=descending]").count() == 1
        shot = tmp_path / f"report-{columns}.png"
        page.screenshot(path=str(shot), full_page=False)
        assert_non_blank_png(shot, min_size=(columns * 8, 900))


def test_an_interrupted_trial_is_counted_and_listed_apart_from_the_failed_ones() -> None:
    # The summary said "2 failed" for a failed trial and an interrupted one (which runs again on resume).
    study = build_study("stopped", n=6, prune_every=None, fail=(2,))
    trial = study.ask(budget=7)
    trial.interrupt("the search was stopped by SIGINT")
    page = render_report(study, kinds=("history",))
    assert "1 waiting, 5 complete, 1 failed, 1 interrupted" in page
    assert re.search(r"trial 6: interrupted: the search was stopped by SIGINT; its params run again as trial 7", page)
    assert "trial 2: " in page


def test_a_paused_and_promoted_trial_is_counted_apart_from_the_pruned_ones() -> None:
    # The summary said "1 complete, 2 pruned": the paused trial 0 went on as trial 1, one configuration.
    page = render_report(paused_and_promoted(), kinds=("history",))
    assert "1 complete, 1 pruned, 1 promoted" in page
