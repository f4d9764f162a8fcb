"""The seed's import path for dimensions: ``from frameworm_lightning.search.space import Real, Integer``."""

from frameworm_lightning.space import Categorical, Dimension, Integer, Real, SearchSpace

__all__ = ["Categorical", "Dimension", "Integer", "Real", "SearchSpace"]
