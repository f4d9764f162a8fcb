"""A self-contained HTML report of a study: every plot (interactive) and a sortable trial table.

The page loads nothing from anywhere: plotly.js is inlined once (4.8 MB; a 31-trial report is 5.0 MB), the
figures are JSON in the page, the style sheet and the few lines that sort the tables
are inline too. It can be mailed, attached to a CI run or opened offline. It reads at
any width: plots resize with the window, wide tables scroll inside their own box, and
a long pruning reason is cut to one line with the whole text in its tooltip.

Example:
    >>> import tempfile
    >>> from frameworm_lightning import Real, Study
    >>> from frameworm_lightning.analysis import write_report
    >>> study = Study.create("report", {"x": Real(0, 1)}, metric="loss", storage="memory")
    >>> while (t := study.ask(budget=3)) is not None:
    ...     _ = t.complete(t.params["x"])
    >>> write_report(study, tempfile.mkdtemp()).name
    'report.html'
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from frameworm_lightning.analysis._frame import StudyLike, best_trial, params_of, resolve, top_k, trials_dataframe
from frameworm_lightning.analysis._importance import importance_table
from frameworm_lightning.analysis._plots import PLOT_KINDS, plot, save_figure
from frameworm_lightning.trial import TrialState, count_states

__all__ = ["CSS", "REPORT_KINDS", "SORT_SCRIPT", "figure_div", "html_table", "render_report", "save_plots",
           "write_report"]

# The order plots appear in the report.
REPORT_KINDS = ("history", "curves", "importance", "parallel", "slice", "contour", "edf")

_TITLES = {
    "history": "Optimisation history",
    "curves": "Learning curves",
    "importance": "Parameter importance (fANOVA on a random forest)",
    "parallel": "Parallel coordinates",
    "slice": "Slices",
    "contour": "Contour of the two most important parameters",
    "edf": "Empirical distribution of the values",
}

# Shared with the dashboard, which shows the same tables.
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1em auto; max-width: 1400px;
       color: #222; background: #fff; padding: 0 1em; }
h1 { border-bottom: 2px solid #1f77b4; padding-bottom: .3em; font-size: 1.6em; overflow-wrap: anywhere; }
h2 { margin-top: 1.5em; color: #1f77b4; font-size: 1.25em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #eef3f8; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
td.long { max-width: 28em; overflow: hidden; text-overflow: ellipsis; }
tr.best td { background: #fde9e9; font-weight: bold; }
td.state-PRUNED { color: #b85c00; } td.state-FAILED { color: #c62828; } td.state-RUNNING { color: #00838f; }
.summary td { white-space: normal; overflow-wrap: anywhere; }
.summary td:first-child { text-align: left; font-weight: bold; white-space: nowrap; }
.plot { width: 100%; min-height: 300px; }
pre { background: #f6f6f6; padding: .5em; overflow-x: auto; font-size: 12px; }
.note { color: #666; font-size: 13px; }
"""

# Click a column header to sort by it (numbers as numbers); click again to reverse.
SORT_SCRIPT = """
function frameworm_sortable(root) {
  root.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        function key(row) { var c = row.cells[col]; return c.hasAttribute("data-v") ? parseFloat(c.getAttribute("data-v")) : c.textContent; }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b), nx = typeof x === "number" && !isNaN(x), ny = typeof y === "number" && !isNaN(y);
          if (nx !== ny) { return nx ? -1 : 1; }  /* empty cells last */
          var r = nx ? x - y : String(x).localeCompare(String(y));
          return asc ? r : -r;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
}
"""

_TABLE_COLUMNS_DROPPED = ("error", "trial_dir", "checkpoint_path")
_LONG = 60  # characters: a longer text cell is cut to one line, the whole text in its tooltip


def _cell(value: Any, column: str = "") -> str:
    if value is None or (not isinstance(value, (str, tuple, list, dict)) and pd.isna(value)):
        return "<td></td>"
    if isinstance(value, bool):
        return f'<td class="text">{value}</td>'
    if isinstance(value, (int, float)):
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        return f'<td data-v="{float(value)!r}">{shown}</td>'
    if isinstance(value, pd.Timestamp):
        return f'<td class="text">{value.strftime("%Y-%m-%d %H:%M:%S")}</td>'
    text = str(value)
    classes = ["text"]
    if column == "state":
        classes.append(f"state-{html.escape(text)}")
    if len(text) > _LONG or "\n" in text:
        first = text.strip().splitlines()[0] if text.strip() else text
        return f'<td class="text long" title="{html.escape(text)}">{html.escape(first)}</td>'
    return f'<td class="{" ".join(classes)}">{html.escape(text)}</td>'


def html_table(frame: pd.DataFrame, best_number: int | None = None, *, sortable: bool = True,
               table_id: str | None = None) -> str:
    """An HTML table of ``frame`` with every cell escaped, the best trial's row marked,
    numbers sortable as numbers, and wrapped in a box that scrolls sideways."""
    head = "".join(f'<th class="text">{html.escape(str(c))}</th>' for c in frame.columns)
    columns = [str(c) for c in frame.columns]
    rows = []
    for record in frame.itertuples(index=False):
        values = list(record)
        number = values[columns.index("number")] if "number" in columns else None
        cls = ' class="best"' if best_number is not None and number == best_number else ""
        cells = "".join(_cell(v, c) for v, c in zip(values, columns))
        rows.append(f"<tr{cls}>{cells}</tr>")
    attrs = (' class="sortable"' if sortable else "") + (f' id="{html.escape(table_id)}"' if table_id else "")
    return f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def figure_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a ``<div>`` and the script that draws it (plotly.js loaded elsewhere)."""
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"responsive": True, "displaylogo": False})


def _summary(source: StudyLike) -> str:
    study, trials = resolve(source)
    best = best_trial(source)
    counts = count_states(trials)  # an interrupted trial is stored FAILED, but its params run again
    rows = [
        ("study", study.name),
        ("objective", f"{study.metric} ({study.mode})"),
        ("trials", ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "none"),
    ]
    if best is not None:
        rows += [
            ("best value", f"{best.value:.6g} (trial {best.number})"),
            ("best params", json.dumps(params_of(study, best), default=str)),
        ]
        if best.system_attrs.get("checkpoint_path"):
            rows.append(("best checkpoint", str(best.system_attrs["checkpoint_path"])))
    cells = "".join(f'<tr><td>{html.escape(k)}</td><td class="text">{html.escape(str(v))}</td></tr>'
                    for k, v in rows)
    return f'<table class="summary">{cells}</table>'


def _failures(source: StudyLike) -> str:
    _, trials = resolve(source)
    failed = [t for t in trials if t.state is TrialState.FAILED and t.error]
    if not failed:
        return ""
    parts = []
    for t in failed:
        tail = "\n".join(t.error.strip().splitlines()[-6:])  # type: ignore[union-attr]
        reason = (t.reason or "failed").splitlines()[0][:200]
        if t.interrupted:  # not its own fault: say why and where its params ran again
            reason = t.error.strip().splitlines()[0][:200]  # type: ignore[union-attr]
            again = t.system_attrs.get("requeued_as")
            reason += "; its params run again" + ("" if again is None else f" as trial {again}")
        parts.append(f"<details><summary>trial {t.number}: {html.escape(reason)}"
                     f"</summary><pre>{html.escape(tail)}</pre></details>")
    return "<h2>Failures</h2>" + "".join(parts)


def _check_kinds(kinds: Iterable[str]) -> list[str]:
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in PLOT_KINDS]
    if unknown:
        raise ValueError(f"unknown plot kind(s) {unknown}; choose among {', '.join(PLOT_KINDS)}.")
    return kinds


def render_report(source: StudyLike, *, kinds: Sequence[str] = REPORT_KINDS, top: int = 10,
                  contour_params: Sequence[str] | None = None) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    study, _ = resolve(source)
    kinds = _check_kinds(kinds)
    best = best_trial(source)
    sections = [f"<h1>Search report: {html.escape(study.name)}</h1>", _summary(source)]
    for kind in kinds:
        options = {"params": contour_params} if kind == "contour" else {}
        sections.append(f'<h2>{html.escape(_TITLES.get(kind, kind))}</h2>'
                        + figure_div(plot(source, kind, **options), f"plot-{kind}"))
    try:
        table = importance_table(source)
        sections.append("<h2>Importance table</h2>" + html_table(table.reset_index()))
    except ValueError as err:
        sections.append(f'<h2>Importance table</h2><p class="note">{html.escape(str(err))}</p>')
    best_number = best.number if best is not None else None
    if best is not None:
        frame = top_k(source, top).drop(columns=list(_TABLE_COLUMNS_DROPPED), errors="ignore")
        sections.append(f"<h2>Top {len(frame)} trials</h2>" + html_table(frame, best_number, table_id="top-trials"))
    frame = trials_dataframe(source).drop(columns=list(_TABLE_COLUMNS_DROPPED), errors="ignore")
    sections.append(f"<h2>All {len(frame)} trials</h2>" + html_table(frame, best_number, table_id="trials"))
    sections.append(_failures(source))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections.append(f'<p class="note">Written by frameworm-lightning on {stamp}. Click a column header to sort.</p>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(study.name)}: search report</title><style>{CSS}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script>"
        f"<script type=\"text/javascript\">{SORT_SCRIPT}</script></head>"
        f"<body>{''.join(sections)}"
        "<script>frameworm_sortable(document);</script></body></html>\n"
    )


def save_plots(source: StudyLike, out_dir: str | os.PathLike[str], kinds: Iterable[str] = REPORT_KINDS, *,
               contour_params: Sequence[str] | None = None, format: str = "html") -> dict[str, Path]:
    """Save each plot as ``out_dir/<kind>.<format>``; returns the paths by kind.

    ``format`` is ``html`` (self-contained pages) or, with the ``export`` extra, ``png``,
    ``svg`` or ``pdf`` (see :func:`~frameworm_lightning.analysis.save_figure`).
    """
    out = Path(out_dir)
    paths = {}
    for kind in _check_kinds(kinds):
        options = {"params": contour_params} if kind == "contour" else {}
        paths[kind] = save_figure(plot(source, kind, **options), out / f"{kind}.{format.lstrip('.')}")
    return paths


def write_report(source: StudyLike, out_dir: str | os.PathLike[str], *, kinds: Sequence[str] = REPORT_KINDS,
                 top: int = 10, contour_params: Sequence[str] | None = None) -> Path:
    """Write ``out_dir/report.html`` (self-contained, interactive) and ``out_dir/trials.csv``.

    Works on a live study, a :class:`~frameworm_lightning.SearchResult` or a study read
    back with ``Study.load``. For image files of the plots, see :func:`save_plots`.

    Returns:
        The path of ``report.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trials_dataframe(source).to_csv(out / "trials.csv", index=False)
    page = out / "report.html"
    page.write_text(render_report(source, kinds=kinds, top=top, contour_params=contour_params), encoding="utf-8")
    return page
