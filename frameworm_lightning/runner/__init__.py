"""The Lightning search runner: one Trainer per trial, trials stored as they run.

The names that need Lightning load on first use, so that the run loop and the trial
entry point (``runner/_loop.py``, ``runner/_trial_entry.py``) serve a function search's
worker processes without the seconds Lightning takes to import.
"""

from frameworm_lightning._lazy import lazy_attributes
from frameworm_lightning.runner._progress import TrialPrinter

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

_LAZY = {
    "SearchRunner": "frameworm_lightning.runner._runner",
    "TrialReporter": "frameworm_lightning.runner._execute",
    "TrialSpec": "frameworm_lightning.runner._execute",
    "execute_trial": "frameworm_lightning.runner._execute",
    "read_metric": "frameworm_lightning.runner._execute",
    "trial_dir": "frameworm_lightning.runner._execute",
    "check_keys": "frameworm_lightning.runner._routing",
    "route_params": "frameworm_lightning.runner._routing",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
