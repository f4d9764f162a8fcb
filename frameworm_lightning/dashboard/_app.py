"""The dashboard's web app: a few Starlette routes serving plotly figures as JSON.

Why Starlette and plotly, not a JavaScript framework or Dash: the plots are the same
plotly figures the analysis module and the HTML report draw, so the page only needs
plotly.js (served from the installed ``plotly`` package, never a CDN) and about forty
lines of script that fetch a study's JSON every few seconds and hand it to
``Plotly.react`` (which keeps the user's zoom through ``uirevision``). Starlette and
uvicorn are two small, maintained packages; Dash would bring Flask, React and its own
callback model for what is one polling loop.

Routes (all ``GET``, nothing writes):

* ``/``: the studies of the storage, with counts and best values;
* ``/study/{name}``: one study, updating live;
* ``/api/studies``: the study summaries as JSON;
* ``/api/studies/{name}[?since=VERSION]``: one study's counts, figures (plotly JSON) and
  trial table, or only ``{"unchanged": true}`` when nothing changed since ``VERSION``;
* ``/api/studies/{name}/trials/{number}``: one trial's params, state, reason, logs folder;
* ``/static/plotly.min.js``: plotly.js from the installed package.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
from typing import Any
from urllib.parse import quote

import plotly.graph_objects as go
import uvicorn
from plotly.offline import get_plotlyjs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from frameworm_lightning.analysis._plots import plot
from frameworm_lightning.analysis._report import CSS, SORT_SCRIPT, html_table
from frameworm_lightning.dashboard._data import INTERRUPTED, PROMOTED, counts, read_storage, study_summaries, table_frame, trial_detail
from frameworm_lightning.storage import Storage, masked_url
from frameworm_lightning.study import Study
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["create_app", "serve"]

# Plots on the study page, in order. Importance (a random forest) is cached until the
# set of complete trials changes; the others are cheap.
LIVE_KINDS = ("history", "curves", "importance", "parallel", "slice", "edf")
_FOREST_KINDS = ("importance",)

_PAGE_CSS = CSS + """
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0 1.5em; }
.counts span { margin-right: 1em; white-space: nowrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 560px), 1fr)); gap: 1em; }
#trials tbody tr { cursor: pointer; }
#detail { border: 1px solid #ccc; padding: .5em 1em; margin: 1em 0; background: #fafafa; }
#detail pre { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 20em; overflow-y: auto; }
nav a { margin-right: 1em; }
"""

_STUDY_SCRIPT = """
var FW = {refresh: %(refresh)d, api: %(api)s, sort: null, version: ""};
function fwDetail(number) {
  fetch(FW.api + "/trials/" + number).then(function (r) { return r.json(); }).then(function (t) {
    var box = document.getElementById("detail");
    box.hidden = false;
    box.querySelector("h3").textContent = "Trial " + t.number + " \\u00b7 " + t.state;
    box.querySelector("pre").textContent = JSON.stringify(t, null, 2);
  });
}
function fwBindTable() {
  frameworm_sortable(document.getElementById("table"));
  document.querySelectorAll("#trials tbody tr").forEach(function (row) {
    row.addEventListener("click", function () { fwDetail(row.cells[0].textContent); });
  });
  document.querySelectorAll("#trials th").forEach(function (th, i) {
    th.addEventListener("click", function () { FW.sort = [i, th.getAttribute("aria-sort")]; });
  });
  if (FW.sort) {  /* keep the user's sort through a refresh */
    var th = document.querySelectorAll("#trials th")[FW.sort[0]], want = FW.sort[1];
    if (th) { th.click(); if (th.getAttribute("aria-sort") !== want) { th.click(); } }
  }
}
function fwUpdate() {
  fetch(FW.api + "?since=" + FW.version).then(function (r) { return r.json(); }).then(function (d) {
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (d.unchanged) { return; }
    FW.version = d.version;
    document.getElementById("counts").innerHTML = d.counts_html;
    Object.keys(d.figures).forEach(function (kind) {
      var fig = d.figures[kind];
      Plotly.react("plot-" + kind, fig.data, fig.layout, {responsive: true, displaylogo: false});
    });
    var sort = FW.sort;
    document.getElementById("table").innerHTML = d.table_html;
    FW.sort = sort;
    fwBindTable();
  }).catch(function (e) {
    document.getElementById("updated").textContent = "cannot reach the dashboard: " + e;
  }).finally(function () { setTimeout(fwUpdate, FW.refresh); });
}
fwUpdate();
"""

_INDEX_SCRIPT = """
function fwStudies() {
  fetch("api/studies").then(function (r) { return r.json(); }).then(function (d) {
    document.getElementById("studies").innerHTML = d.table_html;
    frameworm_sortable(document.getElementById("studies"));
  }).finally(function () { setTimeout(fwStudies, %(refresh)d); });
}
fwStudies();
"""


def _page(title: str, body: str, script: str) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_PAGE_CSS}</style>"
        "<script src=\"/static/plotly.min.js\"></script>"
        f"<script>{SORT_SCRIPT}</script></head><body>{body}<script>{script}</script></body></html>\n"
    )


def _version(trials: list[FrozenTrial]) -> str:
    """A fingerprint of what the study page shows: it changes with any state, value or report."""
    seen = [(t.number, t.state.value, t.value, len(t.intermediate_values), t.last_step, t.reason) for t in trials]
    return hashlib.sha1(repr(seen).encode()).hexdigest()[:16]


def _counts_html(c: dict[str, int]) -> str:
    parts = [f'<span>trials <b id="count-total">{c["total"]}</b></span>']
    for state in [*(s.value for s in TrialState), INTERRUPTED, PROMOTED]:
        parts.append(f'<span class="state-{state}">{state.lower()} <b id="count-{state.lower()}">{c[state]}</b></span>')
    return "".join(parts)


class _Dashboard:
    """The routes' shared state: the storage and the cache of forest-based figures."""

    def __init__(self, storage: Storage, refresh: float) -> None:
        self.storage = storage
        self.refresh_ms = int(refresh * 1000)
        self._cache: dict[tuple[str, str], tuple[Any, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _study(self, name: str) -> Any:
        if self.storage.load_study(name) is None:
            return None
        return Study.load(name, self.storage)

    def figures(self, study: Any) -> dict[str, dict[str, Any]]:
        trials = study.trials
        done = tuple(t.number for t in trials if t.state is TrialState.COMPLETE)
        out = {}
        for kind in LIVE_KINDS:
            key = (study.name, kind)
            with self._lock:
                cached = self._cache.get(key)
            if kind in _FOREST_KINDS and cached is not None and cached[0] == done:
                out[kind] = cached[1]
                continue
            fig: go.Figure = plot(study, kind)
            fig.update_layout(uirevision=kind)  # a refresh keeps the user's zoom and hidden traces
            out[kind] = json.loads(fig.to_json())
            if kind in _FOREST_KINDS:
                with self._lock:
                    self._cache[key] = (done, out[kind])
        return out

    # Routes -----------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        body = (f"<h1>Studies</h1><p class=\"note\">{html.escape(self.storage.url)} · read-only · refreshed every "
                f"{self.refresh_ms / 1000:g} s</p><div id=\"studies\">{self._studies_table()}</div>")
        return _page("frameworm-lightning dashboard", body, _INDEX_SCRIPT % {"refresh": self.refresh_ms})

    def _studies_table(self) -> str:
        rows = []
        for s in study_summaries(self.storage):
            link = f'<a href="study/{quote(s["name"], safe="")}">{html.escape(s["name"])}</a>'
            best = "" if s["best"] is None else f'{s["best"]:.6g} (trial {s["best_trial"]})'
            c = s["counts"]
            rows.append(f'<tr><td class="text">{link}</td><td class="text">{html.escape(s["metric"])} ({s["mode"]})</td>'
                        f'<td data-v="{c["total"]}">{c["total"]}</td><td data-v="{c["COMPLETE"]}">{c["COMPLETE"]}</td>'
                        f'<td data-v="{c["RUNNING"]}">{c["RUNNING"]}</td><td data-v="{c["PRUNED"]}">{c["PRUNED"]}</td>'
                        f'<td data-v="{c["FAILED"]}">{c["FAILED"]}</td>'
                        f'<td data-v="{c[INTERRUPTED]}">{c[INTERRUPTED]}</td>'
                        f'<td data-v="{c[PROMOTED]}">{c[PROMOTED]}</td><td class="text">{best}</td></tr>')
        if not rows:
            return '<p class="note">no study stored yet</p>'
        head = "".join(f'<th class="text">{h}</th>' for h in
                       ("study", "objective", "trials", "complete", "running", "pruned", "failed", "interrupted", "promoted", "best"))
        return (f'<div class="scroll"><table class="sortable" id="study-list"><thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')

    async def studies(self, request: Request) -> Response:
        return JSONResponse({"studies": study_summaries(self.storage), "table_html": self._studies_table()})

    async def study_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        study = self._study(name)
        if study is None:
            return HTMLResponse(f"<p>no study named {html.escape(name)!r}; <a href=\"/\">all studies</a></p>",
                                status_code=404)
        plots = "".join(f'<div class="plot" id="plot-{k}"></div>' for k in LIVE_KINDS)
        body = (
            f'<nav><a href="/">all studies</a></nav><header><h1>{html.escape(name)}</h1>'
            f'<span>{html.escape(study.metric)} ({study.mode})</span><span class="note" id="updated"></span></header>'
            f'<div class="counts" id="counts"></div><div class="grid">{plots}</div>'
            '<div id="detail" hidden><h3></h3><pre></pre></div>'
            '<h2>Trials</h2><p class="note">Click a row for the trial\'s params, reason and logs folder; '
            'a header to sort.</p><div id="table"></div>'
        )
        api = json.dumps(f"/api/studies/{quote(name, safe='')}")
        return _page(f"{name}: frameworm-lightning", body, _STUDY_SCRIPT % {"refresh": self.refresh_ms, "api": api})

    async def study_data(self, request: Request) -> Response:
        study = self._study(request.path_params["name"])
        if study is None:
            return JSONResponse({"error": "no such study"}, status_code=404)
        trials = study.trials
        version = _version(trials)
        if request.query_params.get("since") == version:  # nothing changed since the page's last update
            return JSONResponse({"version": version, "unchanged": True})
        best = study.best_trial
        return JSONResponse({
            "version": version, "unchanged": False,
            "name": study.name, "metric": study.metric, "mode": study.mode,
            "counts": counts(trials), "counts_html": _counts_html(counts(trials)),
            "best_trial": None if best is None else best.number,
            "figures": self.figures(study),
            "table_html": html_table(table_frame(study, trials), None if best is None else best.number,
                                     table_id="trials"),
        })

    async def trial(self, request: Request) -> Response:
        study = self._study(request.path_params["name"])
        detail = None if study is None else trial_detail(study, int(request.path_params["number"]))
        if detail is None:
            return JSONResponse({"error": "no such trial"}, status_code=404)
        return JSONResponse(detail)

    async def plotly_js(self, request: Request) -> Response:
        return Response(get_plotlyjs(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})


def create_app(storage: str | Storage, *, refresh: float = 2.0) -> Starlette:
    """The dashboard's ASGI app over ``storage`` (a URL or a :class:`Storage`), for any ASGI server.

    ``refresh`` is how often (seconds) an open page asks for new data.

    Raises:
        StorageError: the storage cannot be opened (or a SQLite file does not exist).
    """
    if not refresh > 0:
        raise ValueError(f"refresh must be a positive number of seconds, but got refresh={refresh!r}.")
    board = _Dashboard(read_storage(storage), refresh)
    return Starlette(routes=[
        Route("/", board.index),
        Route("/study/{name:path}", board.study_page),
        Route("/api/studies", board.studies),
        Route("/api/studies/{name:path}/trials/{number:int}", board.trial),
        Route("/api/studies/{name:path}", board.study_data),
        Route("/static/plotly.min.js", board.plotly_js),
    ])


def serve(storage: str | Storage, host: str = "127.0.0.1", port: int = 8080, *, refresh: float = 2.0,
          log_level: str = "warning") -> None:
    """Serve the dashboard of ``storage`` at ``http://host:port/`` until interrupted.

    It binds to ``127.0.0.1`` (this machine only) unless told otherwise: the pages show
    params, paths and tracebacks, so expose it on purpose (``host="0.0.0.0"``).
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, but got port={port!r}.")
    app = create_app(storage, refresh=refresh)
    url = masked_url(storage) if isinstance(storage, str) else storage.url  # never print a password
    print(f"frameworm-lightning dashboard of {url} at http://{host}:{port}/ (read-only; Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)

