"""The seed's search API: ``GridSearch``, ``RandomSearch`` and ``BayesianSearch``.

Example:
    >>> from frameworm_lightning.search import BayesianSearch, GridSearch, RandomSearch
    >>> from frameworm_lightning.search.space import Integer, Real
"""

from frameworm_lightning.search._function import BayesianSearch, FunctionSearch, GridSearch, RandomSearch
from frameworm_lightning.search.space import Categorical, Integer, Real

__all__ = ["BayesianSearch", "Categorical", "FunctionSearch", "GridSearch", "Integer", "RandomSearch", "Real"]
