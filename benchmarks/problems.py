"""Benchmark problems for ``bo_suite.py``: classic test functions and a mixed
"hyperparameter-like" space, each with its search space and its known minimum.

Every problem is minimised. ``value(params)`` is the noise-free objective; a problem
with ``noise_std > 0`` is observed as ``value + N(0, noise_std^2)`` and scored on the
noise-free value of the configuration an optimiser ends with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import numpy as np

from frameworm_lightning.space import Categorical, Integer, Real, SearchSpace

__all__ = ["PROBLEMS", "PROBLEM_SETS", "Problem"]


@dataclass(frozen=True)
class Problem:
    name: str
    dimensions: dict[str, Any]
    function: Callable[[dict[str, Any]], float]
    optimum: float
    noise_std: float = 0.0

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace(self.dimensions)

    def value(self, params: dict[str, Any]) -> float:
        return float(self.function(params))

    def observe(self, params: dict[str, Any], rng: np.random.Generator) -> float:
        noise = rng.normal(0.0, self.noise_std) if self.noise_std > 0 else 0.0
        return self.value(params) + float(noise)


def _vector(params: dict[str, Any], n: int) -> np.ndarray:
    return np.array([params[f"x{i}"] for i in range(n)], dtype=float)


def _box(n: int, low: float, high: float) -> dict[str, Any]:
    return {f"x{i}": Real(low, high) for i in range(n)}


def branin(p: dict[str, Any]) -> float:
    x1, x2 = p["x0"], p["x1"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict[str, Any]) -> float:
    x = _vector(p, 6)
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


def ackley(p: dict[str, Any], n: int = 5) -> float:
    x = _vector(p, n)
    return float(-20 * np.exp(-0.2 * np.sqrt(np.mean(x**2))) - np.exp(np.mean(np.cos(2 * np.pi * x))) + 20 + np.e)


def levy(p: dict[str, Any], n: int = 4) -> float:
    w = 1 + (_vector(p, n) - 1) / 4
    head = np.sin(np.pi * w[0]) ** 2
    mid = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2)
    return float(head + mid + tail)


def rosenbrock(p: dict[str, Any], n: int = 4) -> float:
    x = _vector(p, n)
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def styblinski_tang(p: dict[str, Any], n: int = 4) -> float:
    x = _vector(p, n)
    return float(0.5 * np.sum(x**4 - 16 * x**2 + 5 * x))


# A "validation loss" over a typical training configuration: the best learning rate
# depends on the optimiser and on the batch size (larger batches like larger rates),
# depth has a sweet spot, and each optimiser has its own floor.
_OPTIMISERS = {"sgd": (-1.6, 0.12), "adam": (-3.1, 0.0), "rmsprop": (-3.4, 0.06)}


def mixed_hparams(p: dict[str, Any]) -> float:
    log_lr = math.log10(p["lr"])
    log_bs = math.log2(p["batch_size"])
    centre, floor = _OPTIMISERS[p["optimizer"]]
    best_lr = centre + 0.25 * (log_bs - 6.0)
    loss = 0.15 + floor
    loss += 0.35 * (log_lr - best_lr) ** 2
    loss += 0.04 * (log_bs - 6.6) ** 2
    loss += 0.03 * (p["layers"] - 4) ** 2 + 0.01 * abs(p["layers"] - 4) * abs(log_lr - best_lr)
    return loss


_MIXED = {
    "lr": Real(1e-5, 1e-1, log=True),
    "batch_size": Integer(16, 512, log=True),
    "layers": Integer(1, 8),
    "optimizer": Categorical(["sgd", "adam", "rmsprop"]),
}


def _mixed_optimum() -> float:
    # The lr term vanishes at best_lr (always inside the lr range here): enumerate the rest.
    best = math.inf
    for bs in range(16, 513):
        for opt in _OPTIMISERS:
            for layers in range(1, 9):
                centre, _ = _OPTIMISERS[opt]
                lr = 10 ** (centre + 0.25 * (math.log2(bs) - 6.0))
                best = min(best, mixed_hparams({"lr": lr, "batch_size": bs, "layers": layers, "optimizer": opt}))
    return best


# Hartmann-6 hidden in 50 dimensions: these 6 columns matter, the other 44 do not.
_H6_IN_50 = (3, 11, 19, 27, 35, 43)


def hartmann6_in_50(p: dict[str, Any]) -> float:
    return hartmann6({f"x{i}": p[f"x{j}"] for i, j in enumerate(_H6_IN_50)})


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in [
        Problem("branin", {"x0": Real(-5.0, 10.0), "x1": Real(0.0, 15.0)}, branin, 0.397887357729739),
        Problem("hartmann6", _box(6, 0.0, 1.0), hartmann6, -3.322368011391339),
        Problem("ackley5", _box(5, -32.768, 32.768), ackley, 0.0),
        Problem("levy4", _box(4, -10.0, 10.0), levy, 0.0),
        Problem("rosenbrock4", _box(4, -5.0, 10.0), rosenbrock, 0.0),
        Problem("styblinski_tang4", _box(4, -5.0, 5.0), styblinski_tang, -39.16616570377142 * 4),
        Problem("mixed", _MIXED, mixed_hparams, _mixed_optimum()),
        Problem("mixed_noisy", _MIXED, mixed_hparams, _mixed_optimum(), noise_std=0.05),
        # High-dimensional set (run at a budget of 100).
        Problem("ackley20", _box(20, -32.768, 32.768), partial(ackley, n=20), 0.0),
        Problem("rosenbrock20", _box(20, -5.0, 10.0), partial(rosenbrock, n=20), 0.0),
        Problem("levy30", _box(30, -10.0, 10.0), partial(levy, n=30), 0.0),
        Problem("hartmann6_in_50", _box(50, 0.0, 1.0), hartmann6_in_50, -3.322368011391339),
    ]
}

# Named sets for ``bo_suite --problems``: the public low-dimensional suite and the
# high-dimensional one.
PROBLEM_SETS: dict[str, list[str]] = {
    "public": ["branin", "hartmann6", "ackley5", "levy4", "rosenbrock4", "styblinski_tang4", "mixed", "mixed_noisy"],
    "highdim": ["ackley20", "rosenbrock20", "levy30", "hartmann6_in_50"],
}
