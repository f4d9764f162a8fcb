"""Studies built by hand (ask / report / complete / prune / fail) for the analysis tests."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from frameworm_lightning import Categorical, Integer, Real, SobolSampler, Study

# x matters a lot, depth a little, act a bit, noise not at all.
SPACE = {
    "lr": Real(1e-4, 1e-1, log=True),
    "depth": Integer(1, 8),
    "act": Categorical(["relu", "gelu", "tanh"]),
    "noise": Real(0.0, 1.0),
}


def objective(p: Mapping[str, Any]) -> float:
    """A deterministic objective that ignores ``noise``; its minimum is near lr=3e-3."""
    return (math.log10(p["lr"]) + 2.5) ** 2 + 0.05 * (p["depth"] - 4) ** 2 + 0.3 * (p["act"] == "tanh")


def additive(p: Mapping[str, Any]) -> float:
    """An additive objective whose variance shares are about lr 0.55, depth 0.3, act 0.15, noise 0."""
    return (math.log10(p["lr"]) + 2.5) ** 2 + 0.216 * p["depth"] + 0.43 * ["relu", "gelu", "tanh"].index(p["act"])


def build_study(
    name: str = "hand",
    n: int = 48,
    *,
    mode: str = "min",
    storage: str = "memory",
    space: Mapping[str, Any] | None = None,
    fn: Callable[[Mapping[str, Any]], float] = objective,
    steps: int = 5,
    prune_every: int | None = 7,
    fail: tuple[int, ...] = (5,),
) -> Study:
    """A study whose trials report ``steps`` values (global steps 10, 20, ...) and end.

    Trial ``n`` with ``n % prune_every == 3`` is pruned after reporting ``n % steps + 1``
    values (so at global step ``10 * (n % steps + 1)``); trials in ``fail`` fail.
    """
    study = Study.create(name, space or SPACE, metric="val_loss", mode=mode, sampler=SobolSampler(seed=0),
                         storage=storage)
    while (trial := study.ask(budget=n)) is not None:
        final = fn(trial.params)
        pruned = prune_every is not None and trial.number % prune_every == 3
        reports = trial.number % steps + 1 if pruned else steps
        for k in range(1, reports + 1):
            trial.report(10 * k, final + 1.0 / k)
        if trial.number in fail:
            trial.fail("Traceback (most recent call last):\nValueError: <boom> & diverged")
        elif pruned:
            trial.prune("median rule: worse than the median at this step")
        else:
            trial.complete(final)
    return study


def paused_and_promoted() -> Study:
    """Trial 0 paused at a rung and promoted as trial 1 (which completes); trial 2 pruned for good."""
    study = Study.create("promoted", {"x": [0.0, 1.0]}, metric="val_loss")
    parent = study.ask()
    parent.report(10, 0.4)
    parent.prune("paused: val_loss=0.4 at 1 epoch ranks 1 of 1")
    child = study.ask()
    child.report(20, 0.3)
    child.complete(0.3)
    pruned = study.ask()
    pruned.report(10, 0.9)
    pruned.prune("median rule")
    by_number = {t.number: t for t in study.trials}
    study.storage.set_trial_attr(by_number[0].trial_id, "promoted_to", 1, system=True)
    study.storage.set_trial_attr(by_number[1].trial_id, "promoted_from", 0, system=True)
    return study

