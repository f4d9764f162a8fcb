"""The GP: the kernel against GPyTorch's Matérn, the MAP loss against a direct computation,
the cached posterior against GPyTorch's prediction, fantasies, jitter and failures."""

from __future__ import annotations

import math

import gpytorch
import numpy as np
import pytest
import scipy.stats
import torch

from frameworm_lightning._gp.gp import (
    GPModel,
    GPNumericalError,
    GPPosterior,
    MixedMatern52Kernel,
    dim_scaled_lengthscale_prior,
    fit_gp,
    standardize,
    warp_targets,
)

D = torch.float64


def _data(n: int = 12, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=D)
    y = torch.sin(6 * X[:, 0]) + X[:, 1] ** 2
    return X, (y - y.mean()) / y.std()


def _mixed_data(n: int = 25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.cat([torch.rand(n, 2, generator=g, dtype=D), torch.randint(0, 3, (n, 1), generator=g).to(D)], 1)
    y = torch.sin(5 * X[:, 0]) - X[:, 1] + 0.3 * X[:, 2]
    return X, (y - y.mean()) / y.std(), torch.tensor([False, False, True])


def _kernel(lengthscale: list[float], mask: list[bool]) -> MixedMatern52Kernel:
    k = MixedMatern52Kernel(torch.tensor(mask)).to(D)
    k.lengthscale = torch.tensor([lengthscale], dtype=D)
    return k


def test_kernel_on_ordered_columns_equals_gpytorchs_matern52() -> None:
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand(7, 3, generator=g, dtype=D), torch.rand(5, 3, generator=g, dtype=D)
    ref = gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=3).to(D)
    ref.lengthscale = torch.tensor([[0.3, 0.7, 1.9]], dtype=D)
    ours = _kernel([0.3, 0.7, 1.9], [False, False, False])
    with torch.no_grad():
        assert torch.allclose(ours.forward(x1, x2), ref(x1, x2).to_dense(), rtol=1e-10, atol=1e-12)
        assert torch.allclose(ours.forward(x1, x1).diagonal(), torch.ones(7, dtype=D))


def test_categorical_columns_only_compare_equality() -> None:
    k = _kernel([0.5], [True])
    x = torch.tensor([[0.0], [1.0], [2.0]], dtype=D)
    with torch.no_grad():
        K = k.forward(x, x)
    # Choice 0 is as far from choice 1 as from choice 2 (no invented order): 1 / l^2 = 4 apart.
    r = math.sqrt(5 * 4.0)
    assert float(K[0, 1]) == float(K[0, 2]) == pytest.approx((1 + r + r * r / 3) * math.exp(-r), rel=1e-12)


def test_kernel_input_gradient_matches_finite_differences_even_on_a_training_point() -> None:
    X, _, mask = _mixed_data(8)
    k = _kernel([0.3, 0.6, 0.8], mask.tolist())

    def f(x: torch.Tensor) -> torch.Tensor:
        return k.forward(torch.cat([x, X[:3, 2:]], 1), X).sum(-1)

    x = (X[:3, :2] + torch.tensor([[0.05, -0.02]], dtype=D)).requires_grad_(True)
    assert torch.autograd.gradcheck(f, (x,))
    on_point = X[:3, :2].clone().requires_grad_(True)  # distance 0: finite, zero gradient there
    grad = torch.autograd.grad(f(on_point).sum(), on_point)[0]
    assert torch.isfinite(grad).all()


def test_loss_is_the_negative_log_marginal_likelihood_plus_priors_per_point() -> None:
    X, y, mask = _mixed_data(15)
    model = GPModel(X, y, mask)
    model.set_hyperparameters(np.array([0.3, 0.8, 0.5]), 1.7, 0.01)
    with torch.no_grad():
        K = (model.covar_module.forward(X, X) + 0.01 * torch.eye(15, dtype=D)).numpy()
        ours = float(model.negative_log_posterior())
    log_lik = scipy.stats.multivariate_normal(np.zeros(15), K).logpdf(y.numpy())
    prior = dim_scaled_lengthscale_prior(3)
    log_prior = (scipy.stats.lognorm(s=float(prior.scale), scale=math.exp(float(prior.loc))).logpdf([0.3, 0.8, 0.5]).sum()
                 + scipy.stats.gamma(a=2.0, scale=1.0).logpdf(1.7) + scipy.stats.gamma(a=1.1, scale=1 / 20).logpdf(0.01))
    assert ours == pytest.approx(-(log_lik + log_prior) / 15, rel=1e-7)


@pytest.mark.parametrize(("d", "median", "sigma"), [
    (1, 0.7, 0.7),
    (6, 0.7 * math.sqrt(6), 0.7),
    (20, 0.7 * math.sqrt(20), 0.7),
    # Past HIGH_DIM, Hvarfner et al.'s prior: LogNormal(sqrt(2) + log(d) / 2, sqrt(3)).
    (21, math.exp(math.sqrt(2)) * math.sqrt(21), math.sqrt(3)),
    (50, math.exp(math.sqrt(2)) * math.sqrt(50), math.sqrt(3)),
])
def test_lengthscale_prior_scales_with_the_dimension(d: int, median: float, sigma: float) -> None:
    prior = dim_scaled_lengthscale_prior(d)
    assert math.exp(float(prior.loc)) == pytest.approx(median, rel=1e-6)
    assert float(prior.scale) == pytest.approx(sigma, rel=1e-6)
    # The model registers it on the kernel's lengthscales, and its default start is the prior's mode.
    model = GPModel(torch.rand(4, d, dtype=D), torch.randn(4, dtype=D), torch.zeros(d, dtype=torch.bool))
    registered = dict((name, p) for name, _, p, _, _ in model.named_priors())
    assert float(registered["covar_module.base_kernel.lengthscale_prior"].loc) == float(prior.loc)
    assert model.lengthscale[0].item() == pytest.approx(math.exp(float(prior.loc) - sigma**2), rel=1e-6)


def test_fit_improves_the_loss_and_respects_the_floors() -> None:
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    before = float(model.negative_log_posterior().detach())
    fit_gp(model, [None], maxiter=100)
    assert not model.training  # left in eval mode
    after = float(model.negative_log_posterior().detach())
    assert after < before
    assert (model.lengthscale > 0).all() and model.noise >= model.noise_floor


def test_a_model_can_be_refitted_after_a_posterior_froze_its_kernel() -> None:
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    fit_gp(model, [None], maxiter=5)
    GPPosterior.from_model(model)  # freezes the kernel's hyperparameters for the acquisition
    before = float(model.negative_log_posterior().detach())
    fit_gp(model, [None], maxiter=50)
    assert float(model.negative_log_posterior().detach()) <= before


def test_cached_posterior_matches_gpytorch_prediction() -> None:
    X, y, mask = _mixed_data()
    model = GPModel(X, y, mask)
    fit_gp(model, [None], maxiter=50)
    g = torch.Generator().manual_seed(3)
    Xs = torch.cat([torch.rand(7, 2, generator=g, dtype=D), torch.randint(0, 3, (7, 1), generator=g).to(D)], 1)
    Xs[0] = X[0]  # on a training point
    model.eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False), gpytorch.settings.max_cholesky_size(10_000):
        pred = model(Xs)
    post = GPPosterior.from_model(model)
    mean, var = post(Xs)
    assert torch.allclose(mean, pred.mean, atol=1e-7)
    assert torch.allclose(post.mean(Xs), mean, atol=1e-12)
    assert torch.allclose(var, pred.variance.clamp_min(1e-12), atol=1e-7)


def test_conditioning_extends_the_cholesky_factor_exactly() -> None:
    X, y, mask = _mixed_data(20)
    model = GPModel(X[:15], y[:15], mask)
    fit_gp(model, [None], maxiter=30)
    post = GPPosterior.from_model(model)
    noise = float(model.noise)
    fantasy = post.condition_on(X[15:], y[15:], noise=noise)
    fresh = GPPosterior(model.covar_module, X, y, torch.full((20,), noise, dtype=D))
    assert torch.allclose(fantasy.L, fresh.L, atol=1e-10)
    Xs = X[:5] + 0.01
    for a, b in zip(fantasy(Xs), fresh(Xs)):
        assert torch.allclose(a, b, atol=1e-9)


def test_conditioning_on_a_fantasy_shrinks_the_variance_there() -> None:
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    fit_gp(model, [None], maxiter=50)
    post = GPPosterior.from_model(model)
    x_new = torch.tensor([[0.93, 0.07]], dtype=D)
    mean, var = post(x_new)
    fantasy = post.condition_on(x_new, mean)
    mean2, var2 = fantasy(x_new)
    assert float(var2) < 0.1 * float(var)
    assert float(mean2) == pytest.approx(float(mean), abs=1e-6)  # believing the mean leaves it unchanged


def test_duplicate_points_are_factorised_with_jitter() -> None:
    X = torch.tensor([[0.2, 0.3], [0.2, 0.3], [0.7, 0.1]], dtype=D)
    model = GPModel(X, torch.tensor([0.5, 0.5, -1.0], dtype=D), torch.tensor([False, False]), noise_floor=1e-12)
    model.set_hyperparameters(np.array([0.5, 0.5]), 1.0, 0.0)
    post = GPPosterior.from_model(model)  # K is singular without jitter
    assert torch.isfinite(post.alpha).all()


def test_fit_recovers_from_cholesky_failures_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.linalg.cholesky_ex
    calls = {"n": 0}

    def flaky(A: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] % 2 == 1:  # every first attempt (no jitter) fails; the retry with jitter works
            return torch.full_like(A, float("nan")), torch.tensor(1)
        return real(A, **kwargs)  # type: ignore[arg-type]

    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    before = float(model.negative_log_posterior().detach())
    monkeypatch.setattr(torch.linalg, "cholesky_ex", flaky)
    fit_gp(model, [None], maxiter=30)
    monkeypatch.undo()
    assert float(model.negative_log_posterior().detach()) < before
    assert calls["n"] > 2


def test_fit_raises_when_every_evaluation_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.linalg, "cholesky_ex",
                        lambda A, **kwargs: (torch.full_like(A, float("nan")), torch.tensor(1)))
    X, y = _data()
    with pytest.raises(GPNumericalError):
        fit_gp(GPModel(X, y, torch.tensor([False, False])), [None], maxiter=5)


def test_a_non_finite_kernel_matrix_is_a_numerical_error() -> None:
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    with pytest.raises(GPNumericalError):
        GPPosterior(model.covar_module, X, torch.full_like(y, float("nan")), torch.full((12,), float("nan"), dtype=D))


def test_standardize_handles_constant_targets() -> None:
    z, mean, std = standardize(np.array([3.0, 3.0, 3.0]))
    assert np.allclose(z, 0.0) and mean == 3.0 and std == 1.0
    z, _, _ = standardize(np.array([1.0, 2.0, 3.0]))
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)


def test_bad_noise_floor_is_rejected() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="noise_floor=0"):
        GPModel(X, y, torch.tensor([False, False]), noise_floor=0)


def test_warping_is_monotone_and_tames_a_heavy_tail() -> None:
    rng = np.random.default_rng(0)
    y = -np.exp(2 * rng.normal(size=60))  # maximised targets with a long tail of bad values
    w = warp_targets(y)
    assert np.array_equal(np.argsort(w, kind="stable"), np.argsort(y, kind="stable"))  # order kept
    assert abs(scipy.stats.skew(w)) < abs(scipy.stats.skew(y)) / 4
    # Same transform as scipy's at the exponent it picks (to our grid's resolution).
    z, _, _ = standardize(-y)
    lam = round(scipy.stats.yeojohnson_normmax(z) / 0.05) * 0.05
    assert np.allclose(-w, scipy.stats.yeojohnson(z, lam), atol=1e-9)
    assert np.allclose(warp_targets(np.array([2.0, 2.0, 2.0])), 0.0)
