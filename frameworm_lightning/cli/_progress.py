"""A live view of a running search (rich), or plain lines when the output is not a terminal.

:class:`SearchProgress` has the call interface of
:class:`~frameworm_lightning.runner.TrialPrinter` (``observe(trial)`` for trials stored
by an earlier run, ``progress(trial)`` for each trial that finishes), so
``SearchRunner.fit(..., printer=progress)`` drives it. Use it as a context manager: the
live area is drawn while the search runs and left on screen, final, when it ends.

On a terminal it shows::

    VAE  12/20  ━━━━━━━━━━━━━━━━━━━━╺━━━━━━━━━━━━━  complete 9  running 1  pruned 2  failed 0
    best val_loss=85.31 (trial 7)  model.lr=0.0012 model.latent_dim=16
    elapsed 1:02  remaining ~0:41

with one line per finished trial printed above it. Elsewhere (a pipe, a file, CI) each
finished trial is one plain ``TrialPrinter`` line.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from frameworm_lightning.runner._progress import TrialPrinter, format_params
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["SearchProgress", "format_duration"]


def format_duration(seconds: float | None) -> str:
    """``75.2`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``; ``None`` -> ``'?'``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SearchProgress:
    """Counts, best so far, elapsed time and an estimate of what remains, kept live.

    Args:
        name: the study's name, shown first.
        metric / mode: the objective, to keep the best trial.
        total: the study's trial budget (``None`` when unknown).
        n_jobs: trials run at once, for the running count and the estimate.
        console: where to draw (default: stdout). A console that is not a terminal
            gets one plain line per finished trial instead of the live view.
    """

    def __init__(
        self,
        name: str,
        metric: str,
        mode: str,
        total: int | None,
        n_jobs: int = 1,
        console: Console | None = None,
    ) -> None:
        self.name = name
        self.total = total
        self.n_jobs = n_jobs
        self.console = console or Console()
        self.live_view = self.console.is_terminal and not self.console.is_dumb_terminal
        self._lines = TrialPrinter(metric, mode, stream=self.console.file, enabled=not self.live_view)
        self.counts = {state: 0 for state in TrialState}
        self.stored = 0  # trials of an earlier run, seen through observe()
        self.durations: list[float] = []  # trials finished by this run
        self.started: float | None = None
        self.running = False
        self._live: Live | None = None

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
        if trial.state.is_finished:
            self.counts[trial.state] += 1
            self.stored += 1

    def __call__(self, trial: FrozenTrial) -> None:
        """A trial finished: count it, print its line, refresh the view."""
        self._lines(trial)
        self.counts[trial.state] += 1
        if trial.duration is not None:
            self.durations.append(trial.duration)
        if self._live is not None:
            self._live.console.print(self._lines.line(trial), markup=False, highlight=False)
            self._live.refresh()

    # Life cycle -------------------------------------------------------------------------
    def __enter__(self) -> SearchProgress:
        self.started = time.monotonic()
        self.running = True
        if self.live_view:
            self._live = Live(console=self.console, get_renderable=self.render, refresh_per_second=2, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.running = False
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # State ------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return sum(self.counts[s] for s in TrialState if s.is_finished)

    @property
    def in_flight(self) -> int:
        """Trials this run is evaluating now (an estimate: every job is busy until the budget)."""
        if not self.running:
            return 0
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
    def render(self) -> Group:
        """The live area: counts and a bar, the best trial, the clock."""
        head = Table.grid(padding=(0, 2))
        head.add_column(no_wrap=True)
        head.add_column(no_wrap=True)
        head.add_column(no_wrap=True)
        done = f"{self.finished}/{self.total}" if self.total is not None else str(self.finished)
        bar = ProgressBar(total=float(self.total or 1), completed=float(self.finished), width=30)
        counts = Text.assemble(
            ("complete ", "dim"), (str(self.counts[TrialState.COMPLETE]), "green"),
            ("  running ", "dim"), (str(self.in_flight), "cyan"),
            ("  pruned ", "dim"), (str(self.counts[TrialState.PRUNED]), "yellow"),
            ("  failed ", "dim"), (str(self.counts[TrialState.FAILED]), "red"),
        )
        head.add_row(Text(f"{self.name}  {done}", style="bold"), bar, counts)
        best = self.best
        if best is None:
            best_line = Text("best -", style="dim")
        else:
            best_line = Text.assemble(
                ("best ", "dim"), (f"{self.metric}={best.value:.6g}", "bold green"),
                (f" (trial {best.number})  ", "dim"), format_params(best.params),
            )
        clock = f"elapsed {format_duration(self.elapsed())}"
        if self.running:
            clock += f"  remaining ~{format_duration(self.remaining())}"
        if self.stored:
            clock += f"  ({self.stored} trials from an earlier run)"
        return Group(head, best_line, Text(clock, style="dim"))
