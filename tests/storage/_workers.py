"""Functions run in separate processes by the storage tests (spawned, so importable by path)."""

from __future__ import annotations

import os
import time

from frameworm_lightning import GridSampler, Integer, RandomSampler, Study


def grid_space() -> dict:
    return {"a": Integer(0, 9), "b": ["x", "y", "z"]}


def grid_worker(url: str, name: str, delay: float) -> list[int]:
    """Claim and complete grid points until none is left; return the trial numbers done."""
    study = Study.create(name, grid_space(), metric="loss", sampler=GridSampler(), storage=url)
    done = []
    while (trial := study.ask(budget=None)) is not None:
        time.sleep(delay)
        trial.complete(float(trial.params["a"]))
        done.append(trial.number)
    return done


def die_while_running(url: str, name: str, n_complete: int) -> None:
    """Complete ``n_complete`` trials, claim one more, report once, then die without cleanup."""
    study = Study.create(name, {"x": Integer(0, 1000)}, metric="loss", sampler=RandomSampler(seed=0), storage=url)
    for _ in range(n_complete):
        t = study.ask(budget=10)
        t.complete(float(t.params["x"]))
    t = study.ask(budget=10)
    t.report(5, 1.0)
    os._exit(3)
