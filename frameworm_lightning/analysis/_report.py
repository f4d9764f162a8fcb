"""A self-contained HTML report of a study: every plot (PNG inlined as base64) and the trial table.

The page loads nothing from anywhere (no scripts, fonts or style sheets), so it can be
mailed, attached to a CI run or opened offline.

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

import base64
import html
import io
import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from frameworm_lightning.analysis._frame import StudyLike, best_trial, resolve, top_k, trials_dataframe
from frameworm_lightning.analysis._importance import importance_table
from frameworm_lightning.analysis._plots import PLOT_KINDS, plot
from frameworm_lightning.trial import TrialState

__all__ = ["REPORT_KINDS", "render_report", "save_plots", "write_report"]

# The order plots appear in the report.
REPORT_KINDS = ("history", "curves", "importance", "parallel", "slice", "contour")

_TITLES = {
    "history": "Optimisation history",
    "curves": "Learning curves",
    "importance": "Parameter importance (fANOVA on a random forest)",
    "parallel": "Parallel coordinates",
    "slice": "Slices",
    "contour": "Contour of the two most important parameters",
}

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; background: #fff; padding: 0 1em; }
h1 { border-bottom: 2px solid #1f77b4; padding-bottom: .3em; }
h2 { margin-top: 1.8em; color: #1f77b4; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eef3f8; }
td.text, th.text { text-align: left; }
tr.best td { background: #fde9e9; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5em 0; }
.summary td:first-child { text-align: left; font-weight: bold; }
pre { background: #f6f6f6; padding: .5em; overflow-x: auto; font-size: 12px; }
.note { color: #666; font-size: 13px; }
"""

_TABLE_COLUMNS_DROPPED = ("error", "trial_dir", "checkpoint_path")


def _figure_png(fig: Figure, dpi: int) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _table(frame: pd.DataFrame, best_number: int | None = None) -> str:
    """An HTML table of ``frame`` with every cell escaped; the best trial's row highlighted."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, record in frame.iterrows():
        cls = ' class="best"' if best_number is not None and record.get("number") == best_number else ""
        cells = "".join(_cell(v) for v in record.tolist())
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, (str, tuple, list)) and pd.isna(value)):
        return "<td></td>"
    if isinstance(value, float):
        return f"<td>{value:.6g}</td>"
    if isinstance(value, pd.Timestamp):
        return f'<td class="text">{value.strftime("%Y-%m-%d %H:%M:%S")}</td>'
    text = str(value)
    if len(text) > 160:
        text = text[:157] + "..."
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    cls = "" if numeric else ' class="text"'
    return f"<td{cls}>{html.escape(text)}</td>"


def _summary(source: StudyLike) -> str:
    study, trials = resolve(source)
    best = best_trial(source)
    counts = {s.value: sum(t.state is s for t in trials) for s in TrialState}
    rows = [
        ("study", study.name),
        ("objective", f"{study.metric} ({study.mode})"),
        ("trials", ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "none"),
    ]
    if best is not None:
        rows += [
            ("best value", f"{best.value:.6g} (trial {best.number})"),
            ("best params", json.dumps(study.space.canonical(best.params), default=str)),
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
        parts.append(f"<details><summary>trial {t.number}: {html.escape(t.reason or 'failed')}</summary>"
                     f"<pre>{html.escape(tail)}</pre></details>")
    return "<h2>Failures</h2>" + "".join(parts)


def render_report(source: StudyLike, *, kinds: Sequence[str] = REPORT_KINDS, top: int = 10,
                  contour_params: Sequence[str] | None = None, dpi: int = 100,
                  figures: dict[str, bytes] | None = None) -> str:
    """The report as one HTML string (see :func:`write_report`).

    ``figures`` may hold PNG bytes already drawn, by kind; the others are drawn here.
    """
    study, trials = resolve(source)
    unknown = [k for k in kinds if k not in PLOT_KINDS]
    if unknown:
        raise ValueError(f"unknown plot kind(s) {unknown}; choose among {', '.join(PLOT_KINDS)}.")
    figures = dict(figures or {})
    best = best_trial(source)
    sections = [f"<h1>Search report: {html.escape(study.name)}</h1>", _summary(source)]
    for kind in kinds:
        if kind not in figures:
            options = {"params": contour_params} if kind == "contour" else {}
            figures[kind] = _figure_png(plot(source, kind, **options), dpi)
        data = base64.b64encode(figures[kind]).decode("ascii")
        sections.append(f"<h2>{html.escape(_TITLES.get(kind, kind))}</h2>"
                        f'<img alt="{html.escape(kind)}" src="data:image/png;base64,{data}">')
    try:
        table = importance_table(source)
        sections.append("<h2>Importance table</h2>" + _table(table.reset_index()))
    except ValueError as err:
        sections.append(f'<h2>Importance table</h2><p class="note">{html.escape(str(err))}</p>')
    best_number = best.number if best is not None else None
    if best is not None:
        frame = top_k(source, top).drop(columns=list(_TABLE_COLUMNS_DROPPED), errors="ignore")
        sections.append(f"<h2>Top {len(frame)} trials</h2>" + _table(frame, best_number))
    frame = trials_dataframe(source).drop(columns=list(_TABLE_COLUMNS_DROPPED), errors="ignore")
    sections.append(f"<h2>All {len(frame)} trials</h2>" + _table(frame, best_number))
    sections.append(_failures(source))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections.append(f'<p class="note">Written by frameworm-lightning on {stamp}.</p>')
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(study.name)}: search report</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def save_plots(source: StudyLike, out_dir: str | os.PathLike[str], kinds: Iterable[str] = REPORT_KINDS, *,
               contour_params: Sequence[str] | None = None, dpi: int = 100) -> dict[str, Path]:
    """Save each plot as ``out_dir/<kind>.png``; returns the paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in kinds:
        options = {"params": contour_params} if kind == "contour" else {}
        paths[kind] = out / f"{kind}.png"
        plot(source, kind, paths[kind], dpi=dpi, **options)
    return paths


def write_report(source: StudyLike, out_dir: str | os.PathLike[str], *, kinds: Sequence[str] = REPORT_KINDS,
                 top: int = 10, contour_params: Sequence[str] | None = None, dpi: int = 100) -> Path:
    """Write ``out_dir/report.html``, each plot as ``out_dir/<kind>.png`` and ``out_dir/trials.csv``.

    ``report.html`` is self-contained: the same PNGs are inlined. Works on a live study,
    a :class:`~frameworm_lightning.SearchResult` or a study read back with ``Study.load``.

    Returns:
        The path of ``report.html``.
    """
    out = Path(out_dir)
    paths = save_plots(source, out, kinds, contour_params=contour_params, dpi=dpi)
    figures = {kind: path.read_bytes() for kind, path in paths.items()}
    trials_dataframe(source).to_csv(out / "trials.csv", index=False)
    page = out / "report.html"
    page.write_text(render_report(source, kinds=kinds, top=top, contour_params=contour_params, dpi=dpi,
                                  figures=figures), encoding="utf-8")
    return page
