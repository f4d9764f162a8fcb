"""The dashboard's routes over real storages: what they show, and that they never write."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from frameworm_lightning import Study, TrialState
from frameworm_lightning.dashboard import create_app, study_summaries
from frameworm_lightning.dashboard._cli import parser
from frameworm_lightning.exceptions import StorageError
from frameworm_lightning.storage import current_owner, open_storage
from tests.analysis._studies import build_study

from ._servers import dump_rows, serving


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            body = response.read().decode()
            kind = response.headers.get("content-type", "")
            return response.status, json.loads(body) if kind.startswith("application/json") else body
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _every_route(base: str, study: str, numbers: list[int]) -> dict[str, Any]:
    pages = {path: _get(base + path) for path in ("/", "/api/studies", f"/study/{study}", f"/api/studies/{study}",
                                                  "/static/plotly.min.js")}
    for n in numbers:
        pages[f"trial {n}"] = _get(f"{base}/api/studies/{study}/trials/{n}")
    return pages


def _script_study(url: str) -> None:
    """A study as the stopping callbacks record it from a plain training script: no space."""
    store = open_storage(url)
    record = store.create_or_load_study("script", "val_acc", "max", {}, check_space=False)
    for number, (width, final) in enumerate([(64, 0.91), (128, 0.95), (32, 0.62)]):
        frozen, _ = store.claim_trial(record.study_id, current_owner(), None)
        store.set_trial_params(frozen.trial_id, {"width": width, "optimizer": "adam"}, None, {"standalone": True})
        for step in (10, 20, 30):
            store.report(frozen.trial_id, step, final - 0.1 / step * 10)
        if number == 2:
            store.finish_trial(frozen.trial_id, TrialState.PRUNED, reason="threshold: val_acc below 0.7 at step 30")
        else:
            store.finish_trial(frozen.trial_id, TrialState.COMPLETE, value=final)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'runs.db'}"
    build_study("hand", n=20, storage=url)
    _script_study(url)
    return url


def test_the_pages_show_studies_counts_figures_and_trials(sqlite_url: str) -> None:
    study = Study.load("hand", sqlite_url)
    best = study.best_trial
    with serving(sqlite_url) as base:
        pages = _every_route(base, "hand", [best.number, 5])
    status, index = pages["/"]
    assert status == 200 and 'href="study/hand"' in index and 'href="study/script"' in index
    status, studies = pages["/api/studies"]
    summary = {s["name"]: s for s in studies["studies"]}["hand"]
    assert summary["best"] == best.value and summary["counts"]["total"] == 20
    status, data = pages["/api/studies/hand"]
    assert status == 200 and data["counts"]["COMPLETE"] == len(study.trials_in(TrialState.COMPLETE))
    assert set(data["figures"]) == {"history", "curves", "importance", "parallel", "slice", "edf"}
    curves = [trace["name"] for trace in data["figures"]["curves"]["data"]]
    assert f"best (trial {best.number})" in curves and "pruned here" in curves
    assert data["figures"]["history"]["layout"]["uirevision"] == "history"  # refreshes keep the zoom
    assert '<tr class="best">' in data["table_html"] and "median rule" in data["table_html"]
    with serving(sqlite_url) as base:  # a page that is up to date gets no figures again
        status, same = _get(f"{base}/api/studies/hand?since={data['version']}")
    assert same == {"version": data["version"], "unchanged": True}
    status, detail = pages[f"trial {best.number}"]
    assert detail["state"] == "COMPLETE" and detail["value"] == best.value and set(detail["params"]) == set(study.space)
    status, failed = pages["trial 5"]
    assert failed["state"] == "FAILED" and "&" in failed["error"] and "<boom>" in failed["error"]  # JSON, not HTML
    status, script = pages["/static/plotly.min.js"]
    assert status == 200 and len(script) > 1_000_000


def test_a_study_recorded_by_the_callbacks_in_a_script_has_no_space_and_still_shows(sqlite_url: str) -> None:
    assert open_storage(sqlite_url).load_study("script").space == {}  # stored without a space
    with serving(sqlite_url) as base:
        status, data = _get(base + "/api/studies/script")
        _, detail = _get(base + "/api/studies/script/trials/2")
    assert status == 200 and data["best_trial"] == 1 and data["counts"]["PRUNED"] == 1
    assert "<th class=\"text\">width</th>" in data["table_html"]
    history = data["figures"]["history"]["data"]
    assert any("width = 128" in text for trace in history for text in trace.get("hovertext", []))
    (bars,) = data["figures"]["importance"]["data"]  # over the space its runs recorded
    assert {label.split()[0] for label in bars["y"]} == {"width", "optimizer"}
    assert detail["reason"].startswith("threshold") and detail["params"] == {"width": 32, "optimizer": "adam"}


def test_unknown_studies_and_trials_are_404(sqlite_url: str) -> None:
    with serving(sqlite_url) as base:
        assert _get(base + "/study/nope")[0] == 404
        assert _get(base + "/api/studies/nope")[0] == 404
        assert _get(base + "/api/studies/hand/trials/999")[0] == 404


def _assert_read_only(url: str, study: str) -> None:
    before = dump_rows(url)
    numbers = [t.number for t in Study.load(study, url).trials]
    with serving(url) as base:
        for _ in range(2):
            pages = _every_route(base, study, numbers)
            assert all(status == 200 for status, _ in pages.values())
    assert dump_rows(url) == before


def test_the_dashboard_never_writes_to_sqlite(sqlite_url: str) -> None:
    _assert_read_only(sqlite_url, "hand")


@pytest.mark.postgres
def test_the_dashboard_reads_postgresql_and_never_writes(postgres_url: str) -> None:
    name = f"pg-{uuid.uuid4().hex[:8]}"
    build_study(name, n=10, storage=postgres_url)
    _assert_read_only(postgres_url, name)
    assert name in [s["name"] for s in study_summaries(open_storage(postgres_url))]


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nope.db'}"
    with pytest.raises(StorageError, match="no database at"):
        create_app(url)
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(ValueError, match="refresh"):
        create_app("memory", refresh=0)


def test_the_command_binds_to_this_machine_unless_told(tmp_path: Path) -> None:
    args = parser().parse_args(["--storage", "sqlite:///x.db"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)
    cmd = [sys.executable, "-c", "from frameworm_lightning.cli import main; main()", "dashboard",
           "--storage", f"sqlite:///{tmp_path / 'none.db'}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "error: no database at" in run.stderr, run.stderr[-2000:]
    assert len(run.stderr.strip().splitlines()) == 1
    helped = subprocess.run(cmd[:4] + ["--help"], capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0 and "--storage" in helped.stdout and "127.0.0.1" in helped.stdout


def test_serve_never_prints_a_password(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from frameworm_lightning.dashboard import _app

    served: dict[str, Any] = {}
    monkeypatch.setattr(_app, "create_app", lambda storage, refresh: "app")
    monkeypatch.setattr(_app.uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    _app.serve("postgresql://alice:s3cret@db.example/studies", port=8123)
    out = capsys.readouterr().out
    assert "s3cret" not in out and "alice:***@db.example" in out and "http://127.0.0.1:8123/" in out
    assert served["host"] == "127.0.0.1" and served["port"] == 8123
