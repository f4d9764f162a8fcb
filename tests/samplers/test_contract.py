"""The sampler contract, run over every built-in sampler."""

from __future__ import annotations

from frameworm_lightning import GridSampler, RandomSampler, SobolSampler
from frameworm_lightning.testing import SamplerContract


class TestRandomSampler(SamplerContract):
    def make_sampler(self, seed):
        return RandomSampler(seed=seed)


class TestSobolSampler(SamplerContract):
    def make_sampler(self, seed):
        return SobolSampler(seed=seed)


class TestShuffledGridSampler(SamplerContract):
    def make_sampler(self, seed):
        return GridSampler(shuffle=True, seed=seed)


class TestGridSampler(SamplerContract):
    def make_sampler(self, seed):
        return GridSampler()

    def test_different_seeds_differ(self):
        # An unshuffled grid has one lexicographic order whatever the seed, by design.
        from frameworm_lightning.testing.samplers import _run

        a = [t.params for t in _run(GridSampler(seed=1), 5).trials]
        assert a == [t.params for t in _run(GridSampler(seed=2), 5).trials]
        assert a[0]["model.act"] == "relu" and a[1]["model.act"] == "gelu"
