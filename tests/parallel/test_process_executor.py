"""The local process executor: trials at once, crashes and timeouts isolated, Ctrl-C, the function API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lightning.pytorch.utilities.exceptions import SIGTERMException

from frameworm_lightning import GridSampler, MetricNotFoundError, SearchRunner, Study
from frameworm_lightning.runner._forkserver import forkserver_ready, start_forkserver
from frameworm_lightning.search import GridSearch
from frameworm_lightning.trial import TrialState

from parallel._models import (
    SleepyModule,
    alive,
    churn_page_faults,
    exit_marker,
    metrics_dict,
    overlap,
    rank_reports,
    square,
    trainer_kwargs,
    wait_for,
)

pytestmark = pytest.mark.slow


def _runner(tmp_path: Path, **kwargs: object) -> SearchRunner:
    return SearchRunner(
        metric="val_loss", sampler=GridSampler(), n_trials=None, root_dir=tmp_path / "runs",
        storage=f"sqlite:///{tmp_path / 'study.db'}", quiet=True, save_checkpoints=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_two_jobs_really_train_two_trials_at_once(tmp_path: Path) -> None:
    runner = _runner(tmp_path, n_jobs=2, trainer_kwargs=trainer_kwargs(max_steps=2))
    result = runner.fit(SleepyModule, {"offset": [0.1, 0.2]}, model_kwargs={"sleep": 1.0})

    a, b = result.trials
    assert [t.state for t in result.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert overlap((a.started_at, a.completed_at), (b.started_at, b.completed_at))
    # Not just claimed together: their training ran at the same time, in two processes.
    ra, rb = (rank_reports(t.system_attrs["trial_dir"])[0] for t in (a, b))
    assert overlap((ra["start"], ra["end"]), (rb["start"], rb["end"]))
    assert len({ra["pid"], rb["pid"], os.getpid()}) == 3
    assert a.system_attrs["worker"]["pid"] == ra["pid"]
    assert sorted(t.value for t in result.trials) == pytest.approx([0.1, 0.2], abs=0.01)
    # Reports reached storage from the workers.
    assert all(t.intermediate_values for t in result.trials)


def test_crashes_and_timeouts_fail_their_trial_only(tmp_path: Path) -> None:
    crashes = ["ok", "raise", "sys_exit", "os_exit", "segfault", "sigkill", "hang"]
    runner = _runner(tmp_path, n_jobs=2, trial_timeout=20, trainer_kwargs=trainer_kwargs(max_steps=3))
    result = runner.fit(SleepyModule, {"crash": crashes})

    by_crash = {t.params["crash"]: t for t in result.trials}
    assert by_crash["ok"].state is TrialState.COMPLETE
    failed = {c: t for c, t in by_crash.items() if c != "ok"}
    assert all(t.state is TrialState.FAILED and not t.interrupted for t in failed.values())
    assert "RuntimeError: boom: the model raised" in failed["raise"].error
    # execute_trial stores sys.exit itself; the entry point stores it if it escapes.
    assert failed["sys_exit"].reason == "the trial called sys.exit(4)", failed["sys_exit"].reason  # as docs/parallel.md says
    assert failed["os_exit"].reason == "worker exited with code 3"
    assert failed["segfault"].reason.startswith("worker killed by SIGSEGV")
    assert "in _crash" in failed["segfault"].error  # faulthandler's stack, from the worker's log
    assert failed["sigkill"].reason.startswith("worker killed by SIGKILL")
    assert failed["hang"].reason == "timed out: ran past trial_timeout=20s"
    # Every worker is gone, the hung one included.
    pids = [t.system_attrs["worker"]["pid"] for t in result.trials]
    assert wait_for(lambda: not any(alive(p) for p in pids), timeout=15)


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SIGTERMException)])
def test_a_signal_stores_running_trials_as_interrupted_and_leaves_no_process(
    tmp_path: Path, signum: signal.Signals, raised: type[BaseException]
) -> None:
    """Ctrl-C (SIGINT) or SIGTERM: no new trials, running ones interrupted and requeued, workers gone."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    runner = _runner(tmp_path, n_jobs=2, trainer_kwargs=trainer_kwargs(max_steps=50))
    study_box: list[Study] = []

    def press_ctrl_c() -> None:
        def both_training() -> list:
            try:
                study = Study.load("SleepyModule", storage)
            except Exception:  # noqa: BLE001 - not created yet
                return []
            running = [t for t in study.trials_in(TrialState.RUNNING) if "worker" in t.system_attrs]
            study_box[:] = [study]
            return running if len(running) == 2 else []

        if wait_for(both_training, timeout=120):
            os.kill(os.getpid(), signum)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    with pytest.raises(raised) as stopped:
        runner.fit(SleepyModule, {"offset": [0.1, 0.2, 0.3]}, model_kwargs={"sleep": 0.5})
    if signum == signal.SIGTERM:
        assert stopped.value.code == 143  # the exit status of a script that does not catch it
    presser.join(5)

    study = study_box[0]
    interrupted = [t for t in study.trials if t.interrupted]
    assert len(interrupted) == 2 and not study.trials_in(TrialState.RUNNING)
    assert all(signum.name in t.error for t in interrupted)
    pids = [t.system_attrs["worker"]["pid"] for t in interrupted]
    assert wait_for(lambda: not any(alive(p) for p in pids), timeout=15)
    # Their params were re-enqueued: running the search again finishes the grid.
    waiting = study.trials_in(TrialState.WAITING)
    assert sorted(t.params["offset"] for t in waiting) == sorted(t.params["offset"] for t in interrupted)


def test_function_api_runs_trials_in_parallel_on_its_in_memory_study() -> None:
    search = GridSearch(base_config={"x": 0.0, "sleep": 0.5}, search_space={"x": [0.0, 1.0, 2.0, 3.0]},
                        metric="loss", verbose=False)
    best_config, best_score = search.run(square, n_jobs=2)
    assert best_config["x"] == 1.0 and best_score == 0.0
    trials = search.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert any(overlap((a.started_at, a.completed_at), (b.started_at, b.completed_at))
               for a in trials for b in trials if a.number < b.number)
    assert len({t.system_attrs["worker"]["pid"] for t in trials}) == 4


def test_a_wrong_metric_name_stops_a_parallel_search_at_the_first_trial(tmp_path: Path) -> None:
    runner = SearchRunner(metric="val_los", sampler=GridSampler(), n_trials=None, root_dir=tmp_path / "runs",
                          storage=f"sqlite:///{tmp_path / 'study.db'}", quiet=True, save_checkpoints=False, n_jobs=2,
                          trainer_kwargs=trainer_kwargs(max_steps=2))
    with pytest.raises(MetricNotFoundError, match=r"metric 'val_los' was never logged; logged metrics: val_loss"):
        runner.fit(SleepyModule, {"offset": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    trials = Study.load("SleepyModule", f"sqlite:///{tmp_path / 'study.db'}").trials
    assert len(trials) <= 3 and not [t for t in trials if t.state is TrialState.RUNNING]


def test_a_wrong_metric_name_stops_the_function_api(tmp_path: Path) -> None:
    for n_jobs in (1, 2):
        search = GridSearch(base_config={"x": 0.0}, search_space={"x": [0.0, 1.0, 2.0, 3.0]}, metric="los",
                            verbose=False)
        with pytest.raises(MetricNotFoundError, match=r"metric 'los' was never logged; logged metrics: loss"):
            search.run(metrics_dict, n_jobs=n_jobs)
        assert len(search.study.trials) <= n_jobs + 1


def test_a_trial_process_is_forked_by_the_preloaded_forkserver_and_runs_its_exit_handlers(tmp_path: Path) -> None:
    start_forkserver()  # ready first: a trial started before would be forked by this process (the next tests)
    assert wait_for(forkserver_ready, timeout=120)
    search = GridSearch(base_config={"x": 0.0, "path": str(tmp_path / "exit")}, search_space={"x": [1.0, 2.0]},
                        metric="loss", verbose=False)
    search.run(exit_marker, n_jobs=2)
    facts = [eval(p.read_text()) for p in sorted(tmp_path.glob("exit.[0-9]*"))]  # noqa: S307 - our own repr
    assert len(facts) == 2  # atexit ran although multiprocessing ends its children with os._exit
    # A finalizer the trial registered ran at its exit; the ~180 that torch's imports registered
    # in the forkserver (teardown of an interpreter no trial tears down) did not wait for it.
    assert sorted(p.name for p in tmp_path.glob("exit.fin.*")) == ["exit.fin.1.0", "exit.fin.2.0"]
    for f in facts:
        assert f["ppid"] != os.getpid()  # forked by the forkserver, never by the search process
        assert f["pgid"] == f["pid"]  # its own process group
        assert f["lightning_before_trial"]  # preloaded: imported before the trial began
        assert f["torch_before_trial"] and f["finalizers_due_at_exit"] == 0
        # What it was forked with is out of the collector's way (no full collection walks it).
        assert f["frozen_objects"] > 100_000
        # Every OpenMP runtime it loaded runs the trial's thread count, not the machine's.
        assert f["openmp_threads"] == [f["omp_num_threads"]]
        assert f["main"] == "frameworm_lightning.runner._trial_entry"  # what DDP relaunches re-run


LIGHT_SEARCH = """
import sys
from frameworm_lightning.search import GridSearch

def lightning_loaded(config):
    return float("lightning.pytorch" in sys.modules)

if __name__ == "__main__":
    _, worst = GridSearch({{}}, {{"x": [1, 2]}}, metric="loss", mode="max", verbose=False).run(lightning_loaded, n_jobs=2)
    print(worst, "lightning.pytorch" in sys.modules)
"""


def test_a_plain_function_search_never_imports_lightning(tmp_path: Path) -> None:
    script = tmp_path / "light.py"
    script.write_text(LIGHT_SEARCH.format())
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # Neither the search process nor its workers (forked by a forkserver without Lightning) loaded it.
    assert out.stdout.split() == ["0.0", "False"]


_UNGUARDED = '''
import torch, lightning.pytorch as pl
from torch.utils.data import DataLoader, TensorDataset
from frameworm_lightning import GridSampler, SearchRunner
from parallel._models import trainer_kwargs

class InScript(pl.LightningModule):  # defined in the script: a trial's process must import the script
    def __init__(self, lr=0.1):
        super().__init__(); self.save_hyperparameters(); self.l = torch.nn.Linear(2, 1)
    def train_dataloader(self):
        x = torch.randn(8, 2); return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)
    val_dataloader = train_dataloader
    def training_step(self, b, i):
        return torch.nn.functional.mse_loss(self.l(b[0]), b[1])
    def validation_step(self, b, i):
        self.log("val_loss", torch.nn.functional.mse_loss(self.l(b[0]), b[1]))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

# no if __name__ == "__main__": guard
SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, n_jobs=2, root_dir="runs", quiet=True,
             storage="sqlite:///study.db", trainer_kwargs=trainer_kwargs(max_steps=2)).fit(
    InScript, {"lr": [0.1, 0.05, 0.01, 0.005]})
'''


def test_a_script_that_searches_when_imported_stops_with_a_clear_error_not_a_search_per_trial(tmp_path: Path) -> None:
    tests = Path(__file__).resolve().parents[1]
    (tmp_path / "search.py").write_text(_UNGUARDED)
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "search.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert 'put the search under if __name__ == "__main__":' in proc.stderr.splitlines()[-1]
    trials = Study.load("InScript", f"sqlite:///{tmp_path / 'study.db'}").trials
    # The first failure stopped the search (every trial would fail alike); no trial ran a search of its own.
    # The other worker's trial failed alike or, still starting when the search stopped, was stored
    # interrupted with its params waiting to run first on resume (which of the two is timing).
    ran = [t for t in trials if t.state is not TrialState.WAITING]
    assert 1 <= len(ran) <= 2 and {t.state for t in ran} == {TrialState.FAILED}
    cause = "the trial could not load what it runs: FramewormError"
    failed = [t for t in ran if not t.system_attrs.get("interrupted")]
    assert len(failed) >= 1 and all(t.reason.startswith(cause) for t in failed)
    assert all(t.system_attrs.get("retry_of") is not None for t in trials if t.state is TrialState.WAITING)


ARGV_SEARCH = """
import argparse
from frameworm_lightning.search import GridSearch

parser = argparse.ArgumentParser()
parser.add_argument("--scale", type=float, default=1.0)
args = parser.parse_args()  # at import, as many scripts do: each trial's process imports this script

def scaled(config):
    return {"loss": config["x"] * args.scale}

if __name__ == "__main__":
    best, score = GridSearch({}, {"x": [1, 2]}, metric="loss", mode="min", verbose=False).run(scaled, n_jobs=2)
    print(best["x"], score)
"""


def test_a_trial_process_imports_the_search_script_with_the_search_command_line(tmp_path: Path) -> None:
    # It imported the script with the trial entry's argv (its payload path): argparse failed
    # on it, every trial failed "before its first step", and the search stopped.
    script = tmp_path / "search.py"
    script.write_text(ARGV_SEARCH)
    out = subprocess.run([sys.executable, str(script), "--scale", "3"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["1", "3.0"]


def _threads_env(**threads: str) -> dict[str, str]:
    """This environment with only these thread counts set (conftest sets one thread for MKL and OpenMP)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return {**env, **threads}


COLD_SEARCH = """
import atexit, json, os, sys, weakref
import numpy as np, torch
import lightning.pytorch  # its forkserver must import Lightning: seconds, while the first trials start
from frameworm_lightning.search import GridSearch

def trial(config):
    # A big op runs on an OpenMP team: the search process's team is dead in a forked child,
    # so this would wait forever in one that asked for two threads.
    torch.randn(2_000_000).exp().sum(); np.ones((300, 300)) @ np.ones((300, 300))
    from threadpoolctl import threadpool_info
    facts = {{"ppid": os.getppid(), "threads": torch.get_num_threads(), "x": config["x"],
             "openmp_threads": sorted({{p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"}}),
             "due_at_exit": sum(f.atexit for f in weakref.finalize._registry)}}
    with open({out!r} + f".{{config['x']}}", "w") as f:
        json.dump(facts, f)
    return float(config["x"])

class Kept:
    pass

kept = Kept()

if __name__ == "__main__":
    torch.set_num_threads(2)  # the trials get OMP_NUM_THREADS=1
    before = len(os.listdir("/proc/self/task"))
    torch.randn(2_000_000).exp().sum(); np.ones((300, 300)) @ np.ones((300, 300))  # OpenMP's team, OpenBLAS's pool
    assert len(os.listdir("/proc/self/task")) > before, "no OpenMP team: the test would prove nothing"
    atexit.register(lambda: open({out!r} + ".search-exit", "a").write(f"{{os.getpid()}}\\n"))
    weakref.finalize(kept, lambda: open({out!r} + ".search-fin", "a").write(f"{{os.getpid()}}\\n"))
    best, _ = GridSearch({{}}, {{"x": [1, 2]}}, metric="loss", verbose=False).run(trial, n_jobs=2)
    print(os.getpid(), best["x"])
"""


def test_trials_started_before_the_forkserver_is_ready_are_forked_by_the_search_process(tmp_path: Path) -> None:
    out = str(tmp_path / "facts")
    script = tmp_path / "cold.py"
    script.write_text(COLD_SEARCH.format(out=out))
    # One thread per trial, what n_jobs=2 gives on two cores, here on any machine.
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=_threads_env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    search_pid, best = proc.stdout.split()
    assert best == "1"
    facts = [json.loads(Path(f"{out}.{x}").read_text()) for x in (1, 2)]
    # Both trials started at once, seconds before the forkserver's Lightning imports were
    # done: the search process forked them, and their big ops did not wait on its OpenMP team.
    assert [f["ppid"] for f in facts] == [int(search_pid)] * 2
    assert [f["threads"] for f in facts] == [1, 1]
    # OpenMP, whose team of two the search process made, runs the trial's one thread.
    assert [f["openmp_threads"] for f in facts] == [[1], [1]]
    # The search process's exit handler and finalizer ran once, in the search process;
    # the trials started with none of its finalizers due.
    assert Path(f"{out}.search-exit").read_text().split() == [search_pid]
    assert Path(f"{out}.search-fin").read_text().split() == [search_pid]
    assert [f["due_at_exit"] for f in facts] == [0, 0]


FORK_CHECK = """
import json, os, threading
import numpy as np, torch
from frameworm_lightning.runner._processes import can_fork_trial_here
seen = {"fresh": [can_fork_trial_here(1), can_fork_trial_here(2)]}
before = len(os.listdir("/proc/self/task"))
torch.randn(2_000_000).exp().sum(); np.ones((300, 300)) @ np.ones((300, 300))
assert len(os.listdir("/proc/self/task")) > before, "no OpenMP team: the test would prove nothing"
seen["after OpenMP"] = [can_fork_trial_here(1), can_fork_trial_here(2)]
stop = threading.Event()
t = threading.Thread(target=stop.wait); t.start()
seen["a thread of the user's"] = [can_fork_trial_here(1), can_fork_trial_here(2)]
stop.set(); t.join()
print(json.dumps(seen))
"""


def test_a_trial_is_forked_from_the_search_process_only_when_no_thread_there_could_hang_it(tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(FORK_CHECK)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env=_threads_env(OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout)
    # No other thread before any op: any trial. Once OpenMP made a team of two, only a trial
    # of one thread (the team is dead in the child). With a thread of the user's: none.
    assert seen == {"fresh": [True, True], "after OpenMP": [True, False], "a thread of the user's": [False, False]}


STREAMS_SEARCH = """
import io, logging, sys
import lightning.pytorch  # its forkserver must import Lightning: the trials come from this process
from frameworm_lightning import GridSampler, SearchRunner
from parallel._models import SleepyModule, trainer_kwargs

class Talky(SleepyModule):
    def on_fit_start(self):
        print("printed by the trial")
        logging.getLogger("talky").warning("logged by the trial")

if __name__ == "__main__":
    tee = io.StringIO()  # what the search process's streams are: pytest's capture, a user's tee
    logging.getLogger("talky").addHandler(logging.StreamHandler(tee))
    sys.stdout = sys.stderr = tee
    SearchRunner(metric="val_loss", sampler=GridSampler(), n_trials=None, n_jobs=2, root_dir="runs", quiet=True,
                 storage="sqlite:///study.db", save_checkpoints=False,
                 trainer_kwargs=trainer_kwargs()).fit(Talky, {{"sleep": [0.0, 0.01]}})
    sys.__stdout__.write(repr(tee.getvalue()))
"""


def test_a_trial_forked_from_the_search_process_writes_to_its_own_log_whatever_the_search_s_streams_are(
        tmp_path: Path) -> None:
    tests = Path(__file__).resolve().parents[1]
    (tmp_path / "search.py").write_text(STREAMS_SEARCH.format())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "search.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "by the trial" not in proc.stdout  # nothing of the trials in the search process's own streams
    logs = sorted(tmp_path.glob("runs/Talky/trial_*/worker.log"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        assert "printed by the trial" in text and "logged by the trial" in text


def test_a_trial_process_reuses_freed_memory_as_a_long_lived_process_does() -> None:
    """glibc's allocator starts a fresh process mapping each large buffer afresh and
    unmapping it when freed, until its thresholds have grown: a trial process did that
    at each new tensor size (14,000-21,000 page faults per CpuMLP trial of
    benchmarks/parallel.py, 25 ms of kernel time, against about 1,000 in the search
    process's own trials). Trial processes start with the thresholds glibc ends at.
    """
    search = GridSearch({}, {"x": [0.0, 0.5]}, metric="loss", verbose=False)
    search.run(churn_page_faults, n_jobs=2)
    faults = [t.value for t in search.result.trials]
    assert len(faults) == 2 and all(f < 12_000 for f in faults), faults
