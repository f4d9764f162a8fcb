"""``frameworm-search trials``: the table of stored trials."""

from __future__ import annotations

from rich.console import Console

from frameworm_lightning import Real, Study
from frameworm_lightning.cli._table import trials_table
from frameworm_lightning.trial import count_states


def test_an_interrupted_trial_is_counted_and_shown_apart_from_the_failed_ones() -> None:
    # It was "FAILED" and counted in "n failed", though its params run again on resume.
    study = Study.create("t", {"x": Real(0, 1)}, metric="loss")
    study.ask().complete(0.5)
    study.ask().interrupt("the search was stopped by SIGTERM")
    study.ask().fail("ValueError: bad", reason="ValueError: bad")
    assert {k: n for k, n in count_states(study.trials).items() if n} == {"COMPLETE": 1, "FAILED": 1, "INTERRUPTED": 1}
    console = Console(record=True, width=200)
    console.print(trials_table(study))
    text = console.export_text()
    assert "3 trials: 1 complete, 1 failed, 1 interrupted; best is trial 0" in " ".join(text.split())
    states = {cells[0]: cells[1] for line in text.splitlines()
              if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) > 2 and cells[0].isdigit()}
    assert states == {"0": "COMPLETE", "1": "INTERRUPTED", "2": "FAILED"}


def test_a_trial_a_policy_finished_early_says_why_in_its_note() -> None:
    # A complete trial's reason was never shown, so a trial ImprovementStopping ended early read as a full run.
    study = Study.create("t", {"x": Real(0, 1)}, metric="loss")
    early = study.ask()
    early.request_finish("no improvement of loss over 0.5 in 3 checks (patience 3, step 40)")
    early.complete(0.5)
    study.ask().complete(0.7)
    console = Console(record=True, width=200)
    console.print(trials_table(study))
    notes = {cells[0]: cells[-1] for line in console.export_text().splitlines()
             if len(cells := [c.strip() for c in line.split("│")[1:-1]]) > 2 and cells[0].isdigit()}
    assert notes == {"0": "no improvement of loss over 0.5 in 3 checks (patience 3, step 40)", "1": ""}


def test_a_paused_and_promoted_trial_is_counted_and_shown_apart_from_the_pruned_ones() -> None:
    # A halving policy's paused trial, promoted as trial 1, was counted "pruned" though its configuration went on.
    from tests.analysis._studies import paused_and_promoted

    console = Console(record=True, width=200)
    console.print(trials_table(paused_and_promoted()))
    text = console.export_text()
    assert "3 trials: 1 complete, 1 pruned, 1 promoted; best is trial 1" in " ".join(text.split())
    states = {cells[0]: (cells[1], cells[-1]) for line in text.splitlines()
              if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) > 2 and cells[0].isdigit()}
    assert states["0"] == ("PROMOTED", "paused: val_loss=0.4 at 1 epoch ranks 1 of 1; promoted as trial 1")
    assert states["2"] == ("PRUNED", "median rule")
