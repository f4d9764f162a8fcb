"""Maximising an acquisition function over a mixed space.

1. Raw candidates: a scrambled Sobol sample of the unit cube (plus any extra starts, such
   as the best evaluated points), moved onto admissible discrete values and scored in
   one batched call.
2. The best few become starts of a local search that alternates, for all starts at once
   (then for the best start alone, to polish it):
   * L-BFGS-B over the continuous columns (one scipy call on the stacked starts, whose
     objective is the sum of the per-start values, so the gradients stay separate);
   * an exact coordinate search over each discrete column: every admissible value of
     the column (a window of values for very large integers) is scored and the best is
     kept.
   It stops when a round changes no discrete value.
3. A space whose every column is discrete and that has at most ``max_enumerate``
   configurations is scored exhaustively instead.

Notations:
    d: the number of columns; B: the number of starts; k: the values of one column.
    X: candidates in the model encoding (see :mod:`frameworm_lightning._gp.encoding`),
       shape ``(B, d)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import torch

from frameworm_lightning._gp.encoding import ModelEncoding, sobol_points
from frameworm_lightning._gp.gp import DTYPE

__all__ = ["OptimResult", "evaluate", "optimize_acquisition"]

_CHUNK = 4096
# Integers with more values than this are searched over a window around the current value.
_MAX_FULL_COLUMN = 256
_WINDOW = 32
# L-BFGS-B stops when the acquisition (a log-scale score for logei/pi) improves by less than
# this, relatively: finer than that never changes which point is suggested.
_FTOL = 1e-7
# ... or when no coordinate's gradient exceeds this (a move of 0.01 in the unit cube would
# change the score by less than 1e-5).
_GTOL = 1e-3


@dataclass(frozen=True)
class OptimResult:
    """Candidates in the model encoding ``(m, d)`` and their scores ``(m,)``, best first.

    The local-search optima come first, then the raw candidates: a caller that must skip
    a point (already evaluated) takes the next one.
    """

    X: np.ndarray
    values: np.ndarray


def evaluate(acqf: Callable[[torch.Tensor], torch.Tensor], X: np.ndarray) -> np.ndarray:
    """Scores of ``X`` (m, d) without gradients, in chunks; non-finite scores become ``-inf``."""
    out = []
    with torch.no_grad():
        for i in range(0, len(X), _CHUNK):
            out.append(acqf(torch.as_tensor(X[i : i + _CHUNK], dtype=DTYPE)).numpy())
    values = np.concatenate(out) if out else np.zeros(0)
    return np.where(np.isfinite(values), values, -np.inf)


def _top_unique(encoding: ModelEncoding, X: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    seen: set[Any] = set()
    chosen: list[int] = []
    keys = encoding.key(X[order])
    for i, key in zip(order, keys):
        if key not in seen:
            seen.add(key)
            chosen.append(int(i))
            if len(chosen) == k:
                break
    return np.array(chosen, dtype=int)


def _continuous_step(
    acqf: Callable[[torch.Tensor], torch.Tensor], X: np.ndarray, cont: np.ndarray, maxiter: int
) -> tuple[np.ndarray, bool]:
    """L-BFGS-B over the continuous columns of all rows of ``X`` at once; also whether it converged."""
    B, dc = X.shape[0], int(cont.sum())
    base = torch.as_tensor(X, dtype=DTYPE)
    cont_idx = torch.as_tensor(np.flatnonzero(cont))

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        xc = torch.as_tensor(v, dtype=DTYPE).reshape(B, dc).requires_grad_(True)
        values = acqf(base.index_copy(1, cont_idx, xc))
        finite = torch.isfinite(values)
        total = -torch.where(finite, values, torch.zeros_like(values)).sum()
        (grad,) = torch.autograd.grad(total, xc)
        grad = grad.reshape(-1).numpy()
        return float(total.detach()), np.where(np.isfinite(grad), grad, 0.0)

    x0 = X[:, cont].reshape(-1)
    res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * x0.size,
                                  options={"maxiter": maxiter, "ftol": _FTOL, "gtol": _GTOL})
    out = X.copy()
    out[:, cont] = np.clip(res.x, 0.0, 1.0).reshape(B, dc)
    return out, res.nit < maxiter


def _discrete_step(
    acqf: Callable[[torch.Tensor], torch.Tensor], encoding: ModelEncoding, X: np.ndarray
) -> tuple[np.ndarray, bool]:
    X = X.copy()
    changed = False
    for j in encoding.discrete_columns:
        values = encoding.discrete_values(j)
        if len(values) < 2:
            continue
        if len(values) <= _MAX_FULL_COLUMN:
            options = np.broadcast_to(values, (X.shape[0], len(values)))
        else:
            centre = np.searchsorted(values, X[:, j]).clip(0, len(values) - 1)
            idx = (centre[:, None] + np.arange(-_WINDOW, _WINDOW + 1)[None, :]).clip(0, len(values) - 1)
            options = values[idx]
        B, k = options.shape
        trial = np.repeat(X, k, axis=0)
        trial[:, j] = options.reshape(-1)
        scores = evaluate(acqf, trial).reshape(B, k)
        best = options[np.arange(B), np.argmax(scores, axis=1)]
        current = evaluate(acqf, X)
        improved = scores.max(axis=1) > current + 1e-12
        if improved.any():
            X[improved, j] = best[improved]
            changed = True
    return X, changed


def optimize_acquisition(
    acqf: Callable[[torch.Tensor], torch.Tensor],
    encoding: ModelEncoding,
    seed: Any,
    *,
    n_raw: int = 1024,
    n_starts: int = 8,
    maxiter: int = 30,
    n_rounds: int = 3,
    extra_starts: np.ndarray | None = None,
    max_enumerate: int = 4096,
) -> OptimResult:
    """Maximise ``acqf`` over the admissible points of ``encoding``.

    Args:
        acqf: maps model points ``(b, d)`` to scores ``(b,)``, differentiable in the
            continuous columns.
        encoding: the model encoding of the search space.
        seed: seeds the Sobol raw candidates (an int or a numpy ``Generator``).
        n_raw: the number of raw Sobol candidates.
        n_starts: the number of local searches.
        maxiter: the L-BFGS-B iteration cap of each continuous step (the stacked starts
            share it, then the best start is polished alone with the same cap).
        n_rounds: the most continuous/discrete alternations.
        extra_starts: more raw candidates in the model encoding, shape ``(m, d)``.
        max_enumerate: score every configuration of an all-discrete space up to this size.
    """
    for name, value in (("n_raw", n_raw), ("n_starts", n_starts), ("maxiter", maxiter), ("n_rounds", n_rounds)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, but got {name}={value!r}.")
    n_configs = encoding.n_configurations
    if n_configs is not None and n_configs <= max_enumerate:
        X_all = encoding.all_configurations()
        values = evaluate(acqf, X_all)
        order = np.argsort(-values, kind="stable")
        return OptimResult(X_all[order], values[order])

    X_raw = encoding.to_model(sobol_points(n_raw, encoding.dim, seed))
    if extra_starts is not None and len(extra_starts):
        X_raw = np.concatenate([encoding.snap(extra_starts), X_raw])
    raw_values = evaluate(acqf, X_raw)
    X = X_raw[_top_unique(encoding, X_raw, raw_values, n_starts)]

    cont = encoding.continuous_mask
    converged = True
    for _ in range(n_rounds):
        if cont.any():
            X_cont, converged = _continuous_step(acqf, X, cont, maxiter)
            X = encoding.snap(X_cont)
        X, changed = _discrete_step(acqf, encoding, X)
        if not changed:
            break

    values = evaluate(acqf, X)
    if cont.any() and not converged:
        # The joint search stops when the slowest start runs out of iterations; polish the
        # best one alone, which converges in a few more.
        best = int(np.argmax(values))
        polished = encoding.snap(_continuous_step(acqf, X[best : best + 1], cont, maxiter)[0])
        polished_value = evaluate(acqf, polished)[0]
        if polished_value > values[best]:
            X[best], values[best] = polished[0], polished_value
    order = np.argsort(-values, kind="stable")
    raw_order = np.argsort(-raw_values, kind="stable")
    return OptimResult(
        np.concatenate([X[order], X_raw[raw_order]]), np.concatenate([values[order], raw_values[raw_order]])
    )
