"""The GP: the kernel, the MAP fit, the cached posterior against GPyTorch's own, jitter."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch

from frameworm_lightning._gp import gp as gp_module
from frameworm_lightning._gp.gp import (
    GPModel,
    GPNumericalError,
    GPPosterior,
    fit_gp,
    matern52,
    robust_cholesky,
    standardize,
)

D = torch.float64


def _data(n: int = 12, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=D)
    y = torch.sin(6 * X[:, 0]) + X[:, 1] ** 2
    return X, (y - y.mean()) / y.std()


def test_matern_kernel_is_one_on_the_diagonal_and_decays() -> None:
    x = torch.tensor([[0.0], [0.1], [0.5]], dtype=D)
    K = matern52(x, x, torch.tensor([0.2], dtype=D), torch.tensor([False]))
    assert torch.allclose(K.diagonal(), torch.ones(3, dtype=D))
    assert K[0, 1] > K[0, 2] > 0


def test_categorical_columns_only_compare_equality() -> None:
    mask = torch.tensor([True])
    ls = torch.tensor([0.5], dtype=D)
    x = torch.tensor([[0.0], [1.0], [2.0]], dtype=D)
    K = matern52(x, x, ls, mask)
    # Choice 0 is as far from choice 1 as from choice 2: no invented order.
    assert K[0, 1] == pytest.approx(float(K[0, 2]))


def test_fit_improves_the_marginal_likelihood() -> None:
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    model.train()
    before = float(model.negative_log_posterior().detach())
    result = fit_gp(model, [None], maxiter=100)
    assert result.loss < before
    assert (model.lengthscale > 0).all() and model.noise >= model.noise_floor


def test_cached_posterior_matches_gpytorch_prediction() -> None:
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    fit_gp(model, [None], maxiter=50)
    Xs = torch.rand(7, 2, dtype=D)
    model.eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False), gpytorch.settings.max_cholesky_size(10_000):
        pred = model(Xs)
    mean, var = GPPosterior.from_model(model)(Xs)
    assert torch.allclose(mean, pred.mean, atol=1e-6)
    assert torch.allclose(var, pred.variance, atol=1e-6)


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


def test_robust_cholesky_adds_jitter_to_a_singular_matrix() -> None:
    v = torch.tensor([[1.0], [1.0], [2.0]], dtype=D)
    K = v @ v.T  # rank one
    L = robust_cholesky(K)
    assert torch.allclose(L @ L.T, K, atol=1e-3)
    with pytest.raises(GPNumericalError):
        robust_cholesky(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]], dtype=D))
    with pytest.raises(GPNumericalError):
        robust_cholesky(-torch.eye(2, dtype=D))


def test_fit_recovers_from_cholesky_failures_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.linalg.cholesky_ex
    calls = {"n": 0}

    def flaky(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] % 2 == 1:  # every first attempt (no jitter) fails; the retry with jitter works
            return torch.full_like(A, float("nan")), torch.tensor(1)
        return real(A)

    monkeypatch.setattr(gp_module.torch.linalg, "cholesky_ex", flaky)
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    model.train()
    before = float(model.negative_log_posterior().detach())
    result = fit_gp(model, [None], maxiter=30)
    assert np.isfinite(result.loss) and result.loss < before
    assert calls["n"] > 2


def test_fit_raises_when_every_evaluation_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gp_module.torch.linalg, "cholesky_ex",
                        lambda A: (torch.full_like(A, float("nan")), torch.tensor(1)))
    X, y = _data()
    with pytest.raises(GPNumericalError):
        fit_gp(GPModel(X, y, torch.tensor([False, False])), [None], maxiter=5)


def test_standardize_handles_constant_targets() -> None:
    z, mean, std = standardize(np.array([3.0, 3.0, 3.0]))
    assert np.allclose(z, 0.0) and mean == 3.0 and std == 1.0
    z, _, _ = standardize(np.array([1.0, 2.0, 3.0]))
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)


def test_bad_noise_floor_is_rejected() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="noise_floor=0"):
        GPModel(X, y, torch.tensor([False, False]), noise_floor=0)


def test_closed_form_priors_match_gpytorch() -> None:
    from gpytorch.priors import GammaPrior, LogNormalPrior

    value = torch.tensor([0.3, 1.7], dtype=D)
    for prior in (LogNormalPrior(0.2, 0.7), GammaPrior(1.1, 20.0), GammaPrior(2.0, 1.0)):
        prior = prior.to(D)
        assert float(gp_module._log_prob(prior, value)) == pytest.approx(float(prior.log_prob(value).sum()), rel=1e-12)


def test_warping_is_monotone_and_tames_a_heavy_tail() -> None:
    import scipy.stats

    from frameworm_lightning._gp.gp import warp_targets

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


def test_large_batch_kernel_path_matches_the_exact_one() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.cat([torch.rand(30, 2, generator=g, dtype=D), torch.randint(0, 3, (30, 1), generator=g).to(D)], 1)
    mask = torch.tensor([False, False, True])
    post = GPPosterior(X, torch.randn(30, generator=g, dtype=D), torch.tensor([0.3, 0.7, 0.5], dtype=D),
                       torch.tensor(1.5, dtype=D), torch.tensor(1e-4, dtype=D), mask)
    Xs = torch.cat([torch.rand(200, 2, generator=g, dtype=D), torch.randint(0, 3, (200, 1), generator=g).to(D)], 1)
    Xs[:5] = X[:5]  # points on the training data: distance zero
    with torch.no_grad():
        fast = post(Xs)
    with torch.enable_grad():
        exact = post(Xs.clone().requires_grad_(True))
    assert torch.allclose(fast[0], exact[0].detach(), atol=1e-8)
    assert torch.allclose(fast[1], exact[1].detach(), atol=1e-8)


def test_loss_equals_gpytorch_exact_marginal_likelihood_with_priors() -> None:
    X, y = _data()
    model = GPModel(X, y, torch.tensor([False, False]))
    model.set_hyperparameters(np.array([0.3, 0.8]), 1.7, 0.01)
    model.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(10_000):
        expected = -float(mll(model(X), y))
        ours = float(model.negative_log_posterior())
    assert ours == pytest.approx(expected, rel=1e-10)
