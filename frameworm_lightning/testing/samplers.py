"""The contract every sampler meets. Subclass :class:`SamplerContract` in a test module.

Example (in a test file)::

    from frameworm_lightning import RandomSampler
    from frameworm_lightning.testing import SamplerContract

    class TestRandomSampler(SamplerContract):
        def make_sampler(self, seed):
            return RandomSampler(seed=seed)
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from frameworm_lightning.samplers import Sampler
from frameworm_lightning.space import Categorical, Integer, Real, SearchSpace
from frameworm_lightning.study import Study

__all__ = ["SamplerContract", "mixed_space", "objective"]


def mixed_space() -> SearchSpace:
    """A space with every dimension kind: linear and log reals, integers with a step, choices."""
    return SearchSpace(
        {
            "training.lr": Real(1e-4, 1e-1, log=True, grid_points=3),
            "model.dropout": Real(0.0, 0.5, grid_points=2),
            "model.hidden": Integer(16, 128, log=True),
            "data.batch_size": Integer(16, 64, step=16),
            "model.act": Categorical(["relu", "gelu", "tanh"]),
        }
    )


def objective(params: dict[str, Any]) -> float:
    """A smooth deterministic objective on :func:`mixed_space`, best near lr=1e-2, hidden=64."""
    return (
        (math.log10(params["training.lr"]) + 2) ** 2
        + (params["model.dropout"] - 0.1) ** 2
        + (math.log2(params["model.hidden"]) - 6) ** 2 / 4
        + (params["data.batch_size"] - 32) ** 2 / 1000
        + {"relu": 0.0, "gelu": 0.1, "tanh": 0.3}[params["model.act"]]
    )


def _run(sampler: Sampler, n: int, storage: Any = None, name: str = "contract") -> Study:
    study = Study.create(name, mixed_space(), metric="loss", sampler=sampler, storage=storage)
    while (trial := study.ask(budget=n)) is not None:
        trial.complete(objective(trial.params))
    return study


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


class SamplerContract:
    """Behaviour every sampler must show. Subclasses implement :meth:`make_sampler`."""

    n_trials = 12

    def make_sampler(self, seed: int | None) -> Sampler:
        raise NotImplementedError  # each concrete test class provides its sampler

    def test_params_inside_space(self) -> None:
        study = _run(self.make_sampler(0), self.n_trials)
        space = mixed_space()
        assert len(study.trials) == self.n_trials
        for t in study.trials:
            space.validate(t.params)  # raises if a value is outside its dimension

    def test_reproducible_with_seed(self) -> None:
        a = [t.params for t in _run(self.make_sampler(7), self.n_trials).trials]
        b = [t.params for t in _run(self.make_sampler(7), self.n_trials).trials]
        assert a == b

    def test_different_seeds_differ(self) -> None:
        a = [t.params for t in _run(self.make_sampler(1), self.n_trials).trials]
        b = [t.params for t in _run(self.make_sampler(2), self.n_trials).trials]
        assert a != b

    def test_resume_continues_the_same_sequence(self, tmp_path: Any) -> None:
        url = f"sqlite:///{tmp_path / 'resume.db'}"
        whole = [t.params for t in _run(self.make_sampler(3), self.n_trials).trials]
        half = self.n_trials // 2
        _run(self.make_sampler(3), half, storage=url, name="resumed")
        resumed = _run(self.make_sampler(3), self.n_trials, storage=url, name="resumed")
        assert [t.number for t in resumed.trials] == list(range(self.n_trials))
        assert [t.params for t in resumed.trials] == whole

    def test_no_duplicates_when_bounded(self) -> None:
        space = SearchSpace({"a": [1, 2, 3], "b": Integer(0, 4, step=2), "c": Real(0, 1, grid_points=2)})
        sampler = self.make_sampler(0)
        bound = sampler.max_trials(space)
        if bound is None:
            return  # unbounded samplers may repeat in principle; covered by their own tests
        study = Study.create("bounded", space, metric="loss", sampler=sampler)
        while (trial := study.ask(budget=bound + 5)) is not None:
            trial.complete(float(trial.params["a"]))
        keys = [_key(t.params) for t in study.trials]
        assert len(keys) == bound == len(set(keys)) == 18

    def test_pending_trials_after_data_get_distinct_points(self) -> None:
        """Workers asking while others still run, once the sampler has data to model."""
        study = Study.create("pending-data", mixed_space(), metric="loss", sampler=self.make_sampler(0))
        while (trial := study.ask(budget=self.n_trials // 2)) is not None:
            trial.complete(objective(trial.params))
        held = [study.ask() for _ in range(4)]  # four workers, none finished
        assert all(t is not None for t in held)
        space = mixed_space()
        points = []
        for t in held:
            space.validate(t.params)  # type: ignore[union-attr]
            points.append(space.encode(t.params))  # type: ignore[union-attr]
        gaps = [float(np.max(np.abs(points[i] - points[j]))) for i in range(4) for j in range(i)]
        assert min(gaps) > 1e-3, f"two concurrent trials got (nearly) the same point: {gaps}"

    def test_suggests_with_pending_trials(self) -> None:
        study = Study.create("pending", mixed_space(), metric="loss", sampler=self.make_sampler(0))
        held = [study.ask() for _ in range(4)]  # running, never told
        assert all(t is not None for t in held)
        for t in held:
            mixed_space().validate(t.params)  # type: ignore[union-attr]
        keys = {_key(t.params) for t in held}  # type: ignore[union-attr]
        assert len(keys) == 4, "concurrent trials got the same point"
