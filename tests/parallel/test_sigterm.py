"""SIGTERM (preemption by SLURM or Kubernetes) in every execution path, in a real subprocess.

Each case starts a search whose trials stall, waits until the trials write their marker
files (never a fixed sleep), sends SIGTERM to the search process and checks: exit status
143, the running trials stored interrupted with their params re-enqueued, no other
trial started, no process left behind; then a second run starts with the interrupted
params and finishes the grid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from frameworm_lightning import Study
from frameworm_lightning.trial import TrialState

from parallel._models import alive, descendants, wait_for

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
GRID = [0.1, 0.2, 0.3]

HEADER = """
import os, sys
sys.path.insert(0, {tests!r})
FAST = bool(os.environ.get("FW_FAST"))
"""

RUNNER = HEADER + """
from frameworm_lightning import GridSampler, SearchRunner
from parallel._models import StallingModule, trainer_kwargs

if __name__ == "__main__":
    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, quiet=True, storage={storage!r},
                          study_name="preempted", root_dir={root!r}, n_jobs={n_jobs}, executor={executor!r},
                          trainer_kwargs=trainer_kwargs(max_steps=2 if FAST else 10_000, **{trainer!r}))
    getattr(runner, {how!r})(StallingModule, {{"offset": {grid!r}}}, model_kwargs={{"sleep": 0 if FAST else 0.2}})
"""

FUNCTION = HEADER + """
from frameworm_lightning.search import GridSearch
from parallel._models import stalling

if __name__ == "__main__":
    search = GridSearch(base_config={{"x": 0.0, "sleep": 0 if FAST else 600}}, search_space={{"x": {grid!r}}},
                        metric="loss", storage={storage!r}, study_name="preempted", verbose=False)
    search.run(stalling, n_jobs={n_jobs})
"""


@dataclass
class Path_:
    id: str
    script: str = RUNNER
    n_jobs: int = 1
    executor: str = "auto"
    how: str = "fit"
    trainer: dict | None = None
    running: int = 1  # trials running when SIGTERM comes
    markers: int = 1  # marker files to wait for (a DDP trial has two ranks)
    resume: bool = True


PATHS = [
    Path_("inline"),
    Path_("worker processes", n_jobs=2, executor="process", running=2, markers=2),
    Path_("pull worker", how="worker", resume=False),  # resumes through the inline loop, tested above
    Path_("DDP trial", trainer={"strategy": "ddp", "devices": 2}, markers=2, resume=False),
    Path_("function API", script=FUNCTION),
]


def _key(trial) -> tuple:  # noqa: ANN001
    return tuple(sorted(trial.params.items()))


def _snapshot(storage: str) -> list:
    try:
        return Study.load("preempted", storage).trials
    except Exception:  # noqa: BLE001 - not created yet
        return []


def _start(cmd: list[str], markers: Path, fast: bool = False, cwd: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "FW_MARKER_DIR": str(markers), "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if fast:
        env["FW_FAST"] = "1"
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _output(proc: subprocess.Popen[str], timeout: float) -> str:
    """Its output once it ends (killed if it has not after ``timeout`` seconds)."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return f"still running after {timeout}s: " + proc.communicate()[0]


def _preempt(proc: subprocess.Popen[str], markers: Path, n_markers: int) -> tuple[int, set[int], float]:
    """Wait for ``n_markers`` trial processes to train, SIGTERM the search; its exit status and its processes."""
    started = wait_for(lambda: len(list(markers.iterdir())) >= n_markers or proc.poll() is not None, timeout=240)
    assert started and proc.poll() is None, _output(proc, 60)[-3000:]
    family = descendants(proc.pid)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out = _output(proc, 120)
    assert proc.returncode == 143, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "stopped by SIGTERM" in out and "run it again" in out, out[-3000:]
    assert wait_for(lambda: not any(alive(p) for p in family), timeout=30), "processes left behind"
    return proc.returncode, family, sent


def _check_interrupted(storage: str, running: int, sent: float) -> list:
    trials = _snapshot(storage)
    interrupted = [t for t in trials if t.interrupted]
    assert len(interrupted) == running, [(t.number, t.state, t.reason) for t in trials]
    assert all("SIGTERM" in (t.error or "") for t in interrupted), [t.error for t in interrupted]
    # Nothing else ran or runs: the other trials are the interrupted ones' params, waiting.
    waiting = [t for t in trials if t.state is TrialState.WAITING]
    assert sorted(map(_key, waiting)) == sorted(map(_key, interrupted))
    assert len(trials) == 2 * running
    assert all(t.started_at < sent for t in interrupted)
    return interrupted


def _check_resumed(storage: str, interrupted: list, sent: float) -> None:
    trials = _snapshot(storage)
    assert sorted(t.state for t in trials if not t.interrupted) == [TrialState.COMPLETE] * len(GRID)
    second = sorted((t for t in trials if t.started_at and t.started_at > sent), key=lambda t: t.started_at)
    assert sorted(map(_key, second[: len(interrupted)])) == sorted(map(_key, interrupted))
    assert {t.system_attrs.get("retry_of") for t in second[: len(interrupted)]} == {t.number for t in interrupted}


@pytest.mark.parametrize("path", PATHS, ids=[p.id for p in PATHS])
def test_sigterm_interrupts_running_trials_starts_nothing_and_resume_reruns_them_first(
    tmp_path: Path, path: Path_
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(path.script).format(
        tests=str(TESTS), storage=storage, root=str(tmp_path / "runs"), n_jobs=path.n_jobs, executor=path.executor,
        how=path.how, trainer=path.trainer or {}, grid=GRID,
    ))
    markers = tmp_path / "markers"
    markers.mkdir()
    _, _, sent = _preempt(_start([sys.executable, str(script)], markers), markers, path.markers)
    interrupted = _check_interrupted(storage, path.running, sent)
    if path.executor == "process" or path.trainer:
        # Every trial process (each DDP rank too) ended through the SIGTERMException path, not SIGKILL.
        logs = "".join(p.read_text() for p in (tmp_path / "runs").rglob("worker.log"))
        assert logs.count("trial worker stopped by SIGTERM") == path.markers, logs[-3000:]
    if path.resume:
        again = _start([sys.executable, str(script)], tmp_path, fast=True)
        out = _output(again, 300)
        assert again.returncode == 0, out[-3000:]
        _check_resumed(storage, interrupted, sent)


def test_sigterm_stops_the_cli_with_143(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = {
        "model": {"class_path": "parallel._models.StallingModule", "init_args": {"sleep": 0.2}},
        "trainer": {"max_steps": 10_000, "accelerator": "cpu", "logger": False},
        "search": {"metric": "val_loss", "n_trials": 3, "space": {"model.init_args.offset": GRID},
                   "sampler": {"class_path": "frameworm_lightning.GridSampler"}, "study_name": "preempted",
                   "storage": storage, "root_dir": str(tmp_path / "runs")},
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    markers = tmp_path / "markers"
    markers.mkdir()
    cli = [sys.executable, "-m", "frameworm_lightning.cli", "search", "-c", str(path)]
    _, _, sent = _preempt(_start(cli, markers, cwd=tmp_path), markers, 1)
    _check_interrupted(storage, 1, sent)  # resuming is the runner's, tested above


def test_sigterm_stops_an_inline_search_whose_trials_run_isolated_after_a_crash(tmp_path: Path) -> None:
    from frameworm_lightning import GridSampler

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # A trial of the study once took the search process down: its trials now run in processes of their own.
    study = Study.create("preempted", {"offset": GRID}, metric="val_loss", sampler=GridSampler(), storage=storage)
    crashed = study.ask()
    study.storage.set_trial_attr(crashed.trial_id, "process_deaths", [crashed.number], system=True)
    crashed.fail("its process died")
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(RUNNER).format(
        tests=str(TESTS), storage=storage, root=str(tmp_path / "runs"), n_jobs=1, executor="auto", how="fit",
        trainer={}, grid=GRID,
    ))
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = _start([sys.executable, str(script)], markers)
    _, family, sent = _preempt(proc, markers, 1)
    trials = _snapshot(storage)
    interrupted = [t for t in trials if t.interrupted]
    assert len(interrupted) == 1 and interrupted[0].params != crashed.params
    assert interrupted[0].system_attrs["worker"]["pid"] in family  # it ran in a process of its own
    waiting = [t for t in trials if t.state is TrialState.WAITING]
    assert [_key(t) for t in waiting] == [_key(interrupted[0])]
    log = Path(interrupted[0].system_attrs["trial_dir"], "worker.log").read_text()
    assert "trial worker stopped by SIGTERM" in log, log[-3000:]
