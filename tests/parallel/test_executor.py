"""Choosing an executor, what workers are given, and how a dead worker is described (no processes)."""

from __future__ import annotations

import signal
import sys
import types
from pathlib import Path

import pytest

from frameworm_lightning import GridSampler, Real, SearchRunner, Study
from frameworm_lightning.runner._launcher import WorkerExit, describe_exit, resolve_executor
from frameworm_lightning.runner._payload import dump_evaluate
from frameworm_lightning.runner._processes import log_tail
from frameworm_lightning.runner._trial_entry import load_evaluate
from frameworm_lightning.search import RandomSearch
from frameworm_lightning.study import Study as _Study
from frameworm_lightning.space import Categorical, SearchSpace
from frameworm_lightning.trial import TrialState

from parallel._models import SleepyModule, square


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "inline"),
        ({"n_jobs": 2}, "process"),
        ({"trial_timeout": 10}, "process"),
        ({"gpus_per_trial": 0.5}, "process"),
        ({"gpus_per_trial": 0}, "process"),
        ({"trainer_kwargs": {"strategy": "ddp", "devices": 2}}, "process"),
        ({"trainer_kwargs": {"devices": [0, 1]}}, "process"),
        ({"trainer_kwargs": {"devices": "0,1"}}, "process"),
        ({"trainer_kwargs": {"devices": 1, "strategy": "auto"}}, "inline"),
        ({"space": SearchSpace({"trainer.devices": Categorical([1, 2])})}, "process"),
        ({"executor": "process"}, "process"),
        ({"executor": "ray", "n_jobs": 4}, "ray"),
        ({"executor": "inline"}, "inline"),
    ],
)
def test_resolve_executor(kwargs: dict, expected: str) -> None:
    executor = kwargs.pop("executor", "auto")
    n_jobs = kwargs.pop("n_jobs", 1)
    assert resolve_executor(executor, n_jobs, **kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"executor": "threads"}, "executor must be one of"),
        ({"executor": "inline", "n_jobs": 2}, "one trial at a time"),
        ({"trial_timeout": 0}, "trial_timeout"),
        ({"trial_timeout": True}, "trial_timeout"),
        ({"gpus_per_trial": 1.5}, "whole number"),
        ({"ray_address": "auto"}, "only used with executor='ray'"),
    ],
)
def test_runner_validates_parallel_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SearchRunner(**kwargs)


@pytest.mark.parametrize("kwargs", [{"trial_timeout": 10}, {"gpus_per_trial": 0}])
def test_inline_cannot_time_out_or_place_gpus(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="need worker processes"):
        resolve_executor("inline", 1, **kwargs)


def test_unpicklable_targets_are_explained() -> None:
    with pytest.raises(ValueError, match="module level"):
        dump_evaluate(lambda c: 0.0, "train_fn")

    class Local(SleepyModule):
        pass

    with pytest.raises(ValueError, match="module level"):
        dump_evaluate(Local, "the LightningModule")


def test_classes_of_an_interactive_session_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    interactive = types.ModuleType("__main__")  # no __file__, no __spec__: a REPL or notebook
    monkeypatch.setitem(sys.modules, "__main__", interactive)
    cls = type("NotebookModel", (), {"__module__": "__main__"})
    interactive.NotebookModel = cls  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="interactive session"):
        dump_evaluate(cls, "the LightningModule")


def test_classes_of_a_script_read_from_stdin_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # python - <<EOF ... n_jobs=2: every worker failed "No such file or directory: '.../<stdin>'".
    piped = types.ModuleType("__main__")
    piped.__file__ = "<stdin>"
    monkeypatch.setitem(sys.modules, "__main__", piped)
    cls = type("PipedModel", (), {"__module__": "__main__"})
    piped.PipedModel = cls  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"interactive session \(python - reads <stdin>"):
        dump_evaluate(cls, "the LightningModule")


def test_script_classes_are_re_imported_from_the_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = types.ModuleType("__main__")
    script.__file__ = str(tmp_path / "search.py")
    monkeypatch.setitem(sys.modules, "__main__", script)
    cls = type("ScriptModel", (), {"__module__": "__main__"})
    script.ScriptModel = cls  # type: ignore[attr-defined]
    _, main = dump_evaluate(cls, "the LightningModule")
    assert main == ("path", str(tmp_path / "search.py"))
    _, main = dump_evaluate(SleepyModule, "the LightningModule")
    assert main is None


def test_nested_train_fn_is_refused_before_any_work() -> None:
    search = RandomSearch({}, {"x": Real(0, 1)}, metric="loss", n_trials=2, verbose=False)

    def local_fn(config: dict) -> float:
        return 0.0

    with pytest.raises(ValueError, match="module level"):
        search.run(local_fn, n_jobs=2)
    assert search.open_study().trials == []


@pytest.mark.parametrize(
    ("exit", "reason"),
    [
        (WorkerExit(-int(signal.SIGKILL)), "worker killed by SIGKILL: killed outright: most often the out-of-memory killer"),
        (WorkerExit(-int(signal.SIGSEGV)), "worker killed by SIGSEGV: a segmentation fault"),
        (WorkerExit(3), "worker exited with code 3"),
        (WorkerExit(0), "worker exited (code 0) without storing the trial's outcome"),
        (WorkerExit(None, detail="the trial's Ray task failed: NodeDiedError"), "the trial's Ray task failed"),
    ],
)
def test_describe_exit(exit: WorkerExit, reason: str) -> None:
    got_reason, error = describe_exit(exit)
    assert got_reason.startswith(reason)
    assert error.startswith(got_reason)


def test_describe_exit_keeps_rank_errors_and_the_log() -> None:
    _, error = describe_exit(WorkerExit(1, "last line", extra=["rank1: RuntimeError: x"], log_path="/t/worker.log"))
    assert "rank1: RuntimeError: x" in error and "(/t/worker.log):\nlast line" in error


def test_log_tail_keeps_the_top_of_a_faulthandler_dump(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    frames = [f'  File "m.py", line {i} in f{i}' for i in range(100)]
    log.write_text("\n".join(["noise"] * 50 + ["Fatal Python error: Segmentation fault", "", *frames]))
    tail = log_tail(log, lines=5)
    assert tail.splitlines()[0] == "Fatal Python error: Segmentation fault"
    assert "line 0 in f0" in tail
    assert log_tail(tmp_path / "missing.log") == ""


def test_an_in_memory_study_is_shared_through_a_file_and_copied_back() -> None:
    study = Study.create("mem", {"x": Real(0, 1)}, metric="loss", sampler=GridSampler(grid_points=3))
    first = study.ask()
    first.complete(1.0)
    with study.storage.shareable() as storage:
        assert storage is not study.storage and not storage.is_memory
        shared = _Study.load("mem", storage)
        assert [t.value for t in shared.trials] == [1.0]
        t = shared.ask()
        t.report(3, 0.5)
        t.complete(0.25)
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 1.0), (TrialState.COMPLETE, 0.25)]
    assert study.trials[1].intermediate_values == {3: 0.5}
    assert study.ask().params["x"] not in (first.params["x"], t.params["x"])  # grid claims survived the trip


def test_function_api_needs_no_storage_for_n_jobs() -> None:
    from frameworm_lightning.search import GridSearch

    search = GridSearch(base_config={"x": 0.0}, search_space={"x": [0.0, 1.0, 3.0]}, metric="loss", verbose=False)
    with pytest.raises(ValueError, match="module level"):
        search.run(lambda c: c["x"], n_jobs=2)
    assert square({"x": 1.0}) == 0.0


SCRIPT = """
class ScriptModel:
    tag = "from the search script"
"""


def test_a_trial_loads_the_search_script_its_payload_names_not_another_main(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A trial forked for a Ray worker finds Ray's worker script as __mp_main__: the
    # evaluation pickled by the search process must still find the search script's classes.
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    exec(compile(SCRIPT, str(script), "exec"), main.__dict__)  # noqa: S102 - the test's own script
    main.ScriptModel.__module__ = "__main__"
    monkeypatch.setitem(sys.modules, "__main__", main)
    evaluate_bytes, ref = dump_evaluate(main.ScriptModel, "the LightningModule")
    other = types.ModuleType("__mp_main__")
    other.__file__ = str(tmp_path / "default_worker.py")
    monkeypatch.setitem(sys.modules, "__mp_main__", other)
    loaded = load_evaluate({"main": ref, "sys_path": []}, evaluate_bytes)
    assert loaded.tag == "from the search script"
    assert sys.modules["__mp_main__"].__file__ == str(script)
