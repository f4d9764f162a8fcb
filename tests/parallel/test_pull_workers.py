"""Pull workers: independent processes share one PostgreSQL study, each grid point run once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from frameworm_lightning import SearchRunner, Study
from frameworm_lightning.trial import TrialState

from parallel._models import SleepyModule, rank_reports

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TESTS = Path(__file__).resolve().parents[1]
GRID = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from frameworm_lightning import GridSampler, SearchRunner
    from parallel._models import SleepyModule, trainer_kwargs

    if __name__ == "__main__":
        # Both workers start claiming together, so both take part.
        Path({ready!r}).joinpath(sys.argv[1]).touch()
        while len(list(Path({ready!r}).iterdir())) < 2:
            time.sleep(0.05)
        runner = SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, quiet=True,
                              storage={storage!r}, study_name={study!r}, root_dir={root!r},
                              save_checkpoints=False, trainer_kwargs=trainer_kwargs(max_steps=2))
        runner.worker(SleepyModule, {{"offset": {grid!r}}}, model_kwargs={{"sleep": 0.3}})
    """
)


def test_two_pull_workers_share_a_grid_without_duplicates(tmp_path: Path, postgres_url: str, study_name: str) -> None:
    (tmp_path / "ready").mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS), ready=str(tmp_path / "ready"), storage=postgres_url,
                                    study=study_name, root=str(tmp_path / "runs"), grid=GRID))
    procs = [subprocess.Popen([sys.executable, str(script), name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name in ("a", "b")]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)

    trials = Study.load(study_name, postgres_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * len(GRID)
    assert sorted(t.params["offset"] for t in trials) == GRID
    assert Counter(t.claim_key for t in trials).most_common(1)[0][1] == 1
    runners = Counter(rank_reports(t.system_attrs["trial_dir"])[0]["pid"] for t in trials)
    assert len(runners) == 2, runners  # both workers ran trials


def test_a_worker_needs_a_shared_storage() -> None:
    with pytest.raises(ValueError, match="in memory"):
        SearchRunner(storage="memory").worker(SleepyModule, {"offset": [0.1]})
