"""A live view of a running search (rich), or plain lines when the output is not a terminal.

:class:`SearchProgress` has the call interface of
:class:`~frameworm_lightning.runner.TrialPrinter` (``observe(trial)`` for trials stored
by an earlier run, ``progress(trial)`` for each trial that finishes), so
``SearchRunner.fit(..., printer=progress)`` drives it. Use it as a context manager: the
live area is drawn while the search runs and left on screen, final, when it ends.

On a terminal it shows, counts first so that a narrow terminal keeps them (rich's table
layout shrinks the bar, then wraps, never cuts the counts)::

    VAE · val_loss (min)
    12/20 done  complete 9  running 1  pruned 2  failed 0  ━━━━━━━━━━━━━━━━━━━━╺━━━━━━━
    best val_loss=85.31 (trial 7)  model.lr=0.0012 model.latent_dim=16
    pruned trial 11 at step 40: median rule: 91.2 is worse than the median 88.0
     trial   step   val_loss  params
        12    120      86.02  model.lr=0.003 model.latent_dim=8
    elapsed 1:02  remaining ~0:41

with one line per finished trial printed above it (a pruned trial's line says why). The
running trials and their latest reported value come from the study's storage, read at
most once a second. The live view is drawn on stderr, like other progress displays, so
``> out.txt`` keeps the results; elsewhere (a pipe, a file, CI) each finished trial is
one plain ``TrialPrinter`` line on stdout.

While it runs, each distinct Python warning (Lightning repeats its own for every
trial) is shown once, on stderr.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from frameworm_lightning import _fork_safe as fork_safe
from frameworm_lightning.runner._progress import TrialPrinter, format_params
from frameworm_lightning.storage import Storage, open_storage
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["SearchProgress", "format_duration"]

# The running trials shown at most; more are counted on one line.
_MAX_RUNNING_ROWS = 8
_REFRESH_S = 0.5  # the live view's refresh period


def format_duration(seconds: float | None) -> str:
    """``75.2`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``; ``None`` -> ``'?'``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _RunningTrials:
    """The study's running trials, read from storage at most every ``interval`` seconds."""

    def __init__(self, storage: str | Storage, study_name: str, interval: float = 1.0) -> None:
        self._source = storage
        self._name = study_name
        self._interval = interval
        self._storage: Storage | None = None
        self._study_id: int | None = None
        self._read_at = -math.inf
        self._trials: list[FrozenTrial] = []
        self._lock = threading.Lock()

    def __call__(self) -> list[FrozenTrial]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._interval:
                self._read_at = time.monotonic()
                self._trials = self._read()
            return self._trials

    def _read(self) -> list[FrozenTrial]:
        try:
            if self._storage is None:
                self._storage = open_storage(self._source)
            if self._study_id is None:
                record = self._storage.load_study(self._name)
                if record is None:
                    return []
                self._study_id = record.study_id
            return self._storage.get_trials(self._study_id, (TrialState.RUNNING,))
        except Exception:  # noqa: BLE001 - a display must never stop the search; the next read retries
            return self._trials


class SearchProgress:
    """Counts, best so far, running trials, elapsed time and an estimate of what remains.

    Args:
        name: the study's name, shown first.
        metric / mode: the objective, to keep the best trial.
        total: the study's trial budget (``None`` when unknown).
        n_jobs: trials run at once, for the running count and the estimate.
        console: where to draw the live view (default: stderr). A console that is not a
            terminal gets one plain line per finished trial instead (on stdout, or on
            the given console's file).
        storage / study_name: where to read the running trials' latest reports from;
            without them the running count is an estimate and no trial rows are shown.
    """

    def __init__(
        self,
        name: str,
        metric: str,
        mode: str,
        total: int | None,
        n_jobs: int = 1,
        console: Console | None = None,
        *,
        storage: str | Storage | None = None,
        study_name: str | None = None,
    ) -> None:
        self.name = name
        self.mode = mode
        self.total = total
        self.n_jobs = n_jobs
        self.console = console or Console(stderr=True)
        self.live_view = self.console.is_terminal and not self.console.is_dumb_terminal
        plain: TextIO = self.console.file if console is not None else sys.stdout
        self._lines = TrialPrinter(metric, mode, stream=plain, enabled=not self.live_view)
        self.counts = {state: 0 for state in TrialState}
        self.interrupted = 0  # trials this run stored interrupted (not counted as finished)
        self.stored = 0  # trials of an earlier run, seen through observe()
        self.durations: list[float] = []  # trials finished by this run
        self.started: float | None = None
        self.running = False
        self.last_pruned: FrozenTrial | None = None
        self._done: set[int] = set()  # trials finished in this run, never shown running again
        self.warnings_seen: set[tuple[str, str]] = set()
        self._running_trials = _RunningTrials(storage, study_name or name) if storage is not None else None
        self._live: Live | None = None
        self._stop_refresh = threading.Event()
        self._showwarning: Any = None

    # The TrialPrinter interface ---------------------------------------------------------
    @property
    def best(self) -> FrozenTrial | None:
        return self._lines.best

    @property
    def metric(self) -> str:
        return self._lines.metric

    def observe(self, trial: FrozenTrial) -> None:
        """Count a trial stored before this run (a resumed study)."""
        self._lines.observe(trial)
        if trial.state.is_finished and not trial.interrupted:  # an interrupted trial's params run again
            self.counts[trial.state] += 1
            self.stored += 1

    def __call__(self, trial: FrozenTrial) -> None:
        """A trial finished: count it, print its line, refresh the view."""
        self._lines(trial)
        if trial.interrupted:  # not finished: its params run again first when the search resumes
            self.interrupted += 1
        else:
            self.counts[trial.state] += 1
        self._done.add(trial.number)
        if trial.state is TrialState.PRUNED:
            self.last_pruned = trial
        if trial.duration is not None:
            self.durations.append(trial.duration)
        if self._live is not None:
            self._live.console.print(self._lines.line(trial), markup=False, highlight=False)
            self._live.refresh()

    # Warnings ---------------------------------------------------------------------------
    def _show_warning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: TextIO | None = None, line: str | None = None) -> None:
        """``warnings.showwarning`` while the view runs: each distinct warning once, on stderr."""
        key = (category.__name__, str(message))
        if key in self.warnings_seen:
            return
        self.warnings_seen.add(key)
        text = f"{category.__name__}: {message}"
        if self._live is not None:  # above the live area, which is on stderr
            self._live.console.print(Text(text, style="yellow"), markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    # Life cycle -------------------------------------------------------------------------
    def __enter__(self) -> SearchProgress:
        self.started = time.monotonic()
        self.running = True
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._show_warning
        if self.live_view:
            # Output written while the view is up (a print in the user's model) goes above it.
            # Refreshed by a thread of ours, not rich's: one the search may fork a trial beside
            # (its refresh, which reads storage and writes the terminal, pauses meanwhile).
            self._live = Live(console=self.console, get_renderable=self.render, auto_refresh=False, transient=False)
            self._live.start(refresh=True)
            self._stop_refresh.clear()
            fork_safe.register(threading.Thread(target=self._refresh, daemon=True, name="fw-live-view")).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.running = False
        warnings.showwarning = self._showwarning
        if self._live is not None:
            self._stop_refresh.set()
            with fork_safe.working():  # the refresh in flight ends first
                self._live.refresh()
                self._live.stop()
                self._live = None

    def _refresh(self) -> None:
        while not self._stop_refresh.wait(_REFRESH_S):
            with fork_safe.working():
                if self._live is None:
                    return
                self._live.refresh()

    # State ------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return sum(self.counts[s] for s in TrialState if s.is_finished)

    def running_trials(self) -> list[FrozenTrial]:
        """The running trials as last read from storage (empty without a storage)."""
        if self._running_trials is None or not self.running:
            return []
        return [t for t in self._running_trials() if t.number not in self._done]  # the read may be a second old

    @property
    def in_flight(self) -> int:
        """Trials evaluated now: read from storage, else estimated (every job busy until the budget)."""
        if not self.running:
            return 0
        if self._running_trials is not None:
            return len(self.running_trials())
        if self.total is None:
            return self.n_jobs
        return max(0, min(self.n_jobs, self.total - self.finished))

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.monotonic() - self.started

    def remaining(self) -> float | None:
        """Seconds left: mean trial time of this run times the trials left, over the jobs."""
        if self.total is None or not self.durations:
            return None
        left = max(self.total - self.finished, 0)
        return sum(self.durations) / len(self.durations) * math.ceil(left / self.n_jobs)

    # Rendering --------------------------------------------------------------------------
    def _counts(self) -> Text:
        done = f"{self.finished}/{self.total}" if self.total is not None else str(self.finished)
        return Text.assemble(
            (done, "bold"), (" done  ", "dim"),
            ("complete ", "dim"), (str(self.counts[TrialState.COMPLETE]), "green"),
            ("  running ", "dim"), (str(self.in_flight), "cyan"),
            ("  pruned ", "dim"), (str(self.counts[TrialState.PRUNED]), "yellow"),
            ("  failed ", "dim"), (str(self.counts[TrialState.FAILED]), "red"),
        )

    def _running_table(self, trials: list[FrozenTrial]) -> Table:
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim", expand=False)
        table.add_column("trial", justify="right", no_wrap=True)
        table.add_column("step", justify="right", no_wrap=True)
        table.add_column(self.metric, justify="right", no_wrap=True)
        table.add_column("params", no_wrap=True, overflow="ellipsis", ratio=1)
        for t in trials[:_MAX_RUNNING_ROWS]:
            step = t.last_step
            value = "-" if step is None else f"{t.intermediate_values[step]:.6g}"
            table.add_row(str(t.number), "-" if step is None else str(step), value, format_params(t.params))
        if len(trials) > _MAX_RUNNING_ROWS:
            table.add_row("", "", "", Text(f"and {len(trials) - _MAX_RUNNING_ROWS} more running", style="dim"))
        return table

    def render(self) -> Group:
        """The live area: the study, counts and a bar, the best trial, the last pruning, the
        running trials, the clock."""
        head = Table.grid(padding=(0, 2), expand=True)
        head.add_column(no_wrap=False)  # the counts: wrapped on a narrow terminal, never cut
        head.add_column(ratio=1, min_width=0)  # the bar takes what is left, or nothing
        head.add_row(self._counts(), ProgressBar(total=float(self.total or 1), completed=float(self.finished)))
        title = Text.assemble((self.name, "bold"), (f" · {self.metric} ({self.mode})", "dim"),
                              overflow="ellipsis", no_wrap=True)
        parts: list[Any] = [title, head]
        best = self.best
        if best is None:
            parts.append(Text("best -", style="dim"))
        else:
            parts.append(Text.assemble(
                ("best ", "dim"), (f"{self.metric}={best.value:.6g}", "bold green"),
                (f" (trial {best.number})  ", "dim"), format_params(best.params),
                overflow="ellipsis", no_wrap=True,
            ))
        pruned = self.last_pruned
        if pruned is not None:
            reason = (pruned.reason or "").strip().splitlines()
            parts.append(Text.assemble(
                ("pruned ", "yellow"), f"trial {pruned.number}",
                (f" at step {pruned.last_step}" if pruned.last_step is not None else ""),
                (f": {reason[0]}" if reason else ""), overflow="ellipsis", no_wrap=True,
            ))
        running = self.running_trials()
        if running:
            parts.append(self._running_table(running))
        clock = f"elapsed {format_duration(self.elapsed())}"
        if self.running:
            clock += f"  remaining ~{format_duration(self.remaining())}"
        if self.stored:
            clock += f"  ({self.stored} trials from an earlier run)"
        parts.append(Text(clock, style="dim"))
        return Group(*parts)
