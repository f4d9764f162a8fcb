"""Inline trials: once a trial crashed the search process, the study's trials run isolated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from frameworm_lightning import Study, TrialState

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

SCRIPT = textwrap.dedent(
    """
    import sys
    from frameworm_lightning import GridSampler, SearchRunner
    from parallel._models import SleepyModule, trainer_kwargs

    runner = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, root_dir=sys.argv[2],
                          storage=sys.argv[1], study_name="crashy", quiet=True, save_checkpoints=False,
                          trainer_kwargs=trainer_kwargs(max_steps=2))
    result = runner.fit(SleepyModule, {"crash": ["segfault", "ok"], "offset": [0.1, 0.2]})
    print("best offset", result.best_params["offset"])
    """
)


def _run(script: Path, url: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), url, str(root)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_trial_that_crashed_the_search_runs_isolated_and_the_search_goes_on(tmp_path: Path) -> None:
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = _run(script, url, tmp_path / "runs")
    # Inline (the default for n_jobs=1), the first segfault takes the search process with it.
    assert first.returncode == -signal.SIGSEGV, first.stdout + first.stderr
    second = _run(script, url, tmp_path / "runs")
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert "best offset 0.1" in second.stdout
    trials = Study.load("crashy", url).trials
    by_state = {}
    for t in trials:
        by_state.setdefault(t.state, []).append(t)
    # Run 1 died in its segfault trial (stored as a process death when run 2 began, and
    # re-run first); in run 2 each trial ran in a process of its own, so both segfaulting
    # configurations failed alone and the search went on to the end of the grid.
    died = [t for t in trials if t.interrupted]
    assert len(died) == 1 and died[0].params["crash"] == "segfault"
    crashed = [t for t in trials if t.state is TrialState.FAILED and not t.interrupted]
    assert sorted(t.params["offset"] for t in crashed) == [0.1, 0.2]
    assert all(t.params["crash"] == "segfault" and t.reason.startswith("worker killed by SIGSEGV") for t in crashed)
    assert any(t.system_attrs.get("process_deaths") == [died[0].number] for t in crashed)
    complete = [t for t in trials if t.state is TrialState.COMPLETE]
    assert sorted(t.params["offset"] for t in complete) == [0.1, 0.2]
    assert all(t.system_attrs["worker"]["pid"] != os.getpid() for t in crashed + complete)
