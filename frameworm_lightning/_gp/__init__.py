"""Gaussian-process Bayesian optimisation maths, apart from the sampler that uses it.

* :mod:`~frameworm_lightning._gp.encoding`: the GP's view of a search space.
* :mod:`~frameworm_lightning._gp.gp`: the GPyTorch model, its MAP fit, a cached posterior.
* :mod:`~frameworm_lightning._gp.acquisition`: acquisition functions as ``nn.Module``s.
* :mod:`~frameworm_lightning._gp.optim`: maximising an acquisition over a mixed space.

The sampler is :class:`frameworm_lightning.samplers.BayesianSampler`.
"""

from frameworm_lightning._gp.acquisition import (
    ACQUISITIONS,
    ExpectedImprovement,
    LogExpectedImprovement,
    ProbabilityOfImprovement,
    UpperConfidenceBound,
    build_acquisition,
    validate_acquisition,
)
from frameworm_lightning._gp.encoding import ModelEncoding
from frameworm_lightning._gp.gp import GPModel, GPNumericalError, GPPosterior, fit_gp, standardize
from frameworm_lightning._gp.optim import optimize_acquisition

__all__ = [
    "ACQUISITIONS",
    "ExpectedImprovement",
    "GPModel",
    "GPNumericalError",
    "GPPosterior",
    "LogExpectedImprovement",
    "ModelEncoding",
    "ProbabilityOfImprovement",
    "UpperConfidenceBound",
    "build_acquisition",
    "fit_gp",
    "optimize_acquisition",
    "standardize",
    "validate_acquisition",
]
