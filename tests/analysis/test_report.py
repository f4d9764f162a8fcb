"""The self-contained HTML report: its content, and how it renders in headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from frameworm_lightning import SearchResult, Study
from frameworm_lightning.analysis import REPORT_KINDS, write_report

from ._images import assert_non_blank_png
from ._studies import additive, build_study

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Study, Path]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'db.sqlite'}"
    build_study("report", n=30, fn=additive, storage=url)
    stored = Study.load("report", url)  # the report works on a study read back from storage
    return stored, write_report(stored, tmp_path_factory.mktemp("report"))


def test_report_folder_has_the_page_each_plot_and_the_trial_table(report: tuple[Study, Path]) -> None:
    study, page = report
    assert page.name == "report.html"
    for kind in REPORT_KINDS:
        assert_non_blank_png(page.parent / f"{kind}.png")
    table = pd.read_csv(page.parent / "trials.csv")
    assert list(table["number"]) == [t.number for t in study.trials]


def test_report_is_self_contained_and_escaped(report: tuple[Study, Path]) -> None:
    study, page = report
    text = page.read_text(encoding="utf-8")
    images = re.findall(r'<img alt="(\w+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert [kind for kind, _ in images] == list(REPORT_KINDS)
    for _, data in images:
        assert_non_blank_png(base64.b64decode(data))
    # Nothing is loaded from elsewhere: no scripts, links or remote sources.
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:)', text)
    # The failed trial's reason and traceback are escaped, never raw HTML.
    assert "<boom>" not in text and "&lt;boom&gt; &amp; diverged" in text
    best = study.best_trial
    assert f"{best.value:.6g} (trial {best.number})" in text
    assert text.count('<tr class="best">') == 2  # in the top-k table and in the table of all trials


def test_result_report_to_one_html_file(tmp_path: Path) -> None:
    result = SearchResult(build_study("one-file", n=8))
    page = result.report(tmp_path / "nested" / "study.html", kinds=("history",))
    assert page == tmp_path / "nested" / "study.html"
    assert page.read_text(encoding="utf-8").count("data:image/png;base64,") == 1
    assert sorted(p.name for p in page.parent.iterdir()) == ["study.html"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is required in CI to render the report: apt-get install chromium")
    pytest.skip("chromium is not installed (Debian: apt-get install chromium); CI always runs this test")


def test_report_renders_in_headless_chromium(report: tuple[Study, Path], tmp_path: Path) -> None:
    chromium = _chromium()
    _, page = report
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
         f"--screenshot={shot}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    pixels = assert_non_blank_png(shot, min_size=(1200, 1600))
    # The page's heading rule and the plots' blue (#1f77b4) are on screen, so the CSS and
    # the inlined images were rendered, not just a white page.
    blue = (np.abs(pixels - np.array([31, 119, 180])).sum(axis=2) < 40).mean()
    assert blue > 0.001, f"only {blue:.3%} of the screenshot is the report's blue"
