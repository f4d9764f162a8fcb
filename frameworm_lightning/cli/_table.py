"""The table ``frameworm-search trials`` prints: one row per stored trial, the best marked."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from frameworm_lightning.cli._progress import format_duration
from frameworm_lightning.study import Study
from frameworm_lightning.trial import INTERRUPTED, PROMOTED, TrialState, count_states

__all__ = ["trials_table"]

_STATE_STYLE = {
    TrialState.COMPLETE: "green",
    TrialState.PRUNED: "yellow",
    TrialState.FAILED: "red",
    TrialState.RUNNING: "cyan",
    TrialState.WAITING: "dim",
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_table(study: Study) -> Table:
    """Number, state, value, each param, duration and why a trial ended (early); best in bold."""
    trials = study.trials
    best = study.best_trial
    counts = count_states(trials)  # an interrupted trial is stored FAILED, but its params run again
    caption = ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
    table = Table(
        title=f"study {study.name!r} ({study.metric}, {study.mode})",
        caption=f"{len(trials)} trials: {caption or 'none yet'}" + (f"; best is trial {best.number}" if best else ""),
    )
    table.add_column("#", justify="right")
    table.add_column("state")
    table.add_column(study.metric, justify="right")
    for key in study.space:
        table.add_column(key, justify="right")
    table.add_column("time", justify="right")
    table.add_column("note", overflow="fold")
    for t in trials:
        reason = (t.reason or "").strip().splitlines()
        note = reason[-1][:120] if reason else ""  # a complete trial's: why a policy ended it early
        state = f"[{_STATE_STYLE[t.state]}]{t.state.value}[/]"
        if t.interrupted:
            state = f"[magenta]{INTERRUPTED}[/]"
        elif t.promoted:  # stored PRUNED, but its configuration went on
            state, note = f"[cyan]{PROMOTED}[/]", f"{note}; promoted as trial {t.system_attrs['promoted_to']}"
        table.add_row(
            str(t.number),
            state,
            _cell(t.value),
            *(_cell(t.params.get(k)) for k in study.space),
            format_duration(t.duration) if t.duration is not None else "-",
            note,
            style="bold" if best is not None and t.number == best.number else None,
        )
    return table
