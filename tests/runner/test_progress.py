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



def test_a_trial_a_policy_finished_early_is_shown_complete_with_why() -> None:
    study = Study.create("finished", {"lr": [0.1]}, metric="loss", sampler=GridSampler())
    trial = study.ask(budget=1)
    trial.request_finish("trial budget: step 12 >= max_steps=12")
    trial.complete(0.25)
    out = io.StringIO()
    TrialPrinter("loss", "min", stream=out)(trial.snapshot())
    assert re.fullmatch(r"trial +0 COMPLETE loss=0\.25 +best=0\.25 \(trial 0\) +lr=0\.1 \[\d+\.\ds\]  "
                        r"\(trial budget: step 12 >= max_steps=12\)\n", out.getvalue()), out.getvalue()

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
study = Study.create({name!r}, {space!r}, metric={metric!r}, sampler=GridSampler(), storage={url!r})
trial = study.ask(budget=2)
trial.report(1, 5.0)
os._exit(0)  # as SIGKILL would: the trial stays RUNNING
"""


def claim_and_die(url: str, name: str, space: dict, metric: str) -> None:
    """A search process that claimed trial 0 of study ``name`` and died, leaving it RUNNING."""
    script = CLAIM_AND_DIE.format(root=str(TESTS.parent), url=url, name=name, space=space, metric=metric)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_a_pull_worker_prints_the_trial_whose_worker_died_as_interrupted(tmp_path) -> None:
    # The worker that re-ran a dead worker's trial printed nothing about it.
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    claim_and_die(url, "lost", {"x": [1, 2]}, "loss")
    study = Study.create("lost", {"x": [1, 2]}, metric="loss", sampler=GridSampler(), storage=url)
    out = io.StringIO()
    ran = run_search(study, lambda trial: trial.complete(float(trial.params["x"])), executor="inline", budget=2,
                     what="a function", linger=True, printer=TrialPrinter("loss", "min", stream=out))
    lines = out.getvalue().splitlines()
    assert ran == 2 and [t.state for t in study.trials] == [TrialState.FAILED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert re.match(r"trial +0 INTERRUPTED loss=- +best=2 \(trial 1\) +x=1 .*\(.*its process is gone.*; "
                    r"runs first on resume as trial 2\)$", lines[1]), lines
    assert [line.split()[1:3] for line in lines] == [["1", "COMPLETE"], ["0", "INTERRUPTED"], ["2", "COMPLETE"]]


def test_a_resumed_search_prints_the_trials_it_recovered_once(tmp_path, capsys) -> None:
    # A search killed with its trial running, then run again: the trial was stored interrupted and its
    # params ran again, but nothing said so (a pull worker printed such a trial; a resume did not).
    from frameworm_lightning import SearchRunner

    from ._modules import LineData, Regression

    url = f"sqlite:///{tmp_path / 'frameworm.db'}"
    claim_and_die(url, "Regression", {"lr": [0.1, 0.2]}, "val_loss")
    SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, storage=url, root_dir=tmp_path,
                 trainer_kwargs=FAST).fit(Regression, {"lr": [0.1, 0.2]}, LineData)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert re.match(r"trial +0 INTERRUPTED val_loss=- +best=- +lr=0\.1 .*\(its process is gone .*; "
                    r"runs first on resume as trial 1\)$", lines[0]), lines
    assert [line.split()[1:3] for line in lines] == [["0", "INTERRUPTED"], ["1", "COMPLETE"], ["2", "COMPLETE"]]


def x_as_loss(config: dict) -> float:
    return float(config["x"])


def test_a_resumed_function_search_prints_the_trials_it_recovered_once(tmp_path, capsys) -> None:
    from frameworm_lightning.search import GridSearch

    url = f"sqlite:///{tmp_path / 'lost.db'}"
    claim_and_die(url, "lost", {"x": [1, 2]}, "loss")
    GridSearch({"x": 0}, {"x": [1, 2]}, metric="loss", storage=url, study_name="lost").run(x_as_loss)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert [line.split()[1:3] for line in lines] == [["0", "INTERRUPTED"], ["1", "COMPLETE"], ["2", "COMPLETE"]]
    assert "its process is gone" in lines[0] and lines[0].endswith("runs first on resume as trial 1)")
