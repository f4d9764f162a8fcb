"""The live view on a terminal and its plain lines elsewhere, fed with stored-trial snapshots."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from frameworm_lightning import FrozenTrial, Real, Study, TrialState
from frameworm_lightning.cli._progress import SearchProgress, format_duration


def _trial(number: int, state: TrialState, value: float | None, duration: float = 2.0) -> FrozenTrial:
    return FrozenTrial(number=number, state=state, params={"model.lr": 0.01 * (number + 1)}, value=value,
                       started_at=100.0, completed_at=100.0 + duration, reason=None if state is TrialState.COMPLETE else "why")


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=160, color_system=None), out


def test_live_view_counts_best_and_estimate() -> None:
    console, out = _console(terminal=True)
    progress = SearchProgress("VAE", "val_loss", "min", total=6, n_jobs=1, console=console)
    progress.observe(_trial(0, TrialState.COMPLETE, 3.0))  # from an earlier run
    with progress:
        progress(_trial(1, TrialState.COMPLETE, 1.5, duration=4.0))
        progress(_trial(2, TrialState.PRUNED, 9.0, duration=2.0))
        progress(_trial(3, TrialState.FAILED, None, duration=6.0))
        shown = Console(file=io.StringIO(), width=160, color_system=None)
        shown.print(progress.render())
        text = shown.file.getvalue()  # type: ignore[attr-defined]
        assert text.startswith("VAE · val_loss (min)")
        assert "4/6 done  complete 2  running 1  pruned 1  failed 1" in text
        assert "pruned trial 2: why" in text
        assert "best val_loss=1.5 (trial 1)  model.lr=0.02" in text
        assert "remaining ~0:08" in text  # mean 4 s of this run's trials x 2 left
        assert "(1 trials from an earlier run)" in text
    assert progress.in_flight == 0
    printed = out.getvalue()
    assert "trial   1 COMPLETE" in printed and "trial   3 FAILED" in printed  # history above the live area


def test_plain_lines_when_not_a_terminal() -> None:
    console, out = _console(terminal=False)
    progress = SearchProgress("VAE", "val_loss", "min", total=2, console=console)
    with progress:
        progress(_trial(0, TrialState.COMPLETE, 2.0))
        progress(_trial(1, TrialState.COMPLETE, 1.0))
    lines = out.getvalue().splitlines()
    assert lines == [
        "trial   0 COMPLETE val_loss=2  best=2 (trial 0)  model.lr=0.01 [2.0s]",
        "trial   1 COMPLETE val_loss=1  best=1 (trial 1)  model.lr=0.02 [2.0s]",
    ]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, 0, 75.2, 3725)] == ["?", "0:00", "1:15", "1:02:05"]


def _render(progress: SearchProgress, width: int) -> str:
    shown = Console(file=io.StringIO(), width=width, color_system=None)
    shown.print(progress.render())
    return shown.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [40, 80, 200])
def test_counts_come_first_and_survive_a_narrow_terminal(width: int) -> None:
    console, _ = _console(terminal=True)
    progress = SearchProgress("DCGAN-on-a-long-dataset-name", "val_loss", "min", total=120, n_jobs=4, console=console)
    for n in range(37):
        progress.observe(_trial(n, TrialState.PRUNED if n % 3 else TrialState.COMPLETE, float(n)))
    text = _render(progress, width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines)
    assert "…" not in lines[1]  # the counts are never cut
    counts = " ".join(lines[1:3]) if width < 60 else lines[1]
    for part in ("37/120 done", "complete 13", "pruned 24", "failed 0"):
        assert part in counts, (part, text)
    if width >= 80:
        assert "━" in lines[1]  # and a bar beside them when there is room


def test_running_trials_show_their_step_and_latest_value_from_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = Study.create("live", {"lr": Real(1e-4, 1e-1, log=True)}, metric="val_loss", storage=url)
    done = study.ask()
    done.complete(0.5)
    a, b = study.ask(), study.ask()
    for step, value in ((10, 0.9), (20, 0.7)):
        a.report(step, value)
    b.report(5, 1.25)
    console, _ = _console(terminal=True)
    progress = SearchProgress("live", "val_loss", "min", total=5, n_jobs=2, console=console, storage=url)
    with progress:
        text = _render(progress, 80)
        rows = {line.split()[0]: line.split()[:3] for line in text.splitlines() if line.strip()[:1].isdigit()}
        assert rows[str(a.number)] == [str(a.number), "20", "0.7"]
        assert rows[str(b.number)] == [str(b.number), "5", "1.25"]
        assert "running 2" in text
        a.complete(0.7)
        progress(a.snapshot())  # a finished trial leaves the rows at once, before the next read
        assert [t.number for t in progress.running_trials()] == [b.number] and progress.in_flight == 1
    b.prune("median rule: 1.25 is worse than the median 0.9 at step 5")


def test_each_distinct_warning_is_shown_once_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    console, out = _console(terminal=False)
    before = warnings.showwarning
    with SearchProgress("VAE", "val_loss", "min", total=3, console=console):
        for _ in range(3):  # as each trial's Trainer does, under its own catch_warnings
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                warnings.warn("The dataloader does not have many workers", UserWarning, stacklevel=1)
                warnings.warn("the number of training batches is small", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.count("does not have many workers") == 1 and err.count("number of training batches") == 1
    assert "warn" not in out.getvalue()
    assert warnings.showwarning is before  # restored when the view ends


LIVE_VIEW_FORK = """
import io, json, sys, threading, time
from rich.console import Console
from frameworm_lightning import Real, Study
from frameworm_lightning import _fork_safe as fork_safe
from frameworm_lightning.cli._progress import SearchProgress
from frameworm_lightning.runner._processes import can_fork_trial_here
url = sys.argv[1]
study = Study.create("live", {"lr": Real(1e-4, 1e-1, log=True)}, metric="val_loss", storage=url)
running = study.ask()
out = io.StringIO()
console = Console(file=out, force_terminal=True, width=160, color_system=None)
progress = SearchProgress("live", "val_loss", "min", total=3, n_jobs=2, console=console, storage=url)
with progress:
    threads = sorted(t.name for t in threading.enumerate())
    with fork_safe.paused():
        can_fork = can_fork_trial_here(1)
    deadline = time.monotonic() + 30
    while out.getvalue().count("running 1") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
running.complete(1.0)
print(json.dumps({"threads": threads, "can_fork": can_fork, "refreshes": out.getvalue().count("running 1")}))
"""


def test_the_live_view_refreshes_itself_yet_lets_a_first_trial_fork_from_the_search(tmp_path: Path) -> None:
    """Its refresh thread pauses while the search forks a trial, as the heartbeats do.

    rich's own refresh thread could hold storage's or the console's locks at the fork, so
    it made every cold start of ``frameworm-search`` in a terminal wait seconds for the
    forkserver (``can_fork_trial_here`` refused it). In a fresh interpreter: the threads
    earlier tests leave in this one would decide the answer.
    """
    script = tmp_path / "view.py"
    script.write_text(LIVE_VIEW_FORK)
    proc = subprocess.run([sys.executable, str(script), f"sqlite:///{tmp_path / 'db.sqlite'}"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["threads"] == ["MainThread", "fw-heartbeat-0", "fw-live-view"]
    assert seen["can_fork"] is True
    assert seen["refreshes"] >= 3  # redrawn on its own, twice a second
