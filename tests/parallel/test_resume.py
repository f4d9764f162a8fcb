"""The search process killed with SIGKILL mid-search: a re-run loses nothing and repeats nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from frameworm_lightning import Study
from frameworm_lightning.trial import TrialState

from parallel._models import alive, wait_for

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]

SEARCH = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from frameworm_lightning import GridSampler, SearchRunner
    from parallel._models import SleepyModule, trainer_kwargs

    if __name__ == "__main__":
        runner = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, n_jobs=2, quiet=True,
                              storage={storage!r}, root_dir={root!r}, study_name="killed", save_checkpoints=False,
                              trainer_kwargs=trainer_kwargs(max_steps=6))
        runner.fit(SleepyModule, {{"offset": {grid!r}}}, model_kwargs={{"sleep": 0.4}})
    """
)


def _start(script: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _snapshot(storage: str) -> list:
    try:
        return Study.load("killed", storage).trials
    except Exception:  # noqa: BLE001 - the study does not exist yet
        return []


def _workers(trials: list) -> list[int]:
    return [t.system_attrs["worker"]["pid"] for t in trials if "worker" in t.system_attrs]


def _running_with_done(storage: str, done: int) -> list | None:
    """The trials, once ``done`` are complete and two are training in workers."""
    trials = _snapshot(storage)
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    running = [t for t in trials if t.state is TrialState.RUNNING and "worker" in t.system_attrs]
    return trials if len(complete) >= done and len(running) == 2 else None


def test_sigkill_then_resume_loses_nothing_and_runs_each_point_once(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    script = tmp_path / "search.py"
    script.write_text(SEARCH.format(tests=str(TESTS), storage=storage, root=str(tmp_path / "runs"), grid=GRID))

    # 1. SIGKILL mid-search: the search dies at once; its workers notice and die too.
    proc = _start(script)
    trials = wait_for(lambda: _running_with_done(storage, 1), timeout=240)
    assert trials, proc.communicate(timeout=60)[0].decode()[-3000:]
    proc.kill()
    proc.wait(timeout=30)
    assert wait_for(lambda: not any(alive(p) for p in _workers(_snapshot(storage))), timeout=30)
    killed = _snapshot(storage)
    completed = {t.number: (t.params["offset"], t.value) for t in killed if t.state is TrialState.COMPLETE}
    assert completed and [t for t in killed if t.state is TrialState.RUNNING]

    # 2. Run again: it recovers the killed trials and completes the grid.
    proc = _start(script)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    final = _snapshot(storage)
    complete = [t for t in final if t.state is TrialState.COMPLETE]
    # No completed trial lost or changed...
    assert {t.number: (t.params["offset"], t.value) for t in complete if t.number in completed} == completed
    # ...none run twice, and the whole budget is done.
    assert sorted(t.params["offset"] for t in complete) == GRID
    assert sorted(t.claim_key for t in complete) == sorted(f"grid:{i}" for i in range(len(GRID)))
    assert not [t for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert [t for t in final if t.state is TrialState.FAILED and not t.interrupted] == []
    assert {t.number for t in final if t.interrupted} == {t.number for t in killed if t.state is TrialState.RUNNING}
