"""Trials: the record of one evaluated configuration, and the trial being run.

A :class:`FrozenTrial` is a read-only snapshot of a stored trial. Its
``intermediate_values`` are keyed by the trainer's global step, so several validations
within one epoch are all kept. :class:`LiveTrial` is what the code running a trial
(the runner, stopping callbacks, a ``train_fn``) sees of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol, runtime_checkable

__all__ = ["INTERRUPTED", "PROMOTED", "FrozenTrial", "LiveTrial", "TrialState", "count_states"]


class TrialState(str, Enum):
    """The life cycle of a trial.

    ``WAITING`` trials are enqueued configurations not yet claimed by a worker.
    """

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAILED = "FAILED"

    @property
    def is_finished(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


@dataclass(frozen=True)
class FrozenTrial:
    """A snapshot of one trial as stored.

    Attributes:
        number: the trial's number in its study, from 0.
        state: see :class:`TrialState`.
        params: the configuration, dotted keys to values (empty while a new trial is
            being sampled).
        value: the objective (``None`` unless ``COMPLETE`` or ``PRUNED``).
        intermediate_values: reported values by global step.
        started_at / completed_at: Unix timestamps.
        error: the traceback or cause of a failure.
        reason: why the trial ended as it did (``"interrupted"``, a pruning reason...).
        user_attrs: free-form attributes set by the user.
        system_attrs: attributes the library keeps (checkpoint path, requeue links...).
        claim_key: a key unique in the study (a grid point), held by at most one live trial.
    """

    number: int
    state: TrialState
    params: dict[str, Any] = field(default_factory=dict)
    value: float | None = None
    intermediate_values: dict[int, float] = field(default_factory=dict)
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    reason: str | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    trial_id: int | None = None
    claim_key: str | None = None

    @property
    def datetime_start(self) -> datetime | None:
        return _dt(self.started_at)

    @property
    def datetime_complete(self) -> datetime | None:
        return _dt(self.completed_at)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or ``None`` while unfinished."""
        if self.started_at is None or self.completed_at is None:
            return None
        return self.completed_at - self.started_at

    @property
    def last_step(self) -> int | None:
        return max(self.intermediate_values) if self.intermediate_values else None

    @property
    def interrupted(self) -> bool:
        """A failure caused by the process dying, not by the trial's own error."""
        return self.state is TrialState.FAILED and bool(self.system_attrs.get("interrupted"))

    @property
    def promoted(self) -> bool:
        """Paused by a halving policy (stored ``PRUNED``), then continued by the trial ``promoted_to``."""
        return self.state is TrialState.PRUNED and self.system_attrs.get("promoted_to") is not None

    @property
    def has_params(self) -> bool:
        return bool(self.params)

    def best_intermediate(self, mode: str) -> float | None:
        """The best finite reported value, for ``mode`` ``"min"`` or ``"max"``."""
        finite = [v for v in self.intermediate_values.values() if v is not None and math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if mode == "min" else max(finite)


class StudyView(Protocol):
    """What a running trial knows of its study."""

    name: str
    metric: str
    mode: str


@runtime_checkable
class LiveTrial(Protocol):
    """A trial being run: what the runner, stopping callbacks and a ``train_fn`` use of it.

    Three kinds implement it: a search's trial (:class:`frameworm_lightning.study.Trial`),
    its view on DDP ranks above 0 (``runner._trial_entry.FollowerTrial``, which never
    writes to storage), and the run of a user's own training script that a stopping
    callback records (``stopping._script.ScriptTrial``). Reports are keyed by global
    step; the outcome is stored once, by whichever of ``complete``, ``prune``, ``fail``
    or ``interrupt`` comes first (they return whether this call stored it). A stopping
    policy that ends the trial early says why with ``request_prune`` (stored ``PRUNED``)
    or ``request_finish`` (stored ``COMPLETE``); either reason is stored as the trial's
    ``reason``.
    """

    number: int
    trial_id: int | None
    system_attrs: dict[str, Any]
    intermediate_values: dict[int, float]
    prune_reason: str | None
    finish_reason: str | None

    @property
    def study(self) -> StudyView: ...

    def report(self, step: int, value: float) -> None:
        """Store the monitored value at ``step``."""

    def set_system_attr(self, key: str, value: Any) -> None:
        """Attach an attribute the library uses (checkpoint path, resources...)."""

    def request_prune(self, reason: str) -> None:
        """Ask for the trial to be stored ``PRUNED`` when it ends (first reason wins)."""

    def request_finish(self, reason: str) -> None:
        """Say why a stopping policy ended training early though the trial is complete
        (it converged, used its budget): stored as its ``reason`` (first reason wins)."""

    def should_prune(self) -> bool:
        """Whether a stopping policy asked the trial to stop."""

    def complete(self, value: float) -> bool:
        """Store the objective (a non-finite one fails the trial), with ``finish_reason`` if any."""

    def prune(self, reason: str | None = None, value: float | None = None) -> bool:
        """Store the trial ``PRUNED`` with its last finite value (or ``value``)."""

    def fail(self, error: str, reason: str | None = None) -> bool:
        """Store the trial ``FAILED`` with the error text."""

    def interrupt(self, why: str) -> bool:
        """Store the trial as interrupted: its params run again first on resume."""


#: The count of interrupted trials in :func:`count_states` (stored ``FAILED``; their params run again).
INTERRUPTED = "INTERRUPTED"


#: The count of paused trials a halving policy promoted in :func:`count_states` (stored ``PRUNED``;
#: their configuration went on as another trial, so they were not stopped).
PROMOTED = "PROMOTED"


def count_states(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials by state, every state present (zero when none), interrupted ones apart under
    :data:`INTERRUPTED` (a signal or a lost worker stopped them, not their own error) and
    paused-then-promoted ones under :data:`PROMOTED` (their configuration went on)."""
    out = {state.value: 0 for state in TrialState}
    out[INTERRUPTED] = out[PROMOTED] = 0
    for t in trials:
        out[INTERRUPTED if t.interrupted else PROMOTED if t.promoted else t.state.value] += 1
    return out
