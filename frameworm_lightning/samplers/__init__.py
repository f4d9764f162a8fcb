"""Samplers: propose configurations through one ``ask(context) -> Suggestion`` method."""

from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion
from frameworm_lightning.samplers._grid import GridSampler
from frameworm_lightning.samplers._random import RandomSampler
from frameworm_lightning.samplers._sobol import SobolSampler

__all__ = ["AskContext", "GridSampler", "RandomSampler", "Sampler", "SobolSampler", "Suggestion"]
