"""fANOVA importance on a random forest: exact decomposition, ignored params, agreement with Optuna."""

from __future__ import annotations

import numpy as np
import pytest

from frameworm_lightning import Real, SearchResult, Study, TrialState
from frameworm_lightning.analysis import ForestANOVA, importance_table, param_importance

from ._studies import SPACE, additive, build_study


@pytest.fixture(scope="module")
def study() -> Study:
    # Shares of variance well apart (about 0.55, 0.3, 0.15, 0), so the ranking is not a coin toss.
    return build_study("importance", n=64, fn=additive, prune_every=None, fail=())


def test_a_parameter_the_objective_ignores_gets_importance_near_zero(study: Study) -> None:
    importance = param_importance(study)
    assert list(importance) == ["lr", "depth", "act", "noise"]
    assert importance["noise"] < 0.05
    assert sum(importance.values()) == pytest.approx(1.0)


def test_ranking_agrees_with_optunas_fanova_on_the_same_trials(study: Study) -> None:
    import optuna  # a test-only dependency (the dev extra)
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    distributions = {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "depth": IntDistribution(1, 8),
        "act": CategoricalDistribution(["relu", "gelu", "tanh"]),
        "noise": FloatDistribution(0.0, 1.0),
    }
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    theirs_study = optuna.create_study(direction="minimize")
    for t in study.trials_in(TrialState.COMPLETE):
        theirs_study.add_trial(optuna.trial.create_trial(params=t.params, distributions=distributions, value=t.value))
    theirs = get_param_importances(theirs_study, evaluator=FanovaImportanceEvaluator(seed=0))
    ours = param_importance(study, seed=0)
    assert list(ours) == list(theirs), (ours, theirs)
    for key in SPACE:
        assert ours[key] == pytest.approx(theirs[key], abs=0.1), (key, ours, theirs)


def test_unnormalised_main_effects_are_shares_of_the_variance(study: Study) -> None:
    table = importance_table(study, normalize=False)
    assert (table["importance"] >= 0).all() and (table["std"] >= 0).all()
    assert table["importance"].sum() <= 1.0 + 1e-9  # what is left is owed to interactions
    assert list(table.index) == list(param_importance(study))


def test_tree_decomposition_is_exact() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((40, 2))
    y = np.sin(6 * X[:, 0]) + X[:, 1] ** 2 + X[:, 0] * X[:, 1]
    anova = ForestANOVA(X, y, n_trees=3, seed=0)
    # The tree's prediction on a fine grid of cell centres integrates the boxes almost exactly.
    m = 600
    g = (np.arange(m) + 0.5) / m
    gx, gy = np.meshgrid(g, g, indexing="ij")
    for estimator, tree in zip(anova.forest.estimators_, anova.trees):
        f = estimator.predict(np.column_stack([gx.ravel(), gy.ravel()])).reshape(m, m)
        assert tree.mean == pytest.approx(f.mean(), rel=1e-2, abs=1e-3)
        assert tree.variance == pytest.approx(f.var(), rel=2e-2)
        assert tree.main_effect_variance(0) == pytest.approx(f.mean(axis=1).var(), rel=2e-2)
        assert tree.main_effect_variance(1) == pytest.approx(f.mean(axis=0).var(), rel=2e-2, abs=1e-4)
        marginal = tree.marginal([0], g[:, None])
        assert np.allclose(marginal, f.mean(axis=1), atol=2e-2)


def test_result_importance_is_the_study_importance(study: Study) -> None:
    assert SearchResult(study).importance() == param_importance(study)


def test_needs_two_complete_trials() -> None:
    study = Study.create("one", {"x": Real(0, 1)}, storage="memory")
    trial = study.ask()
    trial.complete(1.0)
    with pytest.raises(ValueError, match="at least 2 complete trials"):
        param_importance(study)


def test_a_constant_objective_has_no_important_parameter() -> None:
    study = build_study("flat", n=10, fn=lambda p: 1.0, prune_every=None, fail=())
    assert set(param_importance(study).values()) == {0.0}
