"""Acquisition functions: values against BoTorch's analytic acquisitions on the same GPyTorch
model, autograd gradients against finite differences, the stable log EI, and rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frameworm_lightning._gp.acquisition import (
    ACQUISITIONS,
    CostWeighted,
    ExpectedImprovement,
    FixedColumns,
    LogExpectedImprovement,
    ProbabilityOfImprovement,
    TrustRegion,
    UpperConfidenceBound,
    build_acquisition,
    hedge_probabilities,
    log_h,
    validate_acquisition,
)
from frameworm_lightning._gp.gp import GPModel, GPPosterior, fit_gp

D = torch.float64


def _naive_log_h(z: float) -> float:
    phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * math.erfc(-z / math.sqrt(2))
    return math.log(phi + z * cdf)


@pytest.mark.parametrize("z", [-8.0, -3.0, -1.5, -1.0, -0.5, 0.0, 0.7, 3.0, 10.0])
def test_log_h_matches_the_direct_formula_where_that_is_accurate(z: float) -> None:
    assert float(log_h(torch.tensor(z, dtype=D))) == pytest.approx(_naive_log_h(z), rel=1e-9, abs=1e-12)


def test_log_h_is_finite_with_finite_gradients_far_in_the_tail() -> None:
    z = torch.tensor([-1e6, -1e4, -50.0, -40.0, -1.0, 0.0, 1e3], dtype=D, requires_grad=True)
    out = log_h(z)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()  # type: ignore[arg-type]
    assert (out.diff() > 0).all()  # monotone increasing, as EI is in the mean
    # Asymptotics: log h(z) ~ log phi(z) - 2 log(-z) for very negative z.
    expected = -0.5 * 1e8 - 0.5 * math.log(2 * math.pi) - 2 * math.log(1e4)
    assert float(out[1].detach()) == pytest.approx(expected, rel=1e-9)


def test_log_h_equals_botorchs_helper_and_its_gradient_is_phi_over_h() -> None:
    analytic = pytest.importorskip("botorch.acquisition.analytic")
    z = torch.tensor([-1e3, -30.0, -5.0, -1.0, -0.3, 0.0, 2.0, 9.0], dtype=D, requires_grad=True)
    assert torch.allclose(log_h(z), analytic._log_ei_helper(z), rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(log_h, (z,))
    # d log h / dz = Phi(z) / h(z)
    (grad,) = torch.autograd.grad(log_h(z).sum(), z)
    assert torch.allclose(grad, torch.exp(torch.special.log_ndtr(z) - log_h(z)), rtol=1e-8)


@pytest.fixture(scope="module")
def mixed_model() -> GPModel:
    """A GP fitted to a function of two continuous columns and one categorical column."""
    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.rand(25, 2, generator=g, dtype=D), torch.randint(0, 3, (25, 1), generator=g).to(D)], 1)
    y = torch.sin(5 * X[:, 0]) - X[:, 1] + 0.3 * X[:, 2]
    model = GPModel(X, (y - y.mean()) / y.std(), torch.tensor([False, False, True]))
    fit_gp(model, [None], maxiter=50)
    return model


def _candidates(model: GPModel) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    Xs = torch.cat([torch.rand(9, 2, generator=g, dtype=D), torch.randint(0, 3, (9, 1), generator=g).to(D)], 1)
    Xs[0] = model.train_inputs[0][0]  # on a training point
    Xs[1] = torch.tensor([3.0, -2.0, 1.0], dtype=D)  # far away: a tiny improvement probability
    return Xs


@pytest.mark.filterwarnings("ignore:ExpectedImprovement has known numerical issues")
@pytest.mark.parametrize("name", ["ei", "logei", "pi", "ucb"])
def test_values_equal_botorchs_analytic_acquisitions_on_the_same_model(mixed_model: GPModel, name: str) -> None:
    pytest.importorskip("botorch")
    from botorch.acquisition import analytic
    from botorch.models import SingleTaskGP

    X, y = mixed_model.train_inputs[0], mixed_model.train_targets
    reference_model = SingleTaskGP(X, y.unsqueeze(-1), likelihood=mixed_model.likelihood,
                                   covar_module=mixed_model.covar_module, mean_module=mixed_model.mean_module,
                                   outcome_transform=None)
    reference_model.eval()
    best_f, beta, xi = float(y.max()), 2.0, 0.1
    reference = {
        "ei": analytic.ExpectedImprovement(reference_model, best_f=best_f),
        "logei": analytic.LogExpectedImprovement(reference_model, best_f=best_f),
        "pi": analytic.LogProbabilityOfImprovement(reference_model, best_f=best_f + xi),
        "ucb": analytic.UpperConfidenceBound(reference_model, beta=beta),
    }[name]
    ours = build_acquisition(name, GPPosterior.from_model(mixed_model), best_f, beta=beta, xi=xi)
    Xs = _candidates(mixed_model)
    with torch.no_grad():
        expected = reference(Xs.unsqueeze(-2))
        got = ours(Xs)
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-9), (got, expected)


@pytest.mark.parametrize("name", ["ei", "logei", "pi", "ucb"])
def test_autograd_gradients_match_finite_differences(mixed_model: GPModel, name: str) -> None:
    post = GPPosterior.from_model(mixed_model)
    acqf = build_acquisition(name, post, best_f=float(mixed_model.train_targets.max()), beta=2.0)
    Xs = _candidates(mixed_model)[2:]
    cat = Xs[:, 2:]

    def f(x: torch.Tensor) -> torch.Tensor:
        return acqf(torch.cat([x, cat], 1))

    assert torch.autograd.gradcheck(f, (Xs[:, :2].clone().requires_grad_(True),), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def toy_posterior() -> GPPosterior:
    """A GP fitted to -(x - 0.3)^2 at 8 points of [0, 1] (the targets are maximised)."""
    X = torch.linspace(0.0, 1.0, 8, dtype=D).unsqueeze(-1)
    y = -(X.squeeze(-1) - 0.3) ** 2
    y = (y - y.mean()) / y.std()
    model = GPModel(X, y, torch.tensor([False]))
    fit_gp(model, [None])
    return GPPosterior.from_model(model)


@pytest.mark.parametrize("name", ["ei", "logei", "pi", "ucb", "lcb"])
def test_each_acquisition_ranks_a_clearly_better_candidate_higher(toy_posterior: GPPosterior, name: str) -> None:
    best_f = float(toy_posterior.y_train.max())
    acqf = build_acquisition(name, toy_posterior, best_f, beta=2.0)
    good, bad = torch.tensor([[0.3]], dtype=D), torch.tensor([[0.95]], dtype=D)
    assert float(acqf(good)) > float(acqf(bad))


def test_log_variants_agree_with_their_plain_forms(toy_posterior: GPPosterior) -> None:
    X = torch.linspace(0, 1, 21, dtype=D).unsqueeze(-1)
    best_f = float(toy_posterior.y_train.max())
    ei = ExpectedImprovement(toy_posterior, best_f)(X)
    logei = LogExpectedImprovement(toy_posterior, best_f)(X)
    positive = ei > 1e-300
    assert torch.allclose(torch.exp(logei[positive]), ei[positive], rtol=1e-8)
    mean, var = toy_posterior(X)
    z = (mean - best_f) / var.sqrt()
    assert torch.allclose(torch.exp(ProbabilityOfImprovement(toy_posterior, best_f)(X)), torch.special.ndtr(z))
    ucb = UpperConfidenceBound(toy_posterior, beta=4.0)(X)
    assert torch.allclose(ucb, mean + 2.0 * var.sqrt())


def test_a_single_point_and_a_batch_give_the_same_score(toy_posterior: GPPosterior) -> None:
    acqf = LogExpectedImprovement(toy_posterior, 0.5)
    x = torch.tensor([0.42], dtype=D)
    assert torch.allclose(acqf(x), acqf(x.unsqueeze(0)))


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'ei', 'logei', 'pi', 'ucb', 'lcb', 'hedge'.*acquisition='qei'"):
        validate_acquisition("qei")
    assert validate_acquisition("LogEI") == "logei"
    assert validate_acquisition("gp_hedge") == "hedge"
    assert set(ACQUISITIONS) == {"ei", "logei", "pi", "ucb", "lcb", "hedge"}


def test_bad_constants_are_rejected(toy_posterior: GPPosterior) -> None:
    with pytest.raises(ValueError, match="beta=-1"):
        UpperConfidenceBound(toy_posterior, beta=-1.0)
    with pytest.raises(ValueError, match="best_f=nan"):
        ExpectedImprovement(toy_posterior, best_f=float("nan"))


def test_hedge_probabilities_favour_the_larger_gain() -> None:
    p = hedge_probabilities(np.array([0.0, 2.0, 1.0]), eta=1.0)
    assert p.sum() == pytest.approx(1.0) and p.argmax() == 1
    assert np.allclose(hedge_probabilities(np.array([5.0, 5.0]), eta=3.0), [0.5, 0.5])


@pytest.mark.parametrize("name", ["logei", "ei", "pi"])
def test_cost_weighted_divides_the_improvement_by_the_predicted_cost(name: str) -> None:
    X = torch.tensor([[0.1], [0.4], [0.9]], dtype=D)
    mask = torch.tensor([False])
    objective = GPPosterior.from_model(GPModel(X, torch.tensor([0.3, -1.0, 1.2], dtype=D), mask))
    log_cost = GPPosterior.from_model(GPModel(X, torch.tensor([-1.0, 0.5, 1.0], dtype=D), mask))
    plain = build_acquisition(name, objective, best_f=1.2, beta=2.0)
    per_cost = CostWeighted(plain, log_cost, cost_scale=0.7, exponent=0.5, log_scale=name != "ei")
    Xq = torch.tensor([[0.0], [0.3], [0.65], [1.0]], dtype=D)
    with torch.no_grad():
        penalty = 0.5 * 0.7 * log_cost(Xq)[0]  # exponent * log c(x), up to a constant
        expected = plain(Xq) - penalty if name != "ei" else plain(Xq) / torch.exp(penalty)
        torch.testing.assert_close(per_cost(Xq), expected)
    assert per_cost(Xq[0]).shape == (1,)  # one point, as every acquisition takes it


def test_cost_weighted_rejects_a_non_positive_exponent() -> None:
    X = torch.tensor([[0.0], [1.0]], dtype=D)
    gp = GPPosterior.from_model(GPModel(X, torch.tensor([0.0, 1.0], dtype=D), torch.tensor([False])))
    with pytest.raises(ValueError, match="exponent=0"):
        CostWeighted(ExpectedImprovement(gp, 1.0), gp, cost_scale=1.0, exponent=0, log_scale=False)


@pytest.mark.parametrize("name", ["logei", "ucb"])
def test_fixed_columns_score_the_free_columns_with_the_last_ones_held(name: str) -> None:
    X = torch.tensor([[0.1, 0.0], [0.4, 1.0], [0.9, 0.5]], dtype=D)  # columns: x, a context
    gp = GPPosterior.from_model(GPModel(X, torch.tensor([0.3, -1.0, 1.2], dtype=D), torch.tensor([False, False])))
    full = build_acquisition(name, gp, best_f=1.2, beta=2.0)
    held = FixedColumns(full, [0.75])
    Xq = torch.tensor([[0.0], [0.3], [0.65]], dtype=D, requires_grad=True)
    torch.testing.assert_close(held(Xq), full(torch.cat([Xq, torch.full((3, 1), 0.75, dtype=D)], dim=1)))
    (grad,) = torch.autograd.grad(held(Xq).sum(), Xq)  # the optimiser's gradients reach the free columns
    assert grad.shape == (3, 1) and bool(torch.isfinite(grad).all()) and bool((grad != 0).any())
    assert held(Xq[0].detach()).shape == (1,)


def test_trust_region_keeps_the_score_inside_and_lowers_it_by_the_squared_excess_outside() -> None:
    X = torch.tensor([[0.1, 0.0], [0.4, 1.0], [0.9, 0.5]], dtype=D)  # columns: continuous, categorical
    gp = GPPosterior.from_model(GPModel(X, torch.tensor([0.3, -1.0, 1.2], dtype=D), torch.tensor([False, True])))
    logei = build_acquisition("logei", gp, best_f=1.2, beta=2.0)
    box = TrustRegion(logei, centre=[0.5, 0.0], half_width=[0.1, 0.0], mask=[True, False])
    Xq = torch.tensor([[0.45, 1.0], [0.6, 0.0], [0.75, 0.0], [0.2, 1.0]], dtype=D, requires_grad=True)
    excess = torch.tensor([0.0, 0.0, 0.15, 0.2], dtype=D)  # the categorical column is not confined
    torch.testing.assert_close(box(Xq), logei(Xq) - 1e4 * excess**2)
    (grad,) = torch.autograd.grad(box(Xq).sum(), Xq)  # smooth: finite gradients pulling back inside
    assert bool(torch.isfinite(grad).all()) and grad[2, 0] < 0 < grad[3, 0]
    assert box(Xq[0].detach()).shape == (1,)
    with pytest.raises(ValueError, match="half_width must be 2 numbers >= 0"):
        TrustRegion(logei, centre=[0.5, 0.0], half_width=[-0.1, 0.0], mask=[True, False])
