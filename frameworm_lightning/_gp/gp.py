"""The Gaussian-process surrogate: a GPyTorch exact GP, its fit, and a cached posterior.

The model is a GPyTorch ``ExactGP`` with a zero mean (outputs are standardised) and a
scaled Matérn-5/2 kernel with one lengthscale per column. Continuous and integer columns
enter through the usual scaled distance; a categorical column adds ``1 / lengthscale^2``
when two points hold different choices, so the kernel never assumes an order between
choices (a Hamming-distance kernel, in the style of CoCaBO/Optuna).

Priors (in standardised output units):

* lengthscales: ``LogNormal(log(0.7 * sqrt(d)), 0.7)``, a dimension-scaled prior in the
  spirit of Hvarfner et al. (2024, "Vanilla Bayesian optimization performs great in high
  dimensions"), narrower than theirs (see :func:`dim_scaled_lengthscale_prior`);
* output scale: ``Gamma(2, 1)`` (mode 1: the standardised variance);
* noise variance: ``Gamma(1.1, 20)`` above a floor of ``1e-6``, so deterministic
  objectives are fitted almost exactly while noisy ones learn their noise.

Hyperparameters are fitted by maximising the marginal likelihood plus the log prior
(a MAP fit) with scipy's L-BFGS-B on the raw (unconstrained) parameters and torch
autograd gradients, from one or several starting points. Everything runs in float64.

Notations:
    n: the number of training points; d: the number of columns; b: a batch of points.
    X_train: training inputs in the model encoding, shape ``(n, d)``.
    y_train: standardised training targets (to be maximised), shape ``(n,)``.
    X: points where the posterior is evaluated, shape ``(b, d)``.
    L: the lower Cholesky factor of ``K(X_train, X_train) + noise * I``, shape ``(n, n)``.
    alpha: ``(K + noise * I)^-1 y_train``, shape ``(n,)``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gpytorch
import numpy as np
import scipy.linalg
import scipy.optimize
import torch
from gpytorch.constraints import GreaterThan
from gpytorch.priors import GammaPrior, LogNormalPrior

__all__ = [
    "DTYPE",
    "FitResult",
    "GPModel",
    "GPNumericalError",
    "GPPosterior",
    "MixedMatern52Kernel",
    "fit_gp",
    "matern52",
    "matern52_from_terms",
    "pairwise_terms",
    "robust_cholesky",
    "standardize",
    "torch_threads",
    "warp_targets",
]

DTYPE = torch.float64
NOISE_FLOOR = 1e-6
MIN_LENGTHSCALE = 0.025
# Every hyperparameter is ``lower + exp(raw)``: L-BFGS-B then moves scales in log space,
# where tiny noise variances and long lengthscales are as easy to reach as moderate ones.
# The fit keeps ``exp(raw)`` within these bounds.
_LENGTHSCALE_RANGE = (1e-3, 1e2)
_OUTPUTSCALE_RANGE = (1e-2, 1e2)
_NOISE_RANGE = (1e-9, 10.0)


def _log_constraint(lower: float) -> GreaterThan:
    return GreaterThan(lower, transform=torch.exp, inv_transform=torch.log)
_JITTERS = (0.0, 1e-8, 1e-6, 1e-4)
# The fit stops when the loss (in nats per point) improves by less than this, relatively:
# hyperparameters more precise than that do not change a suggestion.
_FIT_FTOL = 1e-6


class GPNumericalError(RuntimeError):
    """The kernel matrix could not be factorised, or the fit produced non-finite values."""


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads and ``n`` BLAS threads, then restore both.

    The matrices here are small (a few hundred rows) and the work is many small calls:
    torch's OpenMP threads and OpenBLAS's threads (used by scipy's L-BFGS-B) then contend
    for the same cores, which can make a suggestion several times slower. BLAS threads
    are limited through ``threadpoolctl`` when it is installed (it comes with
    scikit-learn); without it only torch is limited.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with _blas_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


_CONTROLLER: list[Any] = []  # the threadpoolctl controller, found once (finding the libraries is slow)


def _blas_limits(n: int) -> contextlib.AbstractContextManager[object]:
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: only a speed-up
            _CONTROLLER.append(None)
        else:
            _CONTROLLER.append(ThreadpoolController())
    controller = _CONTROLLER[0]
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=n, user_api="blas")  # type: ignore[no-any-return]


def pairwise_terms(x1: torch.Tensor, x2: torch.Tensor, categorical_mask: torch.Tensor) -> torch.Tensor:
    """Per-column distance terms: squared differences, or ``1`` where two choices differ.

    Args:
        x1: shape ``(..., n, d)``.
        x2: shape ``(..., m, d)``.
        categorical_mask: bool, shape ``(d,)``: columns compared for equality only.

    Returns:
        Shape ``(..., n, m, d)``. The squared scaled distance is ``terms @ lengthscale**-2``;
        computing the terms once per fit turns every kernel evaluation into one matmul.
    """
    diff = x1.unsqueeze(-2) - x2.unsqueeze(-3)
    if not bool(categorical_mask.any()):
        return diff.square()
    return torch.where(categorical_mask, (diff != 0).to(diff.dtype), diff.square())


def matern52_from_terms(terms: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """The unit-variance Matérn-5/2 kernel from :func:`pairwise_terms` ``(..., n, m, d)``; ``(..., n, m)``."""
    sqd = terms @ lengthscale.pow(-2)
    # sqrt has an infinite derivative at 0; the clamp keeps gradients finite on the diagonal.
    r = torch.sqrt(5.0 * sqd.clamp_min(1e-36))
    return (1.0 + r + r.square() / 3.0) * torch.exp(-r)


def _matern52_large_batch(
    x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor, categorical_mask: torch.Tensor
) -> torch.Tensor:
    """:func:`matern52` for many points without gradients: ``|a|^2 + |b|^2 - 2 a.b`` on the
    ordered columns (one matmul instead of an ``(n, m, d)`` tensor); ``(n, m)``."""
    cont = ~categorical_mask
    z1, z2 = x1[:, cont] / lengthscale[cont], x2[:, cont] / lengthscale[cont]
    sqd = (z1.square().sum(-1, keepdim=True) + z2.square().sum(-1) - 2.0 * z1 @ z2.T).clamp_min(0.0)
    if bool(categorical_mask.any()):
        terms = pairwise_terms(x1[:, categorical_mask], x2[:, categorical_mask], torch.ones(1, dtype=torch.bool))
        sqd = sqd + terms @ lengthscale[categorical_mask].pow(-2)
    r = torch.sqrt(5.0 * sqd)
    return (1.0 + r + r.square() / 3.0) * torch.exp(-r)


def matern52(
    x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor, categorical_mask: torch.Tensor
) -> torch.Tensor:
    """The unit-variance mixed Matérn-5/2 kernel.

    Args:
        x1: shape ``(..., n, d)``.
        x2: shape ``(..., m, d)``.
        lengthscale: shape ``(d,)``.
        categorical_mask: bool, shape ``(d,)``: columns compared for equality only.

    Returns:
        The kernel matrix, shape ``(..., n, m)``.
    """
    return matern52_from_terms(pairwise_terms(x1, x2, categorical_mask), lengthscale)


class MixedMatern52Kernel(gpytorch.kernels.Kernel):
    """A GPyTorch kernel: Matérn-5/2 on ordered columns, Hamming distance on categorical ones.

    Args:
        categorical_mask: bool, shape ``(d,)``.
        **kwargs: passed to :class:`gpytorch.kernels.Kernel` (priors, constraints).
    """

    has_lengthscale = True

    def __init__(self, categorical_mask: torch.Tensor, **kwargs: object) -> None:
        mask = torch.as_tensor(categorical_mask, dtype=torch.bool)
        super().__init__(ard_num_dims=int(mask.numel()), **kwargs)  # type: ignore[arg-type]
        self.register_buffer("categorical_mask", mask)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        if diag:
            return torch.ones(x1.shape[:-1], dtype=x1.dtype)
        return matern52(x1, x2, self.lengthscale.reshape(-1), self.categorical_mask)


def dim_scaled_lengthscale_prior(d: int) -> LogNormalPrior:
    """``LogNormal(log(0.7 * sqrt(d)), 0.7)``: lengthscales grow like ``sqrt(d)``.

    The ``sqrt(d)`` scaling is Hvarfner et al.'s (2024): in ``d`` dimensions distances
    between points grow like ``sqrt(d)``, so a lengthscale that keeps neighbours
    correlated must too. Their prior is much wider (``sigma = sqrt(3)``); with the tens
    of trials of a hyperparameter search a wide prior lets the fit explain a few points
    with very short lengthscales, after which the GP predicts nothing and the search
    turns random. A median of ``0.7 * sqrt(d)`` with ``sigma = 0.7`` keeps the model
    smooth unless the data insist.
    """
    return LogNormalPrior(loc=0.5 * math.log(max(d, 1)) + math.log(0.7), scale=0.7)


class GPModel(gpytorch.models.ExactGP):
    """An exact GP with the mixed Matérn-5/2 kernel and the priors of this module.

    Args:
        X_train: shape ``(n, d)``, float64.
        y_train: standardised targets, shape ``(n,)``, float64.
        categorical_mask: bool, shape ``(d,)``.
        noise_floor: the smallest noise variance the fit may reach.
    """

    def __init__(
        self,
        X_train: torch.Tensor,
        y_train: torch.Tensor,
        categorical_mask: torch.Tensor,
        noise_floor: float = NOISE_FLOOR,
    ) -> None:
        if not noise_floor > 0:
            raise ValueError(f"noise_floor must be positive, but got noise_floor={noise_floor!r}.")
        d = X_train.shape[-1]
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=GammaPrior(1.1, 20.0), noise_constraint=_log_constraint(noise_floor)
        )
        super().__init__(X_train, y_train, likelihood)
        self.noise_floor = float(noise_floor)
        self._dist_terms: torch.Tensor | None = None
        self._dist_terms_of: torch.Tensor | None = None
        self._prior_list: list[tuple[torch.nn.Module, object, object]] | None = None
        self.mean_module = gpytorch.means.ZeroMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            MixedMatern52Kernel(
                categorical_mask,
                lengthscale_prior=dim_scaled_lengthscale_prior(d),
                lengthscale_constraint=_log_constraint(MIN_LENGTHSCALE),
            ),
            outputscale_prior=GammaPrior(2.0, 1.0),
            outputscale_constraint=_log_constraint(0.0),
        )
        self.to(DTYPE)
        self.reset_hyperparameters()

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    # Hyperparameters ---------------------------------------------------------------------
    @property
    def d(self) -> int:
        return int(self.covar_module.base_kernel.categorical_mask.numel())

    def reset_hyperparameters(self) -> None:
        """The default start: lengthscales at their prior's mode, unit scale, small noise."""
        prior = dim_scaled_lengthscale_prior(self.d)
        mode = math.exp(float(prior.loc) - float(prior.scale) ** 2)
        self.set_hyperparameters(np.full(self.d, max(mode, 2 * MIN_LENGTHSCALE)), 1.0, 1e-3)

    def set_hyperparameters(self, lengthscale: np.ndarray, outputscale: float, noise: float) -> None:
        """Set the constrained values, clipped into the ranges the fit searches."""
        kernel = self.covar_module
        ls = np.clip(np.asarray(lengthscale, dtype=float) - MIN_LENGTHSCALE, *_LENGTHSCALE_RANGE) + MIN_LENGTHSCALE
        kernel.base_kernel.lengthscale = torch.as_tensor(ls, dtype=DTYPE).reshape(1, -1)
        kernel.outputscale = torch.as_tensor(float(np.clip(outputscale, *_OUTPUTSCALE_RANGE)), dtype=DTYPE)
        noise = float(np.clip(noise - self.noise_floor, *_NOISE_RANGE)) + self.noise_floor
        self.likelihood.noise = torch.as_tensor([noise], dtype=DTYPE)

    def raw_bounds(self) -> list[tuple[float, float]]:
        """L-BFGS-B bounds for each entry of :meth:`raw_vector`."""
        ranges = {"likelihood.noise_covar.raw_noise": _NOISE_RANGE,
                  "covar_module.raw_outputscale": _OUTPUTSCALE_RANGE,
                  "covar_module.base_kernel.raw_lengthscale": _LENGTHSCALE_RANGE}
        bounds: list[tuple[float, float]] = []
        for name, p in self.named_parameters():
            lo, hi = ranges[name]
            bounds += [(math.log(lo), math.log(hi))] * p.numel()
        return bounds

    def raw_vector(self) -> np.ndarray:
        """Every raw hyperparameter, flattened, shape ``(p,)``."""
        return torch.nn.utils.parameters_to_vector(self.parameters()).detach().numpy().copy()

    def load_raw_vector(self, vector: np.ndarray) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.as_tensor(vector, dtype=DTYPE), self.parameters())

    @property
    def lengthscale(self) -> torch.Tensor:
        """Shape ``(d,)``."""
        return self.covar_module.base_kernel.lengthscale.detach().reshape(-1)

    @property
    def outputscale(self) -> torch.Tensor:
        return self.covar_module.outputscale.detach()

    @property
    def noise(self) -> torch.Tensor:
        return self.likelihood.noise.detach().reshape(())

    def negative_log_posterior(self) -> torch.Tensor:
        """``-(log p(y | theta) + log p(theta)) / n``: the loss the fit minimises.

        The same quantity as GPyTorch's ``ExactMarginalLogLikelihood`` with the priors
        added (a test checks they agree), written on the kernel's distance terms (computed
        once per training set): about twice as fast for the small ``n`` of a search.
        """
        X, y = self.train_inputs[0], self.train_targets
        n = y.shape[0]
        if self._dist_terms is None or self._dist_terms_of is not X:
            self._dist_terms = pairwise_terms(X, X, self.covar_module.base_kernel.categorical_mask)
            self._dist_terms_of = X
        kernel = self.covar_module
        K = kernel.outputscale * matern52_from_terms(self._dist_terms, kernel.base_kernel.lengthscale.reshape(-1))
        L = robust_cholesky(K + self.likelihood.noise.reshape(()) * torch.eye(n, dtype=DTYPE))
        a = torch.linalg.solve_triangular(L, y.unsqueeze(-1), upper=False).squeeze(-1)
        nll = 0.5 * a.square().sum() + L.diagonal().log().sum() + 0.5 * n * math.log(2 * math.pi)
        if self._prior_list is None:
            self._prior_list = [(module, prior, closure) for _, module, prior, closure, _ in self.named_priors()]
        log_prior = sum(_log_prob(prior, closure(module)) for module, prior, closure in self._prior_list)
        return (nll - log_prior) / n


def _log_prob(prior: object, value: torch.Tensor) -> torch.Tensor:
    """``prior.log_prob(value).sum()``, in closed form for the priors used here.

    ``torch.distributions`` validates and transforms on every call, which made the priors
    a quarter of the cost of a marginal-likelihood evaluation.
    """
    if isinstance(prior, LogNormalPrior):
        loc, scale = prior.loc, prior.scale
        log_x = value.log()
        quad = (log_x - loc).square() / (2 * scale.square())
        return (-log_x - scale.log() - 0.5 * math.log(2 * math.pi) - quad).sum()
    if isinstance(prior, GammaPrior):
        a, b = prior.concentration, prior.rate
        return (a * b.log() - torch.lgamma(a) + (a - 1) * value.log() - b * value).sum()
    return prior.log_prob(value).sum()  # type: ignore[attr-defined]


def robust_cholesky(K: torch.Tensor) -> torch.Tensor:
    """The lower Cholesky factor of ``K`` (n, n), adding growing jitter if it is not positive definite.

    Raises:
        GPNumericalError: ``K`` is not finite, or not factorisable with the largest jitter.
    """
    if not bool(torch.isfinite(K).all()):
        raise GPNumericalError("the kernel matrix has non-finite entries.")
    scale = K.diagonal().mean().detach().clamp_min(1e-12)
    eye = torch.eye(K.shape[-1], dtype=K.dtype)
    for jitter in _JITTERS:
        L, info = torch.linalg.cholesky_ex(K + (jitter * scale) * eye if jitter else K)
        if int(info) == 0:
            return L
    raise GPNumericalError(f"the kernel matrix is not positive definite, even with jitter {_JITTERS[-1]:g}.")


@dataclass(frozen=True)
class FitResult:
    """The outcome of :func:`fit_gp`: the best raw hyperparameters found and their loss."""

    raw: np.ndarray
    loss: float
    n_evals: int


def fit_gp(model: GPModel, starts: Sequence[np.ndarray | None], maxiter: int = 100) -> FitResult:
    """Fit ``model``'s hyperparameters by L-BFGS-B from each start; keep the best.

    Args:
        model: the GP; on return it holds the best hyperparameters found.
        starts: raw hyperparameter vectors to start from; ``None`` means the model's
            current values.
        maxiter: the L-BFGS-B iteration cap of each start (the cost bound of a fit).

    Raises:
        GPNumericalError: no start gave a finite loss.
    """
    params = list(model.parameters())
    current = model.raw_vector()
    best_raw, best_loss, n_evals = None, math.inf, 0

    def loss_and_grad(v: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal best_raw, best_loss, n_evals
        n_evals += 1
        model.load_raw_vector(v)
        for p in params:
            p.grad = None
        try:
            loss = model.negative_log_posterior()
            loss.backward()
        except GPNumericalError:
            return 1e10, np.zeros_like(v)
        value = float(loss.detach())
        grad = torch.cat([p.grad.reshape(-1) for p in params]).numpy()
        if not (math.isfinite(value) and np.isfinite(grad).all()):
            return 1e10, np.zeros_like(v)
        if value < best_loss:
            best_loss, best_raw = value, v.copy()
        return value, grad

    model.train()
    bounds = model.raw_bounds()
    lo, hi = np.array(bounds).T
    for start in starts:
        x0 = np.clip(current if start is None else np.asarray(start, dtype=float), lo, hi)
        scipy.optimize.minimize(loss_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                options={"maxiter": maxiter, "ftol": _FIT_FTOL})
    if best_raw is None:
        model.load_raw_vector(current)
        raise GPNumericalError("the GP fit found no hyperparameters with a finite marginal likelihood.")
    model.load_raw_vector(best_raw)
    model.eval()
    return FitResult(best_raw, best_loss, n_evals)


_YJ_LAMBDAS = np.round(np.arange(-2.0, 4.0 + 1e-9, 0.05), 2)[:, None]  # (k, 1)


def _yeo_johnson(z: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """The Yeo-Johnson transform of ``z`` (n,) for each ``lam`` (k, 1); shape ``(k, n)``."""
    pos = z >= 0
    a = np.log1p(np.abs(z))  # log(|z| + 1)
    with np.errstate(all="ignore"):
        lam_pos = np.where(lam == 0, 1.0, lam)
        lam_neg = np.where(lam == 2, 1.0, 2.0 - lam)
        up = np.where(lam == 0, a, np.expm1(lam * a) / lam_pos)
        down = np.where(lam == 2, -a, -np.expm1((2.0 - lam) * a) / lam_neg)
    return np.where(pos, up, down)


def warp_targets(y: np.ndarray) -> np.ndarray:
    """A Yeo-Johnson power transform of the targets ``(n,)``, fitted by maximum likelihood.

    Objectives of hyperparameter searches (and test functions such as Rosenbrock) are
    often heavy-tailed: a few diverged or poor configurations are orders of magnitude
    worse than the rest, and a GP fitted to the raw values spends its flexibility on
    them. The transform is monotone, so the order of the trials, and hence the incumbent,
    is unchanged; it is applied to the minimised values, where the tail of bad values
    lies (as HEBO does). The exponent is the maximum-likelihood one on a grid of step
    0.05 over ``[-2, 4]`` (one vectorised evaluation). Falls back to the plain values
    when the transform is degenerate.
    """
    z, _, _ = standardize(-np.asarray(y, dtype=float))  # minimised, standardised
    if len(z) < 3 or np.ptp(z) == 0:
        return -z
    with np.errstate(all="ignore"):
        psi = _yeo_johnson(z, _YJ_LAMBDAS)  # (k, n)
        var = psi.var(axis=1)
        llf = -0.5 * len(z) * np.log(var) + (_YJ_LAMBDAS[:, 0] - 1.0) * np.sum(np.sign(z) * np.log1p(np.abs(z)))
    llf = np.where(np.isfinite(llf) & (var > 0), llf, -np.inf)
    if not np.isfinite(llf).any():
        return -z
    out = psi[int(np.argmax(llf))]
    if not np.all(np.isfinite(out)) or np.ptp(out) == 0:
        return -z
    return -out


def standardize(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(y - mean) / std`` and the mean and std used (std 1 for constant ``y``), shape ``(n,)``."""
    y = np.asarray(y, dtype=float)
    mean = float(y.mean())
    std = float(y.std())
    if not std > 1e-12 * max(1.0, abs(mean)):
        std = 1.0
    return (y - mean) / std, mean, std


class GPPosterior(torch.nn.Module):
    """The posterior of a fitted :class:`GPModel`, with the Cholesky factor computed once.

    Evaluating it costs one cross-covariance and one triangular solve, and is
    differentiable in ``X``; the hyperparameters are frozen buffers.

    Args:
        X_train: shape ``(n, d)``.
        y_train: shape ``(n,)`` (standardised).
        lengthscale: shape ``(d,)``.
        outputscale: scalar.
        noise: scalar noise variance, or per-point variances of shape ``(n,)``.
        categorical_mask: bool, shape ``(d,)``.
    """

    def __init__(
        self,
        X_train: torch.Tensor,
        y_train: torch.Tensor,
        lengthscale: torch.Tensor,
        outputscale: torch.Tensor,
        noise: torch.Tensor,
        categorical_mask: torch.Tensor,
    ) -> None:
        super().__init__()
        self.register_buffer("X_train", X_train.detach().to(DTYPE))
        self.register_buffer("y_train", y_train.detach().to(DTYPE))
        self.register_buffer("lengthscale", lengthscale.detach().to(DTYPE).reshape(-1))
        self.register_buffer("outputscale", outputscale.detach().to(DTYPE).reshape(()))
        noise = noise.detach().to(DTYPE)
        self.register_buffer("noise", noise.expand(X_train.shape[0]).clone() if noise.dim() == 0 else noise)
        self.register_buffer("categorical_mask", torch.as_tensor(categorical_mask, dtype=torch.bool))
        K = self.outputscale * matern52(self.X_train, self.X_train, self.lengthscale, self.categorical_mask)
        self.register_buffer("L", robust_cholesky(K + torch.diag(self.noise)))
        a = torch.linalg.solve_triangular(self.L, self.y_train.unsqueeze(-1), upper=False)
        self.register_buffer("alpha", torch.linalg.solve_triangular(self.L.T, a, upper=True).squeeze(-1))
        self._np: dict[str, Any] | None = None  # numpy views for mean_std_and_grad

    @classmethod
    def from_model(cls, model: GPModel) -> GPPosterior:
        mask = model.covar_module.base_kernel.categorical_mask
        return cls(model.train_inputs[0], model.train_targets, model.lengthscale, model.outputscale,
                   model.noise, mask)

    def condition_on(self, X_new: torch.Tensor, y_new: torch.Tensor, noise: float | None = None) -> GPPosterior:
        """The posterior with ``(X_new (k, d), y_new (k,))`` added as observations.

        Hyperparameters are kept; this is how pending trials enter as fantasies.
        """
        if X_new.shape[0] == 0:
            return self
        extra = torch.full((X_new.shape[0],), float(self.noise.min()) if noise is None else noise, dtype=DTYPE)
        return GPPosterior(torch.cat([self.X_train, X_new.to(DTYPE)]), torch.cat([self.y_train, y_new.to(DTYPE)]),
                           self.lengthscale, self.outputscale, torch.cat([self.noise, extra]),
                           self.categorical_mask)

    def forward(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of the latent function at ``X`` (b, d); each ``(b,)``."""
        if X.dim() == 2 and X.shape[0] > 64 and not torch.is_grad_enabled():
            kernel = _matern52_large_batch(X, self.X_train, self.lengthscale, self.categorical_mask)
        else:
            kernel = matern52(X, self.X_train, self.lengthscale, self.categorical_mask)
        Ks = self.outputscale * kernel  # (b, n)
        mean = Ks @ self.alpha
        v = torch.linalg.solve_triangular(self.L, Ks.transpose(-1, -2), upper=False)  # (n, b)
        var = (self.outputscale - v.square().sum(-2)).clamp_min(1e-12)
        return mean, var

    def mean_std_and_grad(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at ``X`` (b, d) and their gradients in ``X``.

        The same quantities as :meth:`forward`, with gradients in closed form, in numpy:
        the acquisition optimiser calls this hundreds of times per suggestion on a few
        points, where torch's per-operation and autograd overhead dominated. For Matérn-5/2
        with ``r = sqrt(5) * scaled distance``, ``dk/dx_c = -(5/3) s (1 + r) exp(-r) (x_c - x'_c) / l_c^2``.
        Categorical columns get a zero gradient (they are searched exactly, not by gradient).

        Returns:
            mean ``(b,)``, std ``(b,)``, d mean / dX ``(b, d)``, d std / dX ``(b, d)``.
        """
        if self._np is None:
            self._np = {name: getattr(self, name).numpy() for name in
                        ("X_train", "lengthscale", "alpha", "L", "categorical_mask")}
            self._np["outputscale"] = float(self.outputscale)
        c = self._np
        X = np.asarray(X, dtype=float).reshape(-1, c["X_train"].shape[1])
        mask, inv_ls2, s = c["categorical_mask"], c["lengthscale"] ** -2.0, c["outputscale"]
        diff = X[:, None, :] - c["X_train"][None, :, :]  # (b, n, d)
        terms = np.where(mask, diff != 0, diff * diff)
        r = np.sqrt(5.0 * (terms @ inv_ls2))  # (b, n)
        e = np.exp(-r)
        k = s * (1.0 + r + r * r / 3.0) * e
        mean = k @ c["alpha"]
        w = scipy.linalg.solve_triangular(c["L"], k.T, lower=True, check_finite=False)  # (n, b)
        var = s - np.einsum("nb,nb->b", w, w)
        std = np.sqrt(np.maximum(var, 1e-12))
        kinv_k = scipy.linalg.solve_triangular(c["L"], w, lower=True, trans="T", check_finite=False).T  # (b, n)
        grad_k = (-(5.0 / 3.0) * s * (1.0 + r) * e)[:, :, None] * np.where(mask, 0.0, diff * inv_ls2)  # (b, n, d)
        d_mean = np.einsum("bnd,n->bd", grad_k, c["alpha"])
        d_var = -2.0 * np.einsum("bnd,bn->bd", grad_k, kinv_k)
        d_std = np.where((var > 1e-12)[:, None], d_var / (2.0 * std[:, None]), 0.0)
        return mean, std, d_mean, d_std
