"""Samplers: propose configurations through one ``ask(context) -> Suggestion`` method."""

from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion
from frameworm_lightning.samplers._grid import GridSampler
from frameworm_lightning.samplers._random import RandomSampler
from frameworm_lightning.samplers._sobol import SobolSampler

__all__ = ["AskContext", "BayesianSampler", "GridSampler", "RandomSampler", "Sampler", "SobolSampler", "Suggestion"]


def __getattr__(name: str):  # PEP 562: BayesianSampler imports torch and GPyTorch on first use only
    if name == "BayesianSampler":
        from frameworm_lightning.samplers._bayes import BayesianSampler

        globals()[name] = BayesianSampler
        return BayesianSampler
    raise AttributeError(f"module 'frameworm_lightning.samplers' has no attribute {name!r}")
