"""Samplers: propose configurations through one ``ask(context) -> Suggestion`` method."""

from frameworm_lightning._lazy import lazy_attributes
from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion
from frameworm_lightning.samplers._grid import GridSampler
from frameworm_lightning.samplers._random import RandomSampler
from frameworm_lightning.samplers._sobol import SobolSampler

__all__ = [
    "AskContext",
    "BayesianSampler",
    "GridSampler",
    "MultiFidelitySampler",
    "RandomSampler",
    "Sampler",
    "SobolSampler",
    "Suggestion",
]

# PEP 562: these import torch and GPyTorch on first use only.
_LAZY = {
    "BayesianSampler": "frameworm_lightning.samplers._bayes",
    "MultiFidelitySampler": "frameworm_lightning.samplers._multifidelity",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
