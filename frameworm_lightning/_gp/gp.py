"""The Gaussian-process surrogate: a GPyTorch exact GP, its MAP fit, and a cached posterior.

GPyTorch is the single source of truth for the model: the kernel
(:class:`MixedMatern52Kernel`, the only place the Matérn formula is written), the
Gaussian likelihood, the priors and the exact marginal likelihood
(``gpytorch.mlls.ExactMarginalLogLikelihood``, priors included). :class:`GPPosterior`
only caches what prediction needs (the Cholesky factor of the training covariance and
``K^-1 y``) and evaluates the kernel module's own ``forward``, so acquisition functions
are differentiated by autograd through that one formula.

The model has a zero mean (outputs are standardised) and a scaled Matérn-5/2 kernel with
one lengthscale per column. Continuous and integer columns enter through the usual
scaled distance; a categorical column adds ``1 / lengthscale^2`` when two points hold
different choices, so the kernel never assumes an order between choices (a
Hamming-distance kernel, in the style of CoCaBO/Optuna).

Priors (in standardised output units):

* lengthscales: a dimension-scaled prior after Hvarfner et al. (2024, "Vanilla Bayesian
  optimization performs great in high dimensions"): ``LogNormal(log(0.7 * sqrt(d)), 0.7)``
  up to ``HIGH_DIM`` dimensions, narrower than theirs, and theirs past that (see
  :func:`dim_scaled_lengthscale_prior`);
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
from typing import Any

import gpytorch
import numpy as np
import scipy.optimize
import torch
from gpytorch.constraints import GreaterThan
from gpytorch.priors import GammaPrior, LogNormalPrior
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import NanError, NotPSDError
from linear_operator.utils.warnings import NumericalWarning

__all__ = [
    "DTYPE",
    "GPModel",
    "GPNumericalError",
    "GPPosterior",
    "HIGH_DIM",
    "MixedMatern52Kernel",
    "NOISE_FLOOR",
    "dim_scaled_lengthscale_prior",
    "fit_gp",
    "gp_settings",
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
# A failed Cholesky factorisation is retried with jitter 1e-8, 1e-7, ..., 1e-4 (the
# outputs are standardised, so these are relative to the prior variance).
_JITTER = 1e-8
_JITTER_TRIES = 5
# The fit stops when the loss (in nats per point) improves by less than this, relatively:
# hyperparameters more precise than that do not change a suggestion.
_FIT_FTOL = 1e-6
# ... or when no raw hyperparameter's gradient exceeds this (nats per point per unit of
# log-scale): a warm start that is already this close to the optimum stops at once.
_FIT_GTOL = 1e-3
# Past this many columns the model and the acquisition optimiser switch to their
# high-dimensional settings (the lengthscale prior here; the sampler's incumbent
# perturbations move a subset of about this many columns).
HIGH_DIM = 20


def _log_constraint(lower: float) -> GreaterThan:
    return GreaterThan(lower, transform=torch.exp, inv_transform=torch.log)


class GPNumericalError(RuntimeError):
    """The kernel matrix could not be factorised, or the fit produced non-finite values."""


@contextlib.contextmanager
def gp_settings() -> Iterator[None]:
    """GPyTorch settings for the small exact GPs of a search, set locally (never globally).

    Always a Cholesky factorisation (never conjugate gradients or Lanczos, which GPyTorch
    uses for matrices past ``max_cholesky_size``), with the jitter schedule of this module; GPyTorch's
    jitter warnings are silenced because a retried factorisation is expected here.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(gpytorch.settings.max_cholesky_size(10**9))
        stack.enter_context(gpytorch.settings.cholesky_jitter(float_value=1e-6, double_value=_JITTER))
        stack.enter_context(gpytorch.settings.cholesky_max_tries(_JITTER_TRIES))
        stack.enter_context(gpytorch.settings.debug(False))
        stack.enter_context(gpytorch.settings.lazily_evaluate_kernels(False))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", NumericalWarning)
        yield


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


class MixedMatern52Kernel(gpytorch.kernels.Kernel):
    """A GPyTorch kernel: Matérn-5/2 on ordered columns, Hamming distance on categorical ones.

    The squared scaled distance is ``sum_c (x_c - x'_c)^2 / l_c^2`` over ordered columns
    (computed as ``|a|^2 + |b|^2 - 2 a.b``, one matmul) plus ``sum_c [x_c != x'_c] / l_c^2``
    over categorical ones; then ``k = (1 + r + r^2 / 3) exp(-r)`` with
    ``r = sqrt(5 * distance^2)``. This ``forward`` is the only place the formula is written.

    Args:
        categorical_mask: bool, shape ``(d,)``.
        **kwargs: passed to :class:`gpytorch.kernels.Kernel` (priors, constraints).
    """

    has_lengthscale = True

    def __init__(self, categorical_mask: torch.Tensor, **kwargs: object) -> None:
        mask = torch.as_tensor(categorical_mask, dtype=torch.bool)
        super().__init__(ard_num_dims=int(mask.numel()), **kwargs)  # type: ignore[arg-type]
        self.register_buffer("categorical_mask", mask)
        self._ordered = bool((~mask).any())
        self._categorical = bool(mask.any())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: object) -> torch.Tensor:
        """``x1`` (..., n, d), ``x2`` (..., m, d) -> the kernel matrix ``(..., n, m)`` (``(..., n)`` with ``diag``)."""
        if diag:
            return torch.ones(x1.shape[:-1], dtype=x1.dtype)
        inv_ls = self.lengthscale.reshape(-1).reciprocal()
        if self._categorical:
            mask = self.categorical_mask
            differ = x1[..., mask].unsqueeze(-2) != x2[..., mask].unsqueeze(-3)
            sqd = differ.to(x1.dtype) @ inv_ls[mask].square()
            if self._ordered:
                sqd = sqd + _scaled_sq_dist(x1[..., ~mask], x2[..., ~mask], inv_ls[~mask])
        else:
            sqd = _scaled_sq_dist(x1, x2, inv_ls)
        # sqrt has an infinite derivative at 0; the clamp keeps gradients finite on the diagonal.
        r = torch.sqrt(5.0 * sqd.clamp_min(1e-36))
        return (1.0 + r + r * r / 3.0) * torch.exp(-r)


def _scaled_sq_dist(x1: torch.Tensor, x2: torch.Tensor, inv_ls: torch.Tensor) -> torch.Tensor:
    """``sum_c ((x1_c - x2_c) * inv_ls_c)^2`` as ``|a|^2 + |b|^2 - 2 a.b`` (one matmul); ``(..., n, m)``."""
    z1, z2 = x1 * inv_ls, x2 * inv_ls
    return (z1 * z1).sum(-1, keepdim=True) + (z2 * z2).sum(-1).unsqueeze(-2) - 2.0 * z1 @ z2.transpose(-1, -2)


def dim_scaled_lengthscale_prior(d: int) -> LogNormalPrior:
    """The lengthscale prior in ``d`` dimensions: its median grows like ``sqrt(d)``.

    The ``sqrt(d)`` scaling is Hvarfner et al.'s (2024): in ``d`` dimensions distances
    between points grow like ``sqrt(d)``, so a lengthscale that keeps neighbours
    correlated must too.

    * Up to ``HIGH_DIM`` dimensions: ``LogNormal(log(0.7 * sqrt(d)), 0.7)``. With the tens
      of trials of a hyperparameter search, Hvarfner et al.'s much wider prior lets the
      fit explain a few points with very short lengthscales, after which the GP predicts
      nothing and the search turns random (measured on Ackley-5 and Levy-4,
      ``docs/bayesian.md``); a narrow prior keeps the model smooth unless the data insist.
    * Past ``HIGH_DIM`` dimensions: Hvarfner et al.'s own prior,
      ``LogNormal(sqrt(2) + log(d) / 2, sqrt(3))`` (median ``4.1 * sqrt(d)``). There most
      columns matter little, and the wide prior lets each of them take the long lengthscale
      that switches it off (measured on Levy-30 and Hartmann-6 hidden in 50 dimensions).
    """
    if d > HIGH_DIM:
        return LogNormalPrior(loc=math.sqrt(2.0) + 0.5 * math.log(d), scale=math.sqrt(3.0), validate_args=False)
    return LogNormalPrior(loc=0.5 * math.log(max(d, 1)) + math.log(0.7), scale=0.7, validate_args=False)


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

        GPyTorch's ``ExactMarginalLogLikelihood`` (which adds the priors) on the training
        data, under :func:`gp_settings`. Raises :class:`GPNumericalError` when the
        covariance cannot be factorised even with jitter.
        """
        self.train()
        with gp_settings():
            return self._loss(gpytorch.mlls.ExactMarginalLogLikelihood(self.likelihood, self))

    def _loss(self, mll: gpytorch.mlls.ExactMarginalLogLikelihood) -> torch.Tensor:
        """:meth:`negative_log_posterior` with ``mll`` built, train mode and :func:`gp_settings` set by the caller.

        :func:`fit_gp` evaluates the loss dozens of times per suggestion: switching modes,
        building the marginal likelihood and entering the settings once per fit instead of
        once per evaluation saves 10 to 25% of a small fit's time.
        """
        try:
            return -mll(self(*self.train_inputs), self.train_targets)  # type: ignore[no-any-return]
        except (NotPSDError, NanError) as err:
            raise GPNumericalError(str(err)) from err


def fit_gp(model: GPModel, starts: Sequence[np.ndarray | None], maxiter: int = 100) -> None:
    """Fit ``model``'s hyperparameters by L-BFGS-B from each start; keep the best.

    Args:
        model: the GP; on return it holds the best hyperparameters found (in eval mode).
        starts: raw hyperparameter vectors to start from; ``None`` means the model's
            current values.
        maxiter: the L-BFGS-B iteration cap of each start (the cost bound of a fit).

    Raises:
        GPNumericalError: no start gave a finite loss.
    """
    model.requires_grad_(True)  # a posterior made from this model earlier froze the kernel
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    params = list(model.parameters())
    current = model.raw_vector()
    best_raw, best_loss = None, math.inf

    def loss_and_grad(v: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal best_raw, best_loss
        model.load_raw_vector(v)
        for p in params:
            p.grad = None
        try:
            loss = model._loss(mll)
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

    bounds = model.raw_bounds()
    lo, hi = np.array(bounds).T
    with gp_settings():
        for start in starts:
            x0 = np.clip(current if start is None else np.asarray(start, dtype=float), lo, hi)
            scipy.optimize.minimize(loss_and_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                    options={"maxiter": maxiter, "ftol": _FIT_FTOL, "gtol": _FIT_GTOL})
    model.load_raw_vector(current if best_raw is None else best_raw)
    model.eval()
    if best_raw is None:
        raise GPNumericalError("the GP fit found no hyperparameters with a finite marginal likelihood.")


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


def _cholesky(K: torch.Tensor) -> torch.Tensor:
    """GPyTorch's jittered Cholesky factorisation of ``K`` under :func:`gp_settings`."""
    try:
        with gp_settings():
            return psd_safe_cholesky(K)
    except (NotPSDError, NanError) as err:
        raise GPNumericalError(str(err)) from err


class GPPosterior(torch.nn.Module):
    """The posterior of a fitted :class:`GPModel`, with the Cholesky factor computed once.

    It keeps the model's own kernel module (frozen) and evaluates its ``forward``, so the
    formula is GPyTorch's; what it adds is the cache: the Cholesky factor ``L`` of the
    training covariance and ``alpha = K^-1 y``. Evaluating it costs one cross-covariance
    and one triangular solve, and is differentiable in ``X``. A test checks it against
    GPyTorch's own prediction.

    Args:
        kernel: the fitted (scaled) kernel module; its hyperparameters are frozen here.
        X_train: shape ``(n, d)``.
        y_train: shape ``(n,)`` (standardised).
        noise: per-point noise variances, shape ``(n,)``.
        L: the Cholesky factor of ``kernel(X_train) + diag(noise)``, if already known.
    """

    def __init__(
        self,
        kernel: gpytorch.kernels.Kernel,
        X_train: torch.Tensor,
        y_train: torch.Tensor,
        noise: torch.Tensor,
        L: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.kernel = kernel.requires_grad_(False)
        self.register_buffer("X_train", X_train.detach().to(DTYPE))
        self.register_buffer("y_train", y_train.detach().to(DTYPE))
        self.register_buffer("noise", noise.detach().to(DTYPE).expand(X_train.shape[0]).clone())
        if L is None:
            with torch.no_grad():
                L = _cholesky(self.kernel.forward(self.X_train, self.X_train) + torch.diag(self.noise))
        self.register_buffer("L", L)
        self.register_buffer("alpha", torch.cholesky_solve(self.y_train.unsqueeze(-1), L).squeeze(-1))
        with torch.no_grad():
            self.register_buffer("prior_var", self.kernel.forward(self.X_train[:1], self.X_train[:1], diag=True)[0])

    @classmethod
    def from_model(cls, model: GPModel) -> GPPosterior:
        """The posterior of ``model`` with its current hyperparameters."""
        X = model.train_inputs[0]
        return cls(model.covar_module, X, model.train_targets, model.noise.expand(X.shape[0]))

    def condition_on(self, X_new: torch.Tensor, y_new: torch.Tensor, noise: float | None = None) -> GPPosterior:
        """The posterior with ``(X_new (k, d), y_new (k,))`` added as observations.

        Hyperparameters are kept (this is how pending trials enter as fantasies), and the
        Cholesky factor is extended by the ``k`` new rows instead of recomputed.
        """
        if X_new.shape[0] == 0:
            return self
        X_new = X_new.to(DTYPE)
        extra = torch.full((X_new.shape[0],), float(self.noise.min()) if noise is None else noise, dtype=DTYPE)
        with torch.no_grad():
            B = torch.linalg.solve_triangular(self.L, self.kernel.forward(self.X_train, X_new), upper=False)  # (n, k)
            S = self.kernel.forward(X_new, X_new) + torch.diag(extra) - B.T @ B
            n, k = B.shape
            L = torch.zeros(n + k, n + k, dtype=DTYPE)
            L[:n, :n] = self.L
            L[n:, :n] = B.T
            L[n:, n:] = _cholesky(S)
        return GPPosterior(self.kernel, torch.cat([self.X_train, X_new]), torch.cat([self.y_train, y_new.to(DTYPE)]),
                           torch.cat([self.noise, extra]), L)

    def mean(self, X: torch.Tensor) -> torch.Tensor:
        """Posterior mean at ``X`` (b, d), shape ``(b,)``, without gradients (no triangular solve)."""
        with torch.no_grad():
            return self.kernel.forward(torch.as_tensor(X, dtype=DTYPE), self.X_train) @ self.alpha

    def forward(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance of the latent function at ``X`` (b, d); each ``(b,)``."""
        Ks = self.kernel.forward(X, self.X_train)  # (b, n)
        mean = Ks @ self.alpha
        v = torch.linalg.solve_triangular(self.L, Ks.transpose(-1, -2), upper=False)  # (n, b)
        var = (self.prior_var - (v * v).sum(-2)).clamp_min(1e-12)
        return mean, var
