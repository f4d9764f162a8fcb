"""What every stopping policy shares: the decision it returns and the history it reads.

A policy is a pure function of a trial's history::

    decide(history: History) -> StopDecision

:class:`History` holds the trial's own reported values (keyed by global step), how far
it has trained (steps, epochs, seconds) and, for policies that compare trials, the
other trials of its study. :class:`StopDecision` says what to do — a :class:`Decision`
— and why. Nothing here touches a ``Trainer`` or a database: the Lightning plumbing
lives in :mod:`frameworm_lightning.stopping._callback`, so every policy can be tested
with plain lists of numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = [
    "Check",
    "Decision",
    "History",
    "Reason",
    "StopDecision",
    "StoppingPolicy",
    "better",
    "check_int",
    "check_number",
    "non_finite",
    "trained_steps",
    "worse",
]


class Decision(Enum):
    """What a policy decides at a check.

    ``PRUNE``, ``PAUSE`` and ``FINISH`` all stop training now (through
    ``trainer.should_stop``); they differ in how the trial is stored.
    """

    CONTINUE = "continue"
    #: The trial is worse than it must be (other trials, a bound, a divergence, the search
    #: budget): it is stored ``PRUNED`` with its last value and the reason.
    PRUNE = "prune"
    #: Halving inside a ``SearchRunner``: stop at a rung and wait; the trial is stored
    #: ``PRUNED`` (reason "paused at ...") with a checkpoint a promotion resumes from.
    PAUSE = "pause"
    #: The trial has had what it needs (it converged, reached its own budget or the
    #: largest resource): it is stored ``COMPLETE`` with its value.
    FINISH = "finish"

    @property
    def stops(self) -> bool:
        return self is not Decision.CONTINUE


class Reason(Enum):
    """Why a policy decided what it did (``StopDecision.message`` says it in words)."""

    NONE = "none"
    #: worse than the median of other trials at the same step (``MedianStopping``)
    BELOW_MEDIAN = "below_median"
    #: no improvement for ``patience`` checks (``ImprovementStopping``)
    NO_IMPROVEMENT = "no_improvement"
    #: worse than a bound (``ThresholdStopping``)
    THRESHOLD = "threshold"
    #: the metric is NaN or infinite: the trial diverged (every policy)
    NON_FINITE = "non_finite"
    #: the trial used its own time, step or epoch budget (``BudgetStopping``)
    TRIAL_BUDGET = "trial_budget"
    #: the search used its total time or step budget (``BudgetStopping``)
    SEARCH_BUDGET = "search_budget"
    #: not among the best ``1/eta`` at a rung (halving without a runner to pause it)
    RUNG_CUT = "rung_cut"
    #: paused at a rung until it is promoted (halving inside a ``SearchRunner``)
    RUNG_PAUSE = "rung_pause"
    #: reached the largest resource of its bracket (halving)
    MAX_RESOURCE = "max_resource"


@dataclass(frozen=True)
class StopDecision:
    """A :class:`Decision`, the reason for it, and what the callback must store on the trial.

    Attributes:
        decision: see :class:`Decision`.
        reason: see :class:`Reason`.
        message: the reason in a sentence for people (stored as the trial's ``reason``
            when it stops).
        attrs: system attributes to store on the trial (halving records its rungs there).
    """

    decision: Decision = Decision.CONTINUE
    reason: Reason = Reason.NONE
    message: str = ""
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stops(self) -> bool:
        return self.decision.stops

    def describe(self) -> str:
        """The message, or the reason's name when there is none."""
        return self.message or self.reason.value.replace("_", " ")


CONTINUE = StopDecision()


class Check(Enum):
    """When a check happens."""

    #: at the start of training (a spent budget stops a trial before its first step)
    START = "start"
    #: a new value of the monitored metric was reported (a validation, or every N batches)
    REPORT = "report"
    #: after a training batch, with no new value (per-trial budgets)
    BATCH = "batch"


@dataclass(frozen=True)
class History:
    """What a policy knows when it decides.

    Attributes:
        values: this trial's reported values of the monitored metric, by global step,
            oldest first.
        mode: ``"min"`` or ``"max"``.
        step: the trainer's global step now (defaults to the newest reported step).
        epoch: epochs trained so far, fractional within an epoch (``1.5`` is halfway
            through the second epoch).
        elapsed: seconds this trial has trained.
        check: when this check happens (:class:`Check`); only ``REPORT`` checks come
            with a new value.
        number: this trial's number in its study (``None`` without storage).
        attrs: this trial's system attributes.
        others: the other trials of the study, with their values by global step; only
            filled for policies whose ``needs_others`` is true.
        start_step: the global step this run started from (above 0 after a resume).
        can_pause: a ``SearchRunner`` will resume paused trials (halving may ``PAUSE``).
        metric: the monitored metric's name, for the decisions' messages.

    Example:
        >>> h = History({10: 0.9, 20: 0.7})
        >>> h.step, h.value, h.best
        (20, 0.7, 0.7)
    """

    values: Mapping[int, float] = field(default_factory=dict)
    mode: str = "min"
    step: int | None = None
    epoch: float = 0.0
    elapsed: float = 0.0
    check: Check = Check.REPORT
    number: int | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    others: Sequence[FrozenTrial] = ()
    start_step: int = 0
    can_pause: bool = False
    metric: str = "the metric"

    def __post_init__(self) -> None:
        ordered = dict(sorted((int(k), float(v)) for k, v in self.values.items()))
        object.__setattr__(self, "values", ordered)
        if self.step is None:
            object.__setattr__(self, "step", max(ordered) if ordered else 0)

    @property
    def fresh(self) -> bool:
        """Whether this check comes with a newly reported value."""
        return self.check is Check.REPORT and bool(self.values)

    @property
    def value(self) -> float | None:
        """The newest reported value, or ``None`` before the first report."""
        return next(reversed(self.values.values())) if self.values else None

    @property
    def best(self) -> float | None:
        """The best finite reported value, or ``None``."""
        return best_of(self.values.values(), self.mode)

    @property
    def trained_steps(self) -> int:
        """Steps trained by this run (global step minus the step it started from)."""
        return max(0, int(self.step or 0) - self.start_step)


@runtime_checkable
class StoppingPolicy(Protocol):
    """The one method a stopping policy needs (combinators accept any such object)."""

    def decide(self, history: History) -> StopDecision:
        """Decide from ``history`` whether the trial continues."""


# Small helpers shared by the policies ---------------------------------------------------
def better(a: float, b: float, mode: str) -> bool:
    """Whether ``a`` is strictly better than ``b`` (a NaN is never better)."""
    return a < b if mode == "min" else a > b


def worse(a: float, b: float, mode: str) -> bool:
    """Whether ``a`` is strictly worse than ``b``; a non-finite ``a`` is worse than anything finite."""
    if not math.isfinite(a):
        return math.isfinite(b) or math.isnan(a)
    return a > b if mode == "min" else a < b


def best_of(values: Any, mode: str) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if mode == "min" else max(finite)


def sort_key(value: float | None, mode: str) -> float:
    """Key ordering values best first, non-finite and missing values last."""
    if value is None or not math.isfinite(value):
        return math.inf
    return value if mode == "min" else -value


def trained_steps(trial: FrozenTrial) -> int:
    """Training steps a stored trial used: exact when its stopping callback recorded them,
    else estimated from its last reported step (minus the step it resumed from)."""
    attrs = trial.system_attrs
    if "fw_steps" in attrs:
        return int(attrs["fw_steps"])
    last = trial.last_step
    if last is None:
        return 0
    return max(0, int(last) - int(attrs.get("fw_start_step", 0)))


def non_finite(history: History) -> StopDecision | None:
    """``PRUNE`` when the newest value is NaN or infinite (the trial diverged), else ``None``."""
    value = history.value
    if history.fresh and value is not None and not math.isfinite(value):
        return StopDecision(Decision.PRUNE, Reason.NON_FINITE,
                            f"{history.metric!r} is {value} at step {history.step} (diverged)")
    return None


def finished_or_running(trial: FrozenTrial) -> bool:
    return trial.state is not TrialState.WAITING


def check_number(name: str, value: Any, *, minimum: float | None = None, strict: bool = False,
                 allow_none: bool = False) -> Any:
    """Validate a numeric ``__init__`` argument; raise ``ValueError`` naming it and its value."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, but got {name}={value!r}.")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, but got {name}={value!r}.")
    return value


def check_int(name: str, value: Any, *, minimum: int = 0, allow_none: bool = False) -> int | None:
    """Validate an integer ``__init__`` argument; raise ``ValueError`` naming it and its value."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, but got {name}={value!r}.")
    return value
