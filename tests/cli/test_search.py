"""A search from YAML end to end, its table, report and best trial fed back into ``fit``,
a worker joining a study, an interrupted search resumed.

Starting Python and Lightning is most of each command's cost, so commands that do not
depend on each other start side by side (:func:`started`, :func:`after_search`) and each
test waits for the one it checks.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from frameworm_lightning import Study, TrialState
from tests.cli.conftest import Run, Started, cli_env, command, run_cli, search_config, start_cli, write_config

# The search every test here reads: 3 Sobol trials; a threshold policy in search.stopping
# prunes the one whose learning rate is too small, and a policy given on the command line
# as a Trainer callback rides along (it never fires: patience 3 of 1 epoch).
STOPPING = [{"class_path": "frameworm_lightning.ThresholdStopping", "init_args": {"threshold": 8.0}}]
CALLBACK = ["--trainer.callbacks+=frameworm_lightning.ImprovementStopping", "--trainer.callbacks.monitor=val_loss"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("search")
    config = search_config(tmp, stopping=STOPPING)
    config["ckpt_path"] = config["weights_only"] = None  # fit's options, as the config.yaml fit saves has them
    write_config(tmp / "search.yaml", config)
    return tmp


@pytest.fixture(scope="module")
def started(folder: Path) -> dict[str, Started]:
    """The search, and the commands that need no finished search, started at once."""
    config = str(folder / "search.yaml")
    empty = folder / "empty"
    empty.mkdir()
    write_config(empty / "search.yaml", search_config(empty))
    return {
        "search": start_cli("search", "-c", config, *CALLBACK, cwd=folder),
        "print_config": start_cli("search", "-c", config, "--print_config", cwd=folder),
        "no study": start_cli("trials", "-c", str(empty / "search.yaml"), cwd=empty),
    }


@pytest.fixture(scope="module")
def searched(started: dict[str, Started]) -> Run:
    return started["search"].wait()


@pytest.fixture(scope="module")
def after_search(folder: Path, searched: Run) -> dict[str, Started]:
    """The commands that read the finished study, started at once."""
    config = str(folder / "search.yaml")
    return {
        "trials": start_cli("trials", "-c", config, cwd=folder),
        "other study": start_cli("trials", "-c", config, "--search.study_name=Tiny", cwd=folder),
        "best": start_cli("best", "-c", config, "--output", str(folder / "best" / "best.yaml"), cwd=folder),
        "plot": start_cli("plot", "-c", config, "--output", str(folder / "report"), cwd=folder),
        # Another study in the same database, run by a pull worker.
        "worker": start_cli("worker", "-c", config, "--search.study_name=pulled", "--search.n_trials=1", "--search.stopping=[]", cwd=folder),
    }


def _study(folder: Path, name: str = "TinyModel") -> Study:
    return Study.load(name, f"sqlite:///{folder / 'study.db'}")


def test_search_from_yaml_stores_every_trial(folder: Path, searched: Run) -> None:
    assert searched.returncode == 0, searched.stderr[-3000:]
    lines = [ln for ln in searched.stdout.splitlines() if ln.startswith("trial ")]
    assert len(lines) == 3 and all("model.lr=" in ln and "model.hidden=" in ln for ln in lines)
    assert "study 'TinyModel': 2 complete, 1 pruned, 0 failed" in searched.stdout
    assert "frameworm-search best -c" in searched.stdout
    study = _study(folder)
    states = [t.state for t in study.trials]
    assert sorted(s.value for s in states) == ["COMPLETE", "COMPLETE", "PRUNED"]
    pruned = next(t for t in study.trials if t.state is TrialState.PRUNED)
    assert "val_loss" in (pruned.reason or "") and pruned.value > 8.0  # search.stopping reached the trial
    # YAML keys map onto the runner's routing; the values come from the space.
    for t in study.trials:
        assert set(t.params) == {"model.lr", "model.hidden"}
        assert 1e-3 <= t.params["model.lr"] <= 0.5 and t.params["model.hidden"] in (2, 4, 8)
        assert (folder / "runs" / "TinyModel" / f"trial_{t.number:04d}").is_dir()
    best = study.best_trial
    assert f"best val_loss={best.value:.6g} (trial {best.number})" in searched.stdout


def test_print_config_includes_the_search_section(started: dict[str, Started]) -> None:
    run = started["print_config"].wait()
    assert run.returncode == 0, run.stderr[-3000:]
    printed = yaml.safe_load(run.stdout)
    assert printed["search"]["space"]["model.init_args.hidden"] == [2, 4, 8]
    assert printed["search"]["sampler"]["class_path"] == "frameworm_lightning.SobolSampler"
    assert printed["search"]["stopping"][0]["init_args"]["threshold"] == 8.0
    assert printed["search"]["n_trials"] == 3


def test_reading_a_study_that_does_not_exist(started: dict[str, Started], folder: Path) -> None:
    run = started["no study"].wait()
    assert run.returncode == 2
    assert len(run.error_lines) == 1 and "no study stored yet" in run.error_lines[0]
    assert "frameworm-search search -c" in run.error_lines[0]
    assert not (folder / "empty" / "study.db").exists()


def test_reading_a_study_name_the_database_does_not_hold_names_the_stored_ones_and_the_fix(
        folder: Path, after_search: dict[str, Started]) -> None:
    # The fix it named was "Set search.storage to a writable sqlite:///... or a postgresql:// URL".
    run = after_search["other study"].wait()
    assert run.returncode == 2
    (line,) = run.error_lines
    assert line.startswith("error: no study named 'Tiny' in ") and "; stored studies: TinyModel" in line
    assert line.endswith(f"Set search.study_name to one of them, or run frameworm-search search -c "
                         f"{folder / 'search.yaml'} first.")


def test_trials_prints_the_stored_study(folder: Path, after_search: dict[str, Started]) -> None:
    run = after_search["trials"].wait()
    assert run.returncode == 0, run.stderr[-3000:]
    best = _study(folder).best_trial
    assert "study 'TinyModel' (val_loss, min)" in run.stdout
    assert run.stdout.count("COMPLETE") == 2 and run.stdout.count("PRUNED") == 1
    assert "model.lr" in run.stdout and "model.hidden" in run.stdout
    assert f"3 trials: 2 complete, 1 pruned; best is trial {best.number}" in run.stdout


def test_best_writes_a_config_fit_trains(folder: Path, after_search: dict[str, Started]) -> None:
    run = after_search["best"].wait()
    assert run.returncode == 0, run.stderr[-3000:]
    best = _study(folder).best_trial
    out = folder / "best" / "best.yaml"
    assert f"wrote {out}" in run.stdout
    written = yaml.safe_load(out.read_text())
    assert "search" not in written
    assert written["model"]["class_path"] == "tiny.TinyModel"
    assert written["model"]["init_args"]["lr"] == best.params["model.lr"]
    assert written["model"]["init_args"]["hidden"] == best.params["model.hidden"]
    assert written["seed_everything"] == best.number  # search.seed 0 + trial number
    # What the trial trained: the search ran with a callback given on its command line, this best without.
    callbacks = written["trainer"].pop("callbacks")
    assert [c["class_path"] for c in callbacks] == ["frameworm_lightning.ImprovementStopping"]
    assert written["trainer"] == {"max_epochs": 1, "accelerator": "cpu", "log_every_n_steps": 1}
    assert f"differs from what trial {best.number} trained (trainer.callbacks: None now" in run.stderr

    logger = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder / "fit")}}
    fit = run_cli("fit", "-c", str(out), "--trainer.logger", json.dumps(logger),
                  "--trainer.enable_progress_bar", "false", cwd=folder)
    assert fit.returncode == 0, fit.stderr[-3000:]
    metrics = next((folder / "fit").rglob("metrics.csv"))
    val = [float(r["val_loss"]) for r in csv.DictReader(metrics.open()) if r.get("val_loss")]
    # Same config, same seed: fit reproduces the trial's score.
    assert math.isclose(val[-1], best.value, rel_tol=1e-4)


def test_plot_writes_the_report(folder: Path, after_search: dict[str, Started]) -> None:
    run = after_search["plot"].wait()
    assert run.returncode == 0, run.stderr[-3000:]
    report = folder / "report"
    assert f"wrote {report / 'report.html'}" in run.stdout
    assert (report / "report.html").stat().st_size > 0
    assert '<div id="plot-history"' in (report / "report.html").read_text(encoding="utf-8")
    assert len((report / "trials.csv").read_text().splitlines()) == 1 + 3


def test_a_worker_joins_a_study(folder: Path, after_search: dict[str, Started]) -> None:
    run = after_search["worker"].wait()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "study 'pulled': 1 complete" in run.stdout
    assert [t.state for t in _study(folder, "pulled").trials] == [TrialState.COMPLETE]


def _signal_mid_trial(path: Path, sig: signal.Signals) -> tuple[int, str]:
    """Run the search of ``path``, send ``sig`` into its second trial; its exit code and stderr."""
    proc = subprocess.Popen([*command(), "search", "-c", str(path)], cwd=path.parent, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("trial "):
            time.sleep(0.3)  # into the next trial
            proc.send_signal(sig)
            break
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_an_interrupted_search_resumes(tmp_path: Path) -> None:
    config = search_config(tmp_path, n_trials=3)
    config["model"]["init_args"]["sleep"] = 0.25  # ~1 s a trial, time to interrupt one
    path = write_config(tmp_path / "search.yaml", config)
    returncode, err = _signal_mid_trial(path, signal.SIGINT)
    assert returncode == 130, err[-3000:]
    assert "interrupted:" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    study = Study.load("TinyModel", f"sqlite:///{tmp_path / 'study.db'}")
    done_before = [t.number for t in study.trials if t.state is TrialState.COMPLETE]
    assert 1 <= len(done_before) < 3
    cut = [t for t in study.trials if t.interrupted]
    # The trial cut short is not counted among the finished ones: it runs again first on resume.
    assert f"interrupted: {len(done_before)} finished trial(s)" in err
    assert f"{len(cut)} interrupted (they run first when the search resumes)" in err

    resumed = run_cli("search", "-c", str(path), "--model.init_args.sleep", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed with" in resumed.stdout
    trials = study.trials
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert len(complete) == 3
    assert set(done_before) <= {t.number for t in complete}  # kept, not run again
    for t in trials:  # the trial cut short is stored as interrupted and its params ran again
        if t.interrupted:
            assert any(c.params == t.params for c in complete)


def test_sigterm_stops_the_search_and_its_resume_runs_the_interrupted_trial_first(tmp_path: Path) -> None:
    # A SLURM or Kubernetes preemption: exit 143, the running trial stored interrupted.
    config = search_config(tmp_path, n_trials=3, sampler={"class_path": "frameworm_lightning.GridSampler"},
                           space={"model.init_args.lr": [1.0e-3, 1.0e-2, 5.0e-2]})
    config["model"]["init_args"]["sleep"] = 0.25  # ~1 s a trial, time to stop one
    path = write_config(tmp_path / "search.yaml", config)
    returncode, err = _signal_mid_trial(path, signal.SIGTERM)
    assert returncode == 143, err[-3000:]
    assert "search stopped by SIGTERM" in err and "Traceback" not in err
    assert "seed" not in err.lower()  # the search's own process is never seeded: no "Seed set to 0" lines
    study = Study.load("TinyModel", f"sqlite:///{tmp_path / 'study.db'}")
    (cut,) = [t for t in study.trials if t.interrupted]

    resumed = run_cli("search", "-c", str(path), "--model.init_args.sleep", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = [t for t in study.trials if t.number > cut.number]
    assert after[0].params == cut.params and after[0].state is TrialState.COMPLETE  # run first
    assert sorted(t.params["model.lr"] for t in study.trials if t.state is TrialState.COMPLETE) == [1.0e-3, 1.0e-2, 5.0e-2]
