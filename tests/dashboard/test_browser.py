"""The dashboard in a real browser (Playwright driving Debian's Chromium) while a search runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from frameworm_lightning import Study, TrialState
from tests.analysis._browser import chromium_page
from tests.analysis._images import assert_non_blank_png

from ._servers import serving, start_search

N_TRIALS = 12


def _count(page, state: str) -> int:
    return int(page.locator(f"#count-{state}").inner_text())


def test_the_dashboard_follows_a_running_search_live(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    gate = tmp_path / "go"
    search = start_search(url, gate, pause=0.1, n=N_TRIALS, hold=3)
    try:
        deadline = time.monotonic() + 120
        while not Path(url[len("sqlite:///"):]).exists() or not _has_study(url):
            assert search.poll() is None, search.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the search did not create its study"
            time.sleep(0.2)
        with serving(url, refresh=0.4) as base, chromium_page(width=1280, height=1000) as page:
            page.goto(base + "/")
            page.locator("#study-list a", has_text="live").click()
            page.wait_for_selector("#count-total")
            # The search holds its fourth trial until the page has shown the first three.
            page.wait_for_function("Number(document.getElementById('count-total').textContent) >= 3",
                                   timeout=120_000)
            first = _count(page, "total")
            gate.touch()
            # The page updates by itself while the other process adds trials.
            page.wait_for_function(f"Number(document.getElementById('count-total').textContent) > {first}",
                                   timeout=120_000)
            assert _count(page, "total") > first
            page.screenshot(path=str(_shot(tmp_path, "dashboard-running.png")))
            search.wait(timeout=300)
            assert search.returncode == 0, search.stderr.read()[-3000:]
            best = Study.load("live", url).best_trial
            page.wait_for_function(f"Number(document.getElementById('count-complete').textContent) === "
                                   f"{len(Study.load('live', url).trials_in(TrialState.COMPLETE))}", timeout=120_000)
            assert _count(page, "total") == N_TRIALS and _count(page, "pruned") == N_TRIALS // 4
            # The learning curves show the best trial, drawn by plotly.js in the page.
            page.wait_for_function(
                f"document.getElementById('plot-curves').data.some(t => t.name === 'best (trial {best.number})')",
                timeout=120_000)
            assert page.locator("#plot-curves .main-svg").count() >= 1
            best_row = page.locator("#trials tr.best td").first
            assert int(best_row.inner_text()) == best.number
            # A click on a row shows that trial's params, state and reason.
            page.locator("#trials tbody tr", has_text="PRUNED").first.click()
            page.wait_for_selector("#detail:not([hidden])")
            detail = page.locator("#detail pre").inner_text()
            assert '"state": "PRUNED"' in detail and "median rule" in detail and '"lr":' in detail
            assert page.blocked == []  # plotly.js came from the dashboard, not a CDN
            shot = _shot(tmp_path, "dashboard-done.png")
            page.screenshot(path=str(shot), full_page=True)
            assert_non_blank_png(shot, min_size=(1280, 1000))
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()


def _has_study(url: str) -> bool:
    from frameworm_lightning.storage import open_storage  # noqa: PLC0415

    store = open_storage(url)
    try:
        return "live" in store.study_names()
    finally:
        store.close()


def _shot(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("FRAMEWORM_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name
