"""Stopping policies: prune, pause or finish trials, in a search or in any Lightning script.

Every policy is a Lightning callback around a pure ``decide(history) -> StopDecision``::

    trainer = Trainer(callbacks=[ImprovementStopping(monitor="val_loss", patience=3)])
    trainer = Trainer(callbacks=[MedianStopping(monitor="val_loss", storage="sqlite:///runs.db", study="vae")])
    SearchRunner(metric="val_loss", callbacks=[ASHA(min_resource=1, max_resource=27)])

See ``docs/stopping.md`` for the policies, the runner integration and the benchmark.
"""

from frameworm_lightning.stopping._base import (
    Check,
    Decision,
    History,
    Reason,
    StopDecision,
    StoppingPolicy,
    trained_steps,
)
from frameworm_lightning.stopping._budget import BudgetStopping
from frameworm_lightning.stopping._callback import StoppingCallback
from frameworm_lightning.stopping._combine import AllOf, AnyOf
from frameworm_lightning.stopping._halving import ASHA, SuccessiveHalving
from frameworm_lightning.stopping._hyperband import Hyperband
from frameworm_lightning.stopping._improvement import ImprovementStopping
from frameworm_lightning.stopping._median import MedianStopping
from frameworm_lightning.stopping._promotions import Promotion, Promotions
from frameworm_lightning.stopping._rungs import Bracket, rung_resources
from frameworm_lightning.stopping._threshold import ThresholdStopping

__all__ = [
    "ASHA",
    "AllOf",
    "AnyOf",
    "Bracket",
    "BudgetStopping",
    "Check",
    "Decision",
    "History",
    "Hyperband",
    "ImprovementStopping",
    "MedianStopping",
    "Promotion",
    "Promotions",
    "Reason",
    "StopDecision",
    "StoppingCallback",
    "StoppingPolicy",
    "SuccessiveHalving",
    "ThresholdStopping",
    "rung_resources",
    "trained_steps",
]
