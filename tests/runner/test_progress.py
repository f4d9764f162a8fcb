"""What a search prints: one line per finished trial, and one line when a signal stops it."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from frameworm_lightning import GridSampler, Study, TrialState
from frameworm_lightning.runner._loop import run_search
from frameworm_lightning.runner._progress import TrialPrinter


TESTS = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": 3, "limit_train_batches": 2, "limit_val_batches": 1, "enable_progress_bar": False,
        "enable_model_summary": False, "logger": False}


def test_an_interrupted_trial_is_shown_interrupted_with_where_its_params_run_again() -> None:
    study = Study.create("shown", {"lr": [0.1, 0.2]}, metric="loss", sampler=GridSampler())
    trial = study.ask(budget=2)
    trial.interrupt("the search was stopped by SIGINT")
    out = io.StringIO()
    TrialPrinter("loss", "min", stream=out)(trial.snapshot())
    line = out.getvalue()
    assert re.fullmatch(r"trial +0 INTERRUPTED loss=- +best=- +lr=0\.1 \[\d+\.\ds\]  "
                        r"\(the search was stopped by SIGINT; runs first on resume as trial 1\)\n", line), line
    assert "FAILED" not in line


SCRIPT = """
import os, sys
sys.path[:0] = [{tests!r}, {root!r}]
from frameworm_lightning import GridSampler, SearchRunner
from runner._modules import LineData
from runner._signalling import SignalsTheSearch

if __name__ == "__main__":
    runner = SearchRunner(metric="val_loss", mode="min", sampler=GridSampler(), n_trials=None, root_dir={folder!r},
                          executor={executor!r}, trainer_kwargs={fast!r}, study_name="stopped")
    runner.fit(SignalsTheSearch, {{"lr": [0.1, 0.2]}}, LineData,
               model_kwargs={{"signum": {signum}, "pid": os.getpid()}})
"""


@pytest.mark.parametrize("executor", ["inline", "process"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_prints_the_interrupted_trial_and_one_closing_line_the_same_way_in_every_mode(
        tmp_path, executor, signum) -> None:
    # Inline, the interrupted trial printed nothing; in worker processes it printed FAILED. Only
    # SIGTERM said how to resume. (A real search process: the signal, exit status and output are its own.)
    script = tmp_path / "search.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent), folder=str(tmp_path), executor=executor,
                                    fast=FAST, signum=int(signum)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == (-signal.SIGINT if signum == signal.SIGINT else 143), proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    assert len(lines) == 1 and re.match(r"trial +0 INTERRUPTED val_loss=- +best=- +lr=0\.1 \[\d+\.\ds\]  \(the search "
                                        rf"was stopped by {signum.name}; runs first on resume as trial 1\)$", lines[0]), proc.stdout
    closing = [line for line in proc.stderr.splitlines() if "stopped by" in line]
    assert closing == [f"search stopped by {signum.name}: running trials were stored interrupted and run first "
                       "when the search is resumed (run it again)."], proc.stderr[-3000:]
    trials = Study.load("stopped", f"sqlite:///{tmp_path / 'frameworm.db'}").trials
    assert trials[0].interrupted and trials[1].state is TrialState.WAITING


CLAIM_AND_DIE = """
import os, sys
sys.path.insert(0, {root!r})
from frameworm_lightning import GridSampler, Study
study = Study.create("lost", {{"x": [1, 2]}}, metric="loss", sampler=GridSampler(), storage={url!r})
trial = study.ask(budget=2)
trial.report(1, 5.0)
os._exit(0)  # as SIGKILL would: the trial stays RUNNING
"""


def test_a_pull_worker_prints_the_trial_whose_worker_died_as_interrupted(tmp_path) -> None:
    # The worker that re-ran a dead worker's trial printed nothing about it.
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    subprocess.run([sys.executable, "-c", CLAIM_AND_DIE.format(root=str(TESTS.parent), url=url)], check=True, timeout=120)
    study = Study.create("lost", {"x": [1, 2]}, metric="loss", sampler=GridSampler(), storage=url)
    out = io.StringIO()
    ran = run_search(study, lambda trial: trial.complete(float(trial.params["x"])), executor="inline", budget=2,
                     what="a function", linger=True, printer=TrialPrinter("loss", "min", stream=out))
    lines = out.getvalue().splitlines()
    assert ran == 2 and [t.state for t in study.trials] == [TrialState.FAILED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert re.match(r"trial +0 INTERRUPTED loss=- +best=2 \(trial 1\) +x=1 .*\(.*its process is gone.*; "
                    r"runs first on resume as trial 2\)$", lines[1]), lines
    assert [line.split()[1:3] for line in lines] == [["1", "COMPLETE"], ["0", "INTERRUPTED"], ["2", "COMPLETE"]]
