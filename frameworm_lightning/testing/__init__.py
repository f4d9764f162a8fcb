"""Contract test suites shipped with the package, run over every sampler (and usable by plugins)."""

from frameworm_lightning.testing.samplers import SamplerContract

__all__ = ["SamplerContract"]
