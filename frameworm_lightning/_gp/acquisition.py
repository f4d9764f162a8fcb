"""Acquisition functions: ``nn.Module``s that score candidate points under a GP posterior.

Every acquisition here *maximises*: the sampler turns a minimised objective into a
maximised one before fitting, so "improvement" always means a larger standardised
target. Each module maps points ``X`` of shape ``(b, d)`` (or one point ``(d,)``) to
scores of shape ``(b,)``; constants are buffers, inputs are normalised in
:meth:`AcquisitionFunction.posterior`.

Notations:
    mean, var: the posterior mean and variance of the latent function, shape ``(b,)``.
    sigma: ``sqrt(var)``.
    best_f: the incumbent (the best posterior mean at an evaluated or pending point).
    z: ``(mean - best_f) / sigma``, shape ``(b,)``.
    h(z): ``phi(z) + z * Phi(z)``, so that ``EI = sigma * h(z)``.

Names (``ACQUISITIONS``):
    ``ei``: expected improvement; ``logei``: its logarithm, computed stably so that its
    gradient does not vanish far from the incumbent (Ament et al., 2023); ``pi``: the
    probability of improving by at least ``xi`` (scored as ``log PI``, which ranks the same);
    ``ucb``/``lcb``: the optimistic confidence bound ``mean + sqrt(beta) * sigma`` (the
    upper bound of the maximised target is the lower bound of a minimised objective, so
    the two names are one function); ``hedge``: a GP-Hedge portfolio of ``logei``,
    ``pi`` and ``ucb`` (Hoffman et al., 2011), run by the sampler.

Per unit of cost (:class:`CostWeighted`, ``COST_AWARE``): an improvement acquisition
divided by the predicted cost raised to ``exponent``, ``EI(x) / c(x)^exponent`` (with
``exponent = 1``, expected improvement per second, Snoek et al., 2012), where ``log c`` is
the posterior mean of a GP fitted on the log costs of the evaluated points.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from frameworm_lightning._gp.gp import DTYPE, GPPosterior

__all__ = [
    "ACQUISITIONS",
    "HEDGE_ARMS",
    "COST_AWARE",
    "AcquisitionFunction",
    "CostWeighted",
    "ExpectedImprovement",
    "FixedColumns",
    "LogExpectedImprovement",
    "ProbabilityOfImprovement",
    "TrustRegion",
    "UpperConfidenceBound",
    "build_acquisition",
    "hedge_probabilities",
    "log_h",
    "validate_acquisition",
]

ACQUISITIONS = ("ei", "logei", "pi", "ucb", "lcb", "hedge")
HEDGE_ARMS = ("logei", "pi", "ucb")
#: The acquisitions that can be weighed by cost: those that score an improvement (positive).
COST_AWARE = ("ei", "logei", "pi")
# PI's default margin: a tenth of the (standardised) spread of the observed values.
PI_XI = 0.1

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_PI_OVER_2 = 0.5 * math.log(math.pi / 2)
# Below this z the asymptotic expansion of log h(z) is exact to float64 precision.
_ASYMPTOTIC_Z = -1e4


def validate_acquisition(name: object) -> str:
    """Return the canonical acquisition name; raise ``ValueError`` listing the valid names."""
    key = name.lower() if isinstance(name, str) else name
    if key == "gp_hedge":
        key = "hedge"
    if key not in ACQUISITIONS:
        valid = ", ".join(map(repr, ACQUISITIONS))
        raise ValueError(f"acquisition must be one of {valid}, but got acquisition={name!r}.")
    return key  # type: ignore[return-value]


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(a))`` for ``a < 0``, accurate at both ends (Mächler, 2012)."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def log_h(z: torch.Tensor) -> torch.Tensor:
    """``log(phi(z) + z * Phi(z))``, finite with finite autograd gradients for every finite ``z``.

    Three regions, each evaluated on inputs clamped into it so that no branch produces a
    non-finite value (or gradient) that ``torch.where`` would have to discard: directly
    for ``z > -1``; through ``erfcx`` and ``log1mexp`` for ``-1e4 < z <= -1`` (as BoTorch's
    ``_log_ei_helper``, after Ament et al., 2023); the asymptote ``log phi(z) - 2 log(-z)``
    below.
    """
    if bool((z > -1.0).all()):  # the usual case near the incumbent: one short graph to differentiate
        return _log_h_direct(z)
    log_phi = -0.5 * z * z - _LOG_SQRT_2PI
    # h = phi(z) * (1 - sqrt(pi/2) * (-z) * erfcx(-z / sqrt(2))), the bracket via log1mexp.
    z_mid = z.clamp(_ASYMPTOTIC_Z, -1.0)
    a = torch.log(-z_mid) + torch.log(torch.special.erfcx(-z_mid / math.sqrt(2.0))) + _LOG_SQRT_PI_OVER_2
    middle = log_phi + _log1mexp(a)
    tail = log_phi - 2.0 * torch.log(-z.clamp_max(_ASYMPTOTIC_Z))
    return torch.where(z > -1.0, _log_h_direct(z.clamp_min(-1.0)), torch.where(z > _ASYMPTOTIC_Z, middle, tail))


def _log_h_direct(z: torch.Tensor) -> torch.Tensor:
    """``log h(z)`` evaluated as written: accurate for ``z > -1`` (no cancellation there)."""
    return torch.log(torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) + z * torch.special.ndtr(z))


class AcquisitionFunction(torch.nn.Module):
    """Scores points under a posterior; subclasses implement :meth:`forward`.

    Every score is one torch expression of the posterior mean and standard deviation;
    the optimiser differentiates it by autograd.

    Args:
        posterior: a fitted :class:`~frameworm_lightning._gp.gp.GPPosterior`.
    """

    def __init__(self, posterior: GPPosterior) -> None:
        super().__init__()
        self.gp = posterior

    def posterior(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation at ``X`` of shape ``(b, d)`` or ``(d,)``; each ``(b,)``."""
        X = torch.as_tensor(X, dtype=DTYPE)
        if X.dim() == 1:
            X = X.unsqueeze(0)
        mean, var = self.gp(X)
        return mean, var.sqrt()


class _Improvement(AcquisitionFunction):
    def __init__(self, posterior: GPPosterior, best_f: float | torch.Tensor) -> None:
        super().__init__(posterior)
        best = torch.as_tensor(best_f, dtype=DTYPE).reshape(())
        if not bool(torch.isfinite(best)):
            raise ValueError(f"best_f must be finite, but got best_f={float(best)!r}.")
        self.register_buffer("best_f", best)

    def _z(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, sigma = self.posterior(X)
        return (mean - self.best_f) / sigma, sigma


class ExpectedImprovement(_Improvement):
    """``E[max(f(x) - best_f, 0)] = sigma * h(z)``.

    Example:
        >>> import torch
        >>> from frameworm_lightning._gp.gp import GPModel, GPPosterior
        >>> X = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        >>> model = GPModel(X, torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([False]))
        >>> ei = ExpectedImprovement(GPPosterior.from_model(model), best_f=1.0)
        >>> bool(ei(torch.tensor([[0.9]])) > ei(torch.tensor([[0.1]])))
        True
    """

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        z, sigma = self._z(X)
        return sigma * torch.exp(log_h(z))


class LogExpectedImprovement(_Improvement):
    """``log EI = log h(z) + log sigma``: the same ranking as EI, with useful gradients everywhere."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        z, sigma = self._z(X)
        return log_h(z) + torch.log(sigma)


class ProbabilityOfImprovement(_Improvement):
    """``log P[f(x) > best_f + xi] = log Phi(z - xi / sigma)`` (the log keeps gradients alive).

    Args:
        posterior: the GP posterior.
        best_f: the incumbent.
        xi: the improvement that counts, ``>= 0``. Without it PI prefers a sure
            infinitesimal gain next to the incumbent to any real chance elsewhere.
    """

    def __init__(self, posterior: GPPosterior, best_f: float | torch.Tensor, xi: float = 0.0) -> None:
        super().__init__(posterior, best_f)
        if not (isinstance(xi, (int, float)) and math.isfinite(xi) and xi >= 0):
            raise ValueError(f"xi must be a finite number >= 0, but got xi={xi!r}.")
        self.register_buffer("xi", torch.tensor(float(xi), dtype=DTYPE))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        z, sigma = self._z(X)
        return torch.special.log_ndtr(z - self.xi / sigma)


class UpperConfidenceBound(AcquisitionFunction):
    """``mean + sqrt(beta) * sigma``: larger ``beta`` explores more.

    Args:
        posterior: the GP posterior.
        beta: the exploration weight, ``>= 0``.
    """

    def __init__(self, posterior: GPPosterior, beta: float) -> None:
        super().__init__(posterior)
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, but got beta={beta!r}.")
        self.register_buffer("sqrt_beta", torch.tensor(math.sqrt(beta), dtype=DTYPE))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        mean, sigma = self.posterior(X)
        return mean + self.sqrt_beta * sigma


class CostWeighted(AcquisitionFunction):
    """``acquisition(x) / c(x) ** exponent``: improvement per unit of predicted cost.

    ``log c(x) = log_cost.mean(x) * cost_scale`` up to a constant (a constant factor of the
    cost changes no ranking). For a log-scale acquisition (``logei``, ``pi``, scored as
    logarithms) the division is the subtraction ``exponent * log c(x)``; for ``ei`` it is
    a division.

    Args:
        acquisition: an improvement acquisition (:data:`COST_AWARE`).
        log_cost: the posterior of a GP fitted on standardised log costs.
        cost_scale: the standard deviation of the log costs the GP was standardised with.
        exponent: the weight of the cost, ``> 0`` (1: improvement per unit of cost).
        log_scale: whether ``acquisition`` scores logarithms.

    Example:
        >>> import torch
        >>> from frameworm_lightning._gp.gp import GPModel, GPPosterior
        >>> X = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        >>> flat = GPPosterior.from_model(GPModel(X, torch.tensor([0.0, 0.0], dtype=torch.float64),
        ...                                       torch.tensor([False])))
        >>> slow_right = GPPosterior.from_model(GPModel(X, torch.tensor([-1.0, 1.0], dtype=torch.float64),
        ...                                             torch.tensor([False])))
        >>> ei = ExpectedImprovement(flat, best_f=0.0)  # the same EI everywhere
        >>> per_cost = CostWeighted(ei, slow_right, cost_scale=1.0, exponent=1.0, log_scale=False)
        >>> bool(per_cost(torch.tensor([[0.0]])) > per_cost(torch.tensor([[1.0]])))
        True
    """

    def __init__(self, acquisition: AcquisitionFunction, log_cost: GPPosterior, cost_scale: float, exponent: float,
                 log_scale: bool) -> None:
        super().__init__(acquisition.gp)
        if not (isinstance(exponent, (int, float)) and math.isfinite(exponent) and exponent > 0):
            raise ValueError(f"exponent must be a finite number > 0, but got exponent={exponent!r}.")
        if not (math.isfinite(cost_scale) and cost_scale >= 0):
            raise ValueError(f"cost_scale must be a finite number >= 0, but got cost_scale={cost_scale!r}.")
        self.acquisition = acquisition
        self.log_cost = log_cost.requires_grad_(False)
        self.log_scale = log_scale
        self.register_buffer("weight", torch.tensor(float(exponent) * float(cost_scale), dtype=DTYPE))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(X, dtype=DTYPE)
        if X.dim() == 1:
            X = X.unsqueeze(0)
        penalty = self.weight * self.log_cost(X)[0]
        score = self.acquisition(X)
        return score - penalty if self.log_scale else score * torch.exp(-penalty)


class FixedColumns(AcquisitionFunction):
    """``acquisition([x, tail])``: scores points of the free columns, the last columns held at ``tail``.

    The GP takes ``d + c`` inputs, the last ``c`` a context the search does not choose (the
    training resource of a GP over configuration x fidelity); the optimiser searches the
    ``d`` free columns, and every point it scores, shape ``(b, d)``, is completed with
    ``tail``, shape ``(c,)``.

    Args:
        acquisition: an acquisition over ``d + c`` columns.
        tail: the model values of the ``c`` fixed columns.

    Example:
        >>> import torch
        >>> from frameworm_lightning._gp.gp import GPModel, GPPosterior
        >>> X = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # columns: x, resource
        >>> gp = GPPosterior.from_model(GPModel(X, torch.tensor([0.0, 1.0], dtype=torch.float64),
        ...                                     torch.tensor([False, False])))
        >>> ucb = UpperConfidenceBound(gp, beta=0.0)
        >>> at_top = FixedColumns(ucb, [1.0])
        >>> bool(torch.allclose(at_top(torch.tensor([[0.3]])), ucb(torch.tensor([[0.3, 1.0]]))))
        True
    """

    def __init__(self, acquisition: AcquisitionFunction, tail: np.ndarray | list[float]) -> None:
        super().__init__(acquisition.gp)
        self.acquisition = acquisition
        self.register_buffer("tail", torch.as_tensor(np.asarray(tail, dtype=float), dtype=DTYPE).reshape(-1))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(X, dtype=DTYPE)
        if X.dim() == 1:
            X = X.unsqueeze(0)
        return self.acquisition(torch.cat([X, self.tail.expand(X.shape[0], -1)], dim=-1))


class TrustRegion(AcquisitionFunction):
    """``acquisition(x) - weight * sum(relu(|x - centre| - half_width)^2)``: a box around ``centre``.

    The score outside the box ``|x_i - centre_i| <= half_width_i`` (over the ``mask``
    columns, the continuous ones; discrete columns are not confined) drops quadratically
    with the distance to it, steeply enough (``weight = 1e4``) that a local search started
    anywhere ends inside, and smoothly, so that L-BFGS-B's gradients stay finite. The
    sampler confines suggestions made while trials are pending to a box around the best
    evaluated point (TuRBO's trust region, Eriksson et al., 2019, with a fixed side):
    the other workers already explore, the extra ones refine.

    Args:
        acquisition: any acquisition over the same columns.
        centre: the box's centre, shape ``(d,)``.
        half_width: its half side per column, shape ``(d,)`` (``>= 0``).
        mask: the columns confined, shape ``(d,)`` (booleans).

    Example:
        >>> import torch
        >>> from frameworm_lightning._gp.gp import GPModel, GPPosterior
        >>> X = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        >>> gp = GPPosterior.from_model(GPModel(X, torch.tensor([0.0, 1.0], dtype=torch.float64),
        ...                                     torch.tensor([False])))
        >>> ucb = UpperConfidenceBound(gp, beta=0.0)  # the posterior mean: best at x = 1
        >>> near_zero = TrustRegion(ucb, [0.0], [0.2], [True])
        >>> bool(near_zero(torch.tensor([[0.2]])) > near_zero(torch.tensor([[1.0]])))
        True
    """

    def __init__(self, acquisition: AcquisitionFunction, centre: np.ndarray | list[float],
                 half_width: np.ndarray | list[float], mask: np.ndarray | list[bool], weight: float = 1e4) -> None:
        super().__init__(acquisition.gp)
        self.acquisition = acquisition
        self.register_buffer("centre", torch.as_tensor(np.asarray(centre, dtype=float), dtype=DTYPE).reshape(-1))
        half = np.asarray(half_width, dtype=float).reshape(-1)
        if half.shape != self.centre.shape or not np.all(half >= 0):
            raise ValueError(f"half_width must be {self.centre.shape[0]} numbers >= 0, but got {half.tolist()!r}.")
        self.register_buffer("half_width", torch.as_tensor(half, dtype=DTYPE))
        self.register_buffer("mask", torch.as_tensor(np.asarray(mask, dtype=bool)).reshape(-1).to(DTYPE))
        self.weight = float(weight)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        X = torch.as_tensor(X, dtype=DTYPE)
        if X.dim() == 1:
            X = X.unsqueeze(0)
        excess = torch.relu((X - self.centre).abs() - self.half_width) * self.mask
        return self.acquisition(X) - self.weight * (excess**2).sum(-1)


def build_acquisition(
    name: str, posterior: GPPosterior, best_f: float, beta: float, xi: float = PI_XI
) -> AcquisitionFunction:
    """The acquisition module called ``name`` (not ``hedge``: the sampler runs the portfolio).

    ``beta`` weighs ``ucb``/``lcb``; ``xi`` is ``pi``'s improvement margin (standardised units).
    """
    key = validate_acquisition(name)
    if key == "ei":
        return ExpectedImprovement(posterior, best_f)
    if key == "logei":
        return LogExpectedImprovement(posterior, best_f)
    if key == "pi":
        return ProbabilityOfImprovement(posterior, best_f, xi)
    if key in ("ucb", "lcb"):
        return UpperConfidenceBound(posterior, beta)
    raise ValueError(f"acquisition {name!r} is a portfolio, not a single function; use one of {HEDGE_ARMS}.")


def hedge_probabilities(gains: np.ndarray, eta: float) -> np.ndarray:
    """GP-Hedge's choice probabilities ``softmax(eta * gains)``, shape ``(arms,)``."""
    logits = eta * (np.asarray(gains, dtype=float) - np.max(gains))
    p = np.exp(logits)
    return p / p.sum()
