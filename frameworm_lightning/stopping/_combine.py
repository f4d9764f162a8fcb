"""Combinators: stop when any, or all, of several policies say so.

A combinator is the one callback of its Trainer: it reads the metric and builds the
history; its policies only ``decide`` on it (any object with ``decide(history)``, a pure
policy or another stopping callback, whose own Trainer plumbing then goes unused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


from frameworm_lightning.stopping._base import Decision, History, StopDecision, StoppingPolicy
from frameworm_lightning.stopping._callback import StoppingCallback

__all__ = ["AllOf", "AnyOf"]

# How strongly each decision stops a trial, to pick one when several policies stop it.
_SEVERITY = {Decision.CONTINUE: 0, Decision.FINISH: 1, Decision.PAUSE: 2, Decision.PRUNE: 3}


class _Combined(StoppingCallback):
    """Runs several policies on one history; subclasses say how their answers combine."""

    def __init__(
        self,
        policies: Sequence[StoppingPolicy],
        monitor: str | None = None,
        mode: str | None = None,
        **options: Any,
    ) -> None:
        name = type(self).__name__
        if isinstance(policies, (str, bytes)) or not isinstance(policies, Sequence) or not policies:
            raise ValueError(f"{name} needs a non-empty list of policies, but got policies={policies!r}.")
        for p in policies:
            if not isinstance(p, StoppingPolicy):
                raise ValueError(f"{name}: {p!r} is not a stopping policy (it has no decide(history) method).")
        monitors = {m for m in (getattr(p, "monitor", None) for p in policies) if m is not None}
        if monitor is not None:
            monitors.add(monitor)
        if len(monitors) > 1:
            raise ValueError(f"{name}: the policies monitor different metrics {sorted(monitors)}; they judge one history.")
        modes = {m for m in (getattr(p, "mode", None) for p in policies) if m is not None}
        if mode is not None:
            modes.add(mode)
        if len(modes) > 1:
            raise ValueError(f"{name}: the policies disagree on the mode {sorted(modes)}.")
        super().__init__(next(iter(monitors), None), next(iter(modes), None), **options)
        self.policies = list(policies)
        self.needs_others = any(getattr(p, "needs_others", False) for p in self.policies)
        self.batch_checks = any(getattr(p, "batch_checks", False) for p in self.policies)
        self.requires_monitor = any(getattr(p, "requires_monitor", True) for p in self.policies)

    def _each(self, method: str) -> list[Any]:
        return [p for p in self.policies if callable(getattr(p, method, None))]

    def _decisions(self, history: History) -> list[StopDecision]:
        return [p.decide(history) for p in self.policies]

    @staticmethod
    def _merge(chosen: StopDecision, decisions: list[StopDecision], message: str | None = None) -> StopDecision:
        attrs: dict[str, Any] = {}
        for d in decisions:
            attrs.update(d.attrs)
        return StopDecision(chosen.decision, chosen.reason, chosen.message if message is None else message, attrs)

    # Forward the optional parts of the policy interface to the members.
    def start_attrs(self, history: History) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        for p in self._each("start_attrs"):
            attrs.update(p.start_attrs(history))
        return attrs

    def scheduler(self) -> Any:
        schedulers = [s for p in self._each("scheduler") if (s := p.scheduler()) is not None]
        if len(schedulers) > 1:
            return _Schedulers(schedulers)
        return schedulers[0] if schedulers else None

    def trainer_limits(self) -> dict[str, Any]:
        limits: dict[str, Any] = {}
        for p in self._each("trainer_limits"):
            limits.update(p.trainer_limits())
        return limits

    def resume_limits(self, attrs: dict[str, Any]) -> dict[str, Any]:
        limits: dict[str, Any] = {}
        for p in self._each("resume_limits"):
            limits.update(p.resume_limits(attrs))
        return limits

    def _needs_value_at(self, step: int) -> bool:
        return any(p._needs_value_at(step) for p in self._each("_needs_value_at"))

    @property
    def pauses_trials(self) -> bool:
        return any(getattr(p, "pauses_trials", False) for p in self.policies)

    def _key_args(self) -> dict[str, Any]:
        return {"policies": [getattr(p, "state_key", type(p).__name__) for p in self.policies]}


class _Schedulers:
    """Several policies' schedulers as one: budgets pass through each in turn."""

    def __init__(self, schedulers: Sequence[Any]) -> None:
        self.schedulers = list(schedulers)

    def trial_budget(self, study: Any, n_trials: int) -> int:
        for scheduler in self.schedulers:
            n_trials = scheduler.trial_budget(study, n_trials)
        return n_trials

    def on_search_end(self, study: Any) -> None:
        for scheduler in self.schedulers:
            scheduler.on_search_end(study)


class AnyOf(_Combined):
    """Stops a trial as soon as any of its policies does.

    When several stop it at once, the strongest decision wins (``PRUNE`` over ``PAUSE``
    over ``FINISH``), the first listed among equals. What every policy records (halving
    rungs) is kept.

    Args:
        policies: the policies (any object with ``decide(history)``); their ``monitor``
            and ``mode`` must agree, and are this callback's defaults.
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.

    Example:
        >>> from frameworm_lightning.stopping import History, ImprovementStopping, ThresholdStopping
        >>> guard = AnyOf([ImprovementStopping(patience=5), ThresholdStopping(threshold=2.0)], monitor="val_loss")
        >>> guard.decide(History({1: 1.0, 2: 3.0})).reason.name
        'THRESHOLD'
    """

    def decide(self, history: History) -> StopDecision:
        decisions = self._decisions(history)
        chosen = max(decisions, key=lambda d: _SEVERITY[d.decision])  # max keeps the first among equals
        return self._merge(chosen, decisions)


class AllOf(_Combined):
    """Stops a trial only when every one of its policies says to stop.

    The trial is then stored as the mildest of their decisions asks (``FINISH`` over
    ``PAUSE`` over ``PRUNE``), with all their reasons. Arguments as for :class:`AnyOf`.

    Example:
        >>> from frameworm_lightning.stopping import History, ImprovementStopping, ThresholdStopping
        >>> both = AllOf([ImprovementStopping(patience=1), ThresholdStopping(threshold=2.0)], monitor="val_loss")
        >>> both.decide(History({1: 3.0, 2: 2.5})).decision.name
        'CONTINUE'
        >>> both.decide(History({1: 3.0, 2: 3.5})).decision.name
        'FINISH'
    """

    def decide(self, history: History) -> StopDecision:
        decisions = self._decisions(history)
        if not all(d.stops for d in decisions):
            return self._merge(StopDecision(), decisions)
        chosen = min(decisions, key=lambda d: _SEVERITY[d.decision])
        return self._merge(chosen, decisions, message="; ".join(d.describe() for d in decisions))
