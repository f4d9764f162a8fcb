"""frameworm-lightning: hyperparameter search that lives inside PyTorch Lightning.

Three ways in:

* drop a stopping callback into the ``Trainer`` you already have;
* ``SearchRunner(...).fit(MyLightningModule, space)`` for a whole search;
* the ``frameworm-search`` command with a LightningCLI-style YAML file.
"""

from frameworm_lightning._lazy import lazy_attributes
from frameworm_lightning.exceptions import (
    ConfigKeyError,
    FramewormError,
    MetricNotFoundError,
    SamplerError,
    SpaceError,
    StorageError,
    StudyMismatchError,
    TrialFailed,
)
from frameworm_lightning.samplers import AskContext, GridSampler, RandomSampler, Sampler, SobolSampler, Suggestion
from frameworm_lightning.space import Categorical, Dimension, Integer, Real, SearchSpace
from frameworm_lightning.storage import Storage, open_storage
from frameworm_lightning.study import Study, Trial
from frameworm_lightning.trial import FrozenTrial, LiveTrial, TrialState

__version__ = "0.1.0"

# Names whose modules pull in Lightning (or other heavy libraries) load on first use, so
# `import frameworm_lightning` stays cheap for worker processes, the CLI and storage tools.
_LAZY = {
    "BayesianSampler": "frameworm_lightning.samplers",
    "SearchResult": "frameworm_lightning.result",
    "SearchRunner": "frameworm_lightning.runner",
    "ASHA": "frameworm_lightning.stopping",
    "AllOf": "frameworm_lightning.stopping",
    "AnyOf": "frameworm_lightning.stopping",
    "BudgetStopping": "frameworm_lightning.stopping",
    "Decision": "frameworm_lightning.stopping",
    "History": "frameworm_lightning.stopping",
    "Hyperband": "frameworm_lightning.stopping",
    "MultiFidelitySampler": "frameworm_lightning.samplers",
    "ImprovementStopping": "frameworm_lightning.stopping",
    "MedianStopping": "frameworm_lightning.stopping",
    "Reason": "frameworm_lightning.stopping",
    "StopDecision": "frameworm_lightning.stopping",
    "StoppingCallback": "frameworm_lightning.stopping",
    "SuccessiveHalving": "frameworm_lightning.stopping",
    "ThresholdStopping": "frameworm_lightning.stopping",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

__all__ = [
    "ASHA",
    "AllOf",
    "AnyOf",
    "AskContext",
    "BayesianSampler",
    "BudgetStopping",
    "Categorical",
    "ConfigKeyError",
    "Decision",
    "Dimension",
    "FramewormError",
    "FrozenTrial",
    "LiveTrial",
    "GridSampler",
    "History",
    "Hyperband",
    "ImprovementStopping",
    "Integer",
    "MedianStopping",
    "MetricNotFoundError",
    "MultiFidelitySampler",
    "RandomSampler",
    "Real",
    "Reason",
    "Sampler",
    "SamplerError",
    "SearchResult",
    "SearchRunner",
    "SearchSpace",
    "SobolSampler",
    "SpaceError",
    "StopDecision",
    "StoppingCallback",
    "Storage",
    "StorageError",
    "Study",
    "StudyMismatchError",
    "SuccessiveHalving",
    "Suggestion",
    "ThresholdStopping",
    "Trial",
    "TrialFailed",
    "TrialState",
    "open_storage",
]
