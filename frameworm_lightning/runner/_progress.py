"""One line per finished trial: number, state, value, best so far, params, duration.

An interrupted trial (a signal, a lost worker: stored ``FAILED`` with ``interrupted``) is
shown ``INTERRUPTED`` with where its params run again, in every execution mode::

    trial   0 INTERRUPTED val_loss=-  best=-  lr=0.1 [1.9s]  (the search was stopped by SIGINT; runs first on resume as trial 2)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["TrialPrinter", "format_params"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if isinstance(value, str) else str(value)


def format_params(params: Mapping[str, Any]) -> str:
    """``lr=0.001 hidden=64`` with floats shortened to 4 significant digits."""
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


class TrialPrinter:
    """Prints each finished trial as one line, keeping track of the best so far."""

    def __init__(self, metric: str, mode: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.metric = metric
        self.mode = mode
        self.stream = stream
        self.enabled = enabled
        self.best: FrozenTrial | None = None

    def observe(self, trial: FrozenTrial) -> None:
        """Update the best with ``trial`` without printing (e.g. trials of an earlier run)."""
        if trial.state is TrialState.COMPLETE and trial.value is not None and math.isfinite(trial.value):
            if self.best is None or (
                trial.value < self.best.value if self.mode == "min" else trial.value > self.best.value  # type: ignore[operator]
            ):
                self.best = trial

    def line(self, trial: FrozenTrial) -> str:
        value = "-" if trial.value is None else f"{trial.value:.6g}"
        best = "-" if self.best is None else f"{self.best.value:.6g} (trial {self.best.number})"
        took = "" if trial.duration is None else f" [{trial.duration:.1f}s]"
        state = "INTERRUPTED" if trial.interrupted else trial.state.value
        text = f"trial {trial.number:>3} {state:<8} {self.metric}={value}  best={best}  {format_params(trial.params)}{took}"
        if trial.interrupted:
            why = (trial.error or "").strip().splitlines()[0].removeprefix("interrupted: ") if trial.error else ""
            again = trial.system_attrs.get("requeued_as")
            rerun = "runs first on resume" + ("" if again is None else f" as trial {again}")
            text += f"  ({why[:160]}; {rerun})" if why else f"  ({rerun})"
        elif trial.reason:  # why it was pruned or failed, or why a policy finished it early
            text += f"  ({trial.reason.strip().splitlines()[-1][:160]})"
        return text

    def __call__(self, trial: FrozenTrial) -> None:
        self.observe(trial)
        if self.enabled:
            print(self.line(trial), file=self.stream or sys.stdout, flush=True)
