"""The seed's usage examples, run as written (frameworm.search -> frameworm_lightning.search)."""

from __future__ import annotations

import math
import re
import sys

import pytest

from frameworm_lightning import FramewormError, TrialState

config = {"training": {"lr": 0.01, "batch_size": 32, "epochs": 3}, "model": {"hidden": 64}}


def train_fn(config):
    """A stand-in training run whose validation loss is best at lr=1e-3, batch size 128."""
    lr, bs = config["training"]["lr"], config["training"]["batch_size"]
    return {"val_loss": (math.log10(lr) + 3) ** 2 + (math.log2(bs) - 7) ** 2 / 10, "val_acc": 0.9}


def test_grid_search_example():
    from frameworm_lightning.search import GridSearch

    search = GridSearch(
        base_config=config,
        search_space={
            'training.lr': [0.001, 0.0001],
            'training.batch_size': [64, 128, 256]
        },
        metric='val_loss',
        mode='min'
    )

    best_config, best_score = search.run(train_fn, n_jobs=1)
    assert best_config["training"] == {"lr": 0.001, "batch_size": 128, "epochs": 3}
    assert best_score == 0.0
    assert len(search.result.trials) == 6
    assert config["training"]["lr"] == 0.01, "the caller's config is not mutated"


def test_random_search_example():
    from frameworm_lightning.search import RandomSearch
    from frameworm_lightning.search.space import Real, Integer

    search = RandomSearch(
        base_config=config,
        search_space={
            'training.lr': Real(1e-5, 1e-2, log=True),
            'training.batch_size': Integer(32, 256, log=True)
        },
        n_trials=50,
        random_state=42
    )

    best_config, best_score = search.run(train_fn)
    assert len(search.result.trials) == 50
    assert 1e-5 <= best_config["training"]["lr"] <= 1e-2 and 32 <= best_config["training"]["batch_size"] <= 256
    assert best_score < 0.1
    again = RandomSearch(base_config=config, search_space={'training.lr': Real(1e-5, 1e-2, log=True),
                                                           'training.batch_size': Integer(32, 256, log=True)},
                         n_trials=50, random_state=42, verbose=False)
    assert again.run(train_fn) == (best_config, best_score), "random_state makes the search reproducible"


def test_bayesian_search_example():
    from frameworm_lightning.search import BayesianSearch
    from frameworm_lightning.search.space import Real, Integer

    search_space = {
        'training.lr': Real(1e-5, 1e-2, log=True),
        'training.batch_size': Integer(32, 256, log=True)
    }
    search = BayesianSearch(
        base_config=config,
        search_space=search_space,
        n_trials=50,
        n_initial_points=10,
        acquisition='ei'
    )

    best_config, best_score = search.run(train_fn)
    assert len(search.result.trials) == 50
    assert best_score < 0.02, "the GP homes in on lr=1e-3, batch size 128"
    assert abs(math.log10(best_config["training"]["lr"]) + 3) < 0.15
    assert 100 <= best_config["training"]["batch_size"] <= 165


def test_failing_train_fn_is_recorded_and_the_search_goes_on():
    from frameworm_lightning.search import GridSearch

    def flaky(config):
        if config["training"]["lr"] > 0.005:
            raise RuntimeError("diverged at step 3")
        if config["training"]["batch_size"] == 256:
            return float("nan")
        return train_fn(config)

    search = GridSearch(base_config=config, search_space={"training.lr": [0.001, 0.01],
                                                          "training.batch_size": [128, 256]}, verbose=False)
    best_config, _ = search.run(flaky)
    states = [t.state for t in search.result.trials]
    assert states.count(TrialState.FAILED) == 3 and states.count(TrialState.COMPLETE) == 1
    assert best_config["training"] == {"lr": 0.001, "batch_size": 128, "epochs": 3}
    errors = [t.error for t in search.result.trials if t.error]
    assert any("diverged at step 3" in e for e in errors) and any("nan" in e for e in errors)


def test_all_failed_and_bad_keys_are_clear_errors():
    from frameworm_lightning import ConfigKeyError
    from frameworm_lightning.search import GridSearch

    def boom(config):
        raise ValueError("boom")

    with pytest.raises(FramewormError, match="no trial completed.*boom"):
        GridSearch(base_config=config, search_space={"training.lr": [0.1]}, verbose=False).run(boom)
    with pytest.raises(ConfigKeyError, match="'optim.lr'.*no 'optim'"):
        GridSearch(base_config=config, search_space={"optim.lr": [0.1]})
    with pytest.raises(FramewormError, match="metric 'val_loss' was never logged; logged metrics: acc"):
        GridSearch(base_config=config, search_space={"training.lr": [0.1]}, verbose=False,
                   stop_on_error=True).run(lambda c: {"acc": 1.0})


def test_train_fn_with_trial_reports_intermediate_values():
    from frameworm_lightning.search import GridSearch

    def fn(config, trial):
        for step in range(3):
            trial.report(step, config["training"]["lr"] * (3 - step))
        return config["training"]["lr"]

    search = GridSearch(base_config=config, search_space={"training.lr": [0.1, 0.2]}, verbose=False)
    search.run(fn)
    assert search.result.trials[0].intermediate_values == pytest.approx({0: 0.3, 1: 0.2, 2: 0.1})


def test_resume_through_storage(tmp_path):
    from frameworm_lightning.search import GridSearch

    calls = []

    def counting(config):
        calls.append(config["training"]["lr"])
        return train_fn(config)

    url = f"sqlite:///{tmp_path / 'seed.db'}"
    kw = dict(base_config=config, search_space={"training.lr": [0.001, 0.01, 0.1]}, storage=url,
              study_name="seed", verbose=False)
    GridSearch(n_trials=2, **kw).run(counting)
    GridSearch(**kw).run(counting)
    assert calls == [0.001, 0.01, 0.1], "stored trials are not re-run"


def test_a_wrong_metric_name_stops_the_search_at_the_first_trial():
    from frameworm_lightning import MetricNotFoundError
    from frameworm_lightning.search import GridSearch

    search = GridSearch(base_config={"x": 0}, search_space={"x": [0, 1, 2]}, metric="los", verbose=False)
    # The fix it named was Lightning's (self.log), which a train_fn has not.
    with pytest.raises(MetricNotFoundError, match=r"metric 'los' was never logged; logged metrics: acc, loss\. "
                                                  r"Return it in train_fn's dict \(\{'los': \.\.\.\}\), or pick one "
                                                  r"of those as metric=\.$"):
        search.run(lambda c: {"loss": c["x"], "acc": 1.0})
    assert len(search.study.trials) == 1


def test_a_missing_metric_after_a_complete_trial_fails_that_trial_only():
    from frameworm_lightning.search import GridSearch

    search = GridSearch(base_config={"x": 0}, search_space={"x": [0, 1, 2]}, metric="loss", verbose=False)
    best, score = search.run(lambda c: {"loss": c["x"]} if c["x"] != 1 else {"acc": 1.0})
    assert best == {"x": 0} and score == 0
    assert [t.state.value for t in search.study.trials] == ["COMPLETE", "FAILED", "COMPLETE"]


def test_sys_exit_in_train_fn_fails_only_that_trial():
    from frameworm_lightning.search import GridSearch

    def train(config):
        if config["x"] == 1:
            sys.exit(4)
        return config["x"]

    search = GridSearch(base_config={"x": 0}, search_space={"x": [1, 0]}, metric="loss", verbose=False)
    assert search.run(train)[1] == 0
    failed = search.study.trials[0]
    assert failed.state.value == "FAILED" and failed.reason == "the trial called sys.exit(4)"


def test_a_search_key_whose_leaf_is_not_in_the_base_config_warns_before_anything_runs():
    # A typo ('training.lrr' for 'training.lr') silently added a key train_fn never reads:
    # every trial trained the base lr and the search compared nothing.
    import warnings

    from frameworm_lightning.search import GridSearch

    base = {"training": {"lr": 0.01, "batch_size": 64}}
    with pytest.warns(UserWarning, match=r"search key 'training\.lrr' is not in base_config \(its 'training' has "
                                         r"batch_size, lr\): train_fn gets it as a new key; a typo\?"):
        GridSearch(base, {"training.lrr": [0.1, 0.2]}, metric="loss", verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GridSearch(base, {"training.lr": [0.1, 0.2]}, metric="loss", verbose=False)
        GridSearch({}, {"x": [1, 2]}, metric="loss", verbose=False)  # no base config: every key is new


@pytest.mark.parametrize("returned", [None, "0.5", [0.5]])
def test_a_train_fn_that_returns_no_number_stops_the_search_at_the_first_trial(returned):
    # Every trial ran (50 of RandomSearch's 50), each stored FAILED with the same TypeError,
    # then 'no trial completed'.
    from frameworm_lightning import TrialFailed
    from frameworm_lightning.search import GridSearch

    search = GridSearch(base_config={"x": 0}, search_space={"x": [0, 1, 2]}, metric="loss", verbose=False)
    with pytest.raises(TrialFailed, match=r"train_fn must return a number or a dict of metrics holding 'loss', but "
                                          rf"got {re.escape(repr(returned))}\. \(its first result: every trial would "
                                          r"fail the same way, so the search stopped\)"):
        search.run(lambda c: returned)
    assert len(search.study.trials) == 1


def test_a_train_fn_that_returns_no_number_after_a_complete_trial_fails_that_trial_only():
    from frameworm_lightning.search import GridSearch

    search = GridSearch(base_config={"x": 0}, search_space={"x": [0, 1, 2]}, metric="loss", verbose=False)
    assert search.run(lambda c: None if c["x"] == 1 else c["x"]) == ({"x": 0}, 0)
    assert [t.state.value for t in search.study.trials] == ["COMPLETE", "FAILED", "COMPLETE"]
