"""The Lightning search runner: one Trainer per trial, trials stored as they run."""

from frameworm_lightning.runner._execute import TrialReporter, TrialSpec, execute_trial, read_metric, trial_dir
from frameworm_lightning.runner._progress import TrialPrinter
from frameworm_lightning.runner._routing import check_keys, route_params
from frameworm_lightning.runner._runner import SearchRunner

__all__ = [
    "SearchRunner",
    "TrialPrinter",
    "TrialReporter",
    "TrialSpec",
    "check_keys",
    "execute_trial",
    "read_metric",
    "route_params",
    "trial_dir",
]
