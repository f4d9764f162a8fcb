"""Acquisition functions: the stable log EI, and each function's ranking on a fitted toy GP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from frameworm_lightning._gp.acquisition import (
    ACQUISITIONS,
    ExpectedImprovement,
    LogExpectedImprovement,
    ProbabilityOfImprovement,
    UpperConfidenceBound,
    build_acquisition,
    hedge_probabilities,
    log_h,
    validate_acquisition,
)
from frameworm_lightning._gp.gp import GPModel, GPPosterior, fit_gp


def _naive_log_h(z: float) -> float:
    phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * math.erfc(-z / math.sqrt(2))
    return math.log(phi + z * cdf)


@pytest.mark.parametrize("z", [-8.0, -3.0, -1.5, -1.0, -0.5, 0.0, 0.7, 3.0, 10.0])
def test_log_h_matches_the_direct_formula_where_that_is_accurate(z: float) -> None:
    assert float(log_h(torch.tensor(z, dtype=torch.float64))) == pytest.approx(_naive_log_h(z), rel=1e-9, abs=1e-12)


def test_log_h_is_finite_with_finite_gradients_far_in_the_tail() -> None:
    z = torch.tensor([-1e6, -1e4, -50.0, -40.0, -1.0, 0.0, 1e3], dtype=torch.float64, requires_grad=True)
    out = log_h(z)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()  # type: ignore[arg-type]
    # Monotone increasing, as EI is in the mean.
    assert (out.diff() > 0).all()
    # Asymptotics: log h(z) ~ log phi(z) - 2 log(-z) for very negative z.
    expected = -0.5 * 1e8 - 0.5 * math.log(2 * math.pi) - 2 * math.log(1e4)
    assert float(out[1].detach()) == pytest.approx(expected, rel=1e-9)


@pytest.fixture(scope="module")
def toy_posterior() -> GPPosterior:
    """A GP fitted to -(x - 0.3)^2 at 8 points of [0, 1] (the targets are maximised)."""
    X = torch.linspace(0.0, 1.0, 8, dtype=torch.float64).unsqueeze(-1)
    y = -(X.squeeze(-1) - 0.3) ** 2
    y = (y - y.mean()) / y.std()
    model = GPModel(X, y, torch.tensor([False]))
    fit_gp(model, [None])
    return GPPosterior.from_model(model)


@pytest.mark.parametrize("name", ["ei", "logei", "pi", "ucb", "lcb"])
def test_each_acquisition_ranks_a_clearly_better_candidate_higher(toy_posterior: GPPosterior, name: str) -> None:
    best_f = float(toy_posterior.y_train.max())
    acqf = build_acquisition(name, toy_posterior, best_f, beta=2.0)
    good, bad = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[0.95]], dtype=torch.float64)
    assert float(acqf(good)) > float(acqf(bad))


def test_log_variants_agree_with_their_plain_forms(toy_posterior: GPPosterior) -> None:
    X = torch.linspace(0, 1, 21, dtype=torch.float64).unsqueeze(-1)
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
    x = torch.tensor([0.42], dtype=torch.float64)
    assert torch.allclose(acqf(x), acqf(x.unsqueeze(0)))


def test_gradients_flow_to_the_inputs(toy_posterior: GPPosterior) -> None:
    X = torch.tensor([[0.1], [0.6]], dtype=torch.float64, requires_grad=True)
    LogExpectedImprovement(toy_posterior, float(toy_posterior.y_train.max()))(X).sum().backward()
    assert torch.isfinite(X.grad).all() and (X.grad.abs() > 0).all()  # type: ignore[union-attr]


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


def test_log_h_gradient_is_phi_over_h() -> None:
    z = torch.tensor([-30.0, -5.0, -1.0, -0.3, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(log_h, (z,))


@pytest.mark.parametrize("name", ["ei", "logei", "pi", "ucb"])
def test_closed_form_gradients_match_autograd(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.rand(25, 2, generator=g, dtype=torch.float64),
                   torch.randint(0, 3, (25, 1), generator=g).to(torch.float64)], 1)
    y = torch.sin(5 * X[:, 0]) - X[:, 1] + 0.3 * X[:, 2]
    post = GPPosterior(X, (y - y.mean()) / y.std(), torch.tensor([0.3, 0.6, 0.8], dtype=torch.float64),
                       torch.tensor(1.3, dtype=torch.float64), torch.tensor(1e-4, dtype=torch.float64),
                       torch.tensor([False, False, True]))
    acqf = build_acquisition(name, post, best_f=float(post.y_train.max()), beta=2.0)
    Xs = torch.cat([torch.rand(9, 2, generator=g, dtype=torch.float64),
                    torch.randint(0, 3, (9, 1), generator=g).to(torch.float64)], 1)
    Xs[0, :2] = X[0, :2] + 0.3  # and far-away points with tiny improvement
    Xs[1] = torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64)
    fast = acqf.value_and_grad(Xs.numpy())
    assert fast is not None
    values, grads = fast
    Xg = Xs.clone().requires_grad_(True)
    ref = acqf(Xg)
    ref.sum().backward()
    assert np.allclose(values, ref.detach().numpy(), rtol=1e-9, atol=1e-9)
    assert np.allclose(grads[:, :2], Xg.grad[:, :2].numpy(), rtol=1e-6, atol=1e-9)  # type: ignore[index]
    assert np.all(grads[:, 2] == 0.0)  # categorical columns are searched exactly, not by gradient
