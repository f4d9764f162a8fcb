"""The live view on a terminal and its plain lines elsewhere, fed with stored-trial snapshots."""

from __future__ import annotations

import io

from rich.console import Console

from frameworm_lightning import FrozenTrial, TrialState
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
        assert "VAE  4/6" in text
        assert "complete 2  running 1  pruned 1  failed 1" in text
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
