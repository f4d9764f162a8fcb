"""The run loop (``runner/_loop.py``) with a launcher that fails to start a worker."""

from __future__ import annotations

from typing import Any

import pytest

from frameworm_lightning import FramewormError, GridSampler, Study, TrialState
from frameworm_lightning.runner._loop import run_study


class _BrokenLauncher:
    """Its worker processes cannot start (the forkserver died, fork failed: EOFError, OSError)."""

    blocking = False

    def start(self, trial: Any, env: Any) -> Any:
        raise EOFError("unexpected EOF")

    def poll(self, handle: Any) -> None:
        return None

    def wait(self, handles: Any, timeout: float, wake_fd: int) -> None:
        pass

    def kill(self, handles: Any) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_trial_whose_worker_could_not_start_is_interrupted_and_runs_first_on_resume() -> None:
    # It was stored FAILED as if it had run and failed: a resumed grid never ran its point.
    study = Study.create("broken", {"x": [1, 2, 3]}, metric="loss", sampler=GridSampler())
    with pytest.raises(FramewormError, match=r"could not start trial 0's worker process: EOFError: unexpected EOF "
                                             r"\(.*\); it is stored interrupted and runs first when the search runs again") as err:
        run_study(study, _BrokenLauncher(), budget=3)
    assert isinstance(err.value.__cause__, EOFError)
    t = study.trials[0]
    assert t.state is TrialState.FAILED and t.interrupted
    assert "could not start the trial's worker: EOFError: unexpected EOF" in (t.error or "")
    again = study.ask(budget=3)
    assert again is not None and again.params == t.params
