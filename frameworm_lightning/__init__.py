"""frameworm-lightning: hyperparameter search that lives inside PyTorch Lightning.

Three ways in:

* drop a stopping callback into the ``Trainer`` you already have;
* ``SearchRunner(...).fit(MyLightningModule, space)`` for a whole search;
* the ``frameworm-search`` command with a LightningCLI-style YAML file.
"""

from frameworm_lightning.exceptions import (
    ConfigKeyError,
    FramewormError,
    MetricNotFoundError,
    SamplerError,
    SearchStopped,
    SpaceError,
    StorageError,
    StudyMismatchError,
    TrialFailed,
)
from frameworm_lightning.result import SearchResult
from frameworm_lightning.runner import SearchRunner
from frameworm_lightning.samplers import AskContext, GridSampler, RandomSampler, Sampler, SobolSampler, Suggestion
from frameworm_lightning.space import Categorical, Dimension, Integer, Real, SearchSpace
from frameworm_lightning.storage import Storage, open_storage
from frameworm_lightning.study import Study, Trial
from frameworm_lightning.trial import FrozenTrial, TrialState

__version__ = "0.1.0"

__all__ = [
    "AskContext",
    "Categorical",
    "ConfigKeyError",
    "Dimension",
    "FramewormError",
    "FrozenTrial",
    "GridSampler",
    "Integer",
    "MetricNotFoundError",
    "RandomSampler",
    "Real",
    "Sampler",
    "SamplerError",
    "SearchResult",
    "SearchRunner",
    "SearchSpace",
    "SearchStopped",
    "SobolSampler",
    "SpaceError",
    "Storage",
    "StorageError",
    "Study",
    "StudyMismatchError",
    "Suggestion",
    "Trial",
    "TrialFailed",
    "TrialState",
    "open_storage",
]
