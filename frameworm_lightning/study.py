"""A study: a named search over one space, its sampler and its stored trials.

:class:`Study` is the one engine behind every front end (``SearchRunner``, the seed's
``GridSearch``/``RandomSearch``/``BayesianSearch``, the CLI, the workers): it claims
trials atomically, asks the sampler, and records results. :class:`Trial` is the live
handle of one running trial, given to the code that evaluates it.

Example:
    >>> from frameworm_lightning import RandomSampler, Real, Study
    >>> study = Study.create("demo", {"x": Real(-2, 2)}, metric="loss", mode="min",
    ...                      sampler=RandomSampler(seed=0))
    >>> while (trial := study.ask(budget=5)) is not None:
    ...     _ = trial.complete((trial.params["x"] - 1) ** 2)
    >>> len(study.trials), study.best_trial.value < 1.0
    (5, True)
"""

from __future__ import annotations

import json
import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from frameworm_lightning import _fork_safe as fork_safe
from frameworm_lightning.exceptions import FramewormError, SamplerError, StorageError
from frameworm_lightning.samplers import AskContext, RandomSampler, Sampler
from frameworm_lightning.space import Categorical, Dimension, Integer, Real, SearchSpace
from frameworm_lightning.storage import (
    DuplicateClaimError, Storage, TrialHistory, current_owner, open_storage, read_storage,
)
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["Study", "Trial", "recorded_space", "validate_mode"]

# How often a sampler may be asked again after its claim key was taken meanwhile.
_MAX_CLAIM_RETRIES = 50


def validate_mode(mode: str) -> str:
    """Return ``mode`` if it is ``"min"`` or ``"max"``; raise ``ValueError`` otherwise."""
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', but got mode={mode!r}.")
    return mode


def recorded_space(trials: Sequence[FrozenTrial]) -> SearchSpace:
    """The space of a study stored without one (runs recorded by stopping callbacks in plain
    scripts), read from the params its trials recorded.

    Each key becomes a dimension over the values seen: ``Integer`` or ``Real`` between the
    smallest and largest number, else ``Categorical`` of the distinct values (a key with
    one value is a one-choice ``Categorical``). A study whose runs recorded no params has
    an empty space.

    Example:
        >>> runs = [FrozenTrial(0, TrialState.COMPLETE, {"lr": 0.1, "depth": 2, "act": "relu"}),
        ...         FrozenTrial(1, TrialState.COMPLETE, {"lr": 0.01, "depth": 4, "act": "relu"})]
        >>> space = recorded_space(runs)
        >>> space["lr"], space["act"]
        (Real(low=0.01, high=0.1, log=False), Categorical(choices=['relu']))
    """
    seen: dict[str, list[Any]] = {}
    for trial in trials:
        for key, value in trial.params.items():
            seen.setdefault(key, []).append(value)
    dims: dict[str, Dimension] = {}
    for key, values in seen.items():
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if numbers and min(values) < max(values):
            ints = all(isinstance(v, int) for v in values)
            dims[key] = Integer(min(values), max(values)) if ints else Real(float(min(values)), float(max(values)))
            continue
        distinct: dict[str, Any] = {}
        for v in values:
            distinct.setdefault(json.dumps(v, sort_keys=True, default=str), v)
        dims[key] = Categorical(list(distinct.values()))
    return SearchSpace(dims, allow_empty=True)


def _keep_alive(ref: weakref.ref[Trial], stop: threading.Event, interval: float) -> None:
    """A trial's heartbeat thread: beats every ``interval`` seconds until ``stop``, until the trial no longer
    runs, or until nothing holds the trial any more."""
    while not stop.wait(interval):
        trial = ref()
        if trial is None:
            return
        try:
            running = trial._beat()
        except FramewormError:
            running = True  # a transient DB error must not kill the trial; the next beat retries
        del trial  # hold it only while beating
        if not running:
            return


class Trial:
    """The live handle of one claimed trial: report values, finish it, read its params.

    Reports go straight to storage, so stopping policies in other processes see them.
    While a trial is held, a background thread refreshes its heartbeat, which is how a
    trial whose process died is told apart from a slow one. The thread ends when the trial
    finishes or is interrupted, when storage says it no longer runs (another worker took it
    over), or when the handle is dropped unfinished.
    """

    def __init__(self, study: Study, frozen: FrozenTrial, heartbeat_interval: float | None = None) -> None:
        self.study = study
        self.number = frozen.number
        self.trial_id: int = frozen.trial_id  # type: ignore[assignment]
        self.params: dict[str, Any] = study.space.canonical(frozen.params)
        self.system_attrs = dict(frozen.system_attrs)
        self.intermediate_values: dict[int, float] = dict(frozen.intermediate_values)
        self.prune_reason: str | None = None
        self.finish_reason: str | None = None
        self._finished = False
        self._stop = threading.Event()
        interval = heartbeat_interval if heartbeat_interval is not None else study.storage.heartbeat_timeout / 4
        # The thread holds the trial weakly: a trial dropped unfinished (a user's ask() loop that gave up on
        # it) stops beating once it is collected, rather than keeping a thread and its writes for good.
        weakref.finalize(self, self._stop.set).atexit = False  # at exit the daemon thread ends with the process
        beat = threading.Thread(target=_keep_alive, args=(weakref.ref(self), self._stop, max(interval, 0.05)),
                                daemon=True, name=f"fw-heartbeat-{self.number}")
        fork_safe.register(beat).start()

    def _beat(self) -> bool:
        """Refresh the heartbeat once; ``False`` once the trial no longer runs (finished, or taken over by
        another worker that found it silent): its thread then ends."""
        with fork_safe.working():  # a trial forked from this process meanwhile waits for the write
            return self.study.storage.heartbeat(self.trial_id)

    def report(self, step: int, value: float) -> None:
        """Store the value of the monitored metric at ``step`` (the trainer's global step)."""
        value = float(value)
        self.intermediate_values[int(step)] = value
        self.study.storage.report(self.trial_id, int(step), value)

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach a JSON-able attribute to the trial."""
        self.study.storage.set_trial_attr(self.trial_id, key, value)

    def set_system_attr(self, key: str, value: Any) -> None:
        """Attach an attribute the library uses (checkpoint path, resources...)."""
        self.system_attrs[key] = value
        self.study.storage.set_trial_attr(self.trial_id, key, value, system=True)

    def should_prune(self) -> bool:
        """Whether a stopping policy has asked this trial to stop."""
        return self.prune_reason is not None

    def request_prune(self, reason: str) -> None:
        """Ask for this trial to be stored ``PRUNED`` when it ends (first reason wins)."""
        if self.prune_reason is None:
            self.prune_reason = reason

    def request_finish(self, reason: str) -> None:
        """Say why a stopping policy ended training early though the trial is complete (first reason wins)."""
        if self.finish_reason is None:
            self.finish_reason = reason

    @property
    def finished(self) -> bool:
        return self._finished

    def _finish(self, state: TrialState, **kwargs: Any) -> bool:
        self._stop.set()
        self._finished = True
        return self.study.storage.finish_trial(self.trial_id, state, owner=self.study.owner, **kwargs)

    def complete(self, value: float, **system_attrs: Any) -> bool:
        """Store the objective (and ``finish_reason``); a NaN or infinite value fails the trial instead."""
        value = float(value)
        if not math.isfinite(value):
            return self.fail(f"the objective {self.study.metric!r} is {value} (diverged)")
        return self._finish(TrialState.COMPLETE, value=value, reason=self.finish_reason, system_attrs=system_attrs)

    def prune(self, reason: str | None = None, value: float | None = None) -> bool:
        """Store the trial ``PRUNED`` with its last finite value (or ``value``)."""
        if value is None or not math.isfinite(value):
            finite = [v for _, v in sorted(self.intermediate_values.items()) if math.isfinite(v)]
            value = finite[-1] if finite else None
        return self._finish(TrialState.PRUNED, value=value, reason=reason or self.prune_reason or "pruned")

    def fail(self, error: str, reason: str | None = None) -> bool:
        """Store the trial ``FAILED`` with the error text (a traceback, an exit code...)."""
        return self._finish(TrialState.FAILED, error=error, reason=reason or error.strip().splitlines()[-1][:500])

    def interrupt(self, why: str) -> bool:
        """Store the trial as interrupted (a signal, a lost worker): its params run again on resume."""
        self._stop.set()
        self._finished = True
        return self.study.storage.interrupt_trial(self.trial_id, why)

    def snapshot(self) -> FrozenTrial:
        """The trial as stored now."""
        return self.study.storage.get_trial(self.trial_id)

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, params={self.params!r})"


class Study:
    """A named search: a space, a metric and mode, a sampler and a storage.

    Create or resume one with :meth:`create`. A stored study whose metric, mode or
    space differ from the ones given is an error (:class:`StudyMismatchError`).
    """

    def __init__(self, name: str, space: SearchSpace, metric: str, mode: str, sampler: Sampler,
                 storage: Storage, study_id: int) -> None:
        self.name = name
        self.space = space
        self.metric = metric
        self.mode = validate_mode(mode)
        self.sampler = sampler
        self.storage = storage
        self.study_id = study_id
        # What the sampler is shown, read incrementally: ask() stays cheap as trials accumulate.
        self._known_values: dict[int, dict[int, float]] = {}  # finished trials' reports, read once
        self._history = TrialHistory(study_id)

    @property
    def owner(self) -> str:
        """The process asking and finishing trials (:func:`~frameworm_lightning.storage.current_owner`),
        read at each use so that a forked worker gets its own."""
        return current_owner()

    @classmethod
    def create(
        cls,
        name: str,
        space: Mapping[str, Any] | SearchSpace,
        *,
        metric: str = "val_loss",
        mode: str = "min",
        sampler: Sampler | None = None,
        storage: str | Storage | None = None,
        allow_sampler_change: bool = False,
    ) -> Study:
        """Create the study, or load the stored one of the same name and check it matches.

        A stored study that already has trials keeps its sampler (:meth:`Sampler.identity`):
        resuming it with another one (a grid after random trials, another ``grid_points``)
        raises :class:`StudyMismatchError` unless ``allow_sampler_change=True``.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"study name must be a non-empty string, but got name={name!r}.")
        space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        validate_mode(mode)
        if sampler is None:
            sampler = RandomSampler()
        if not isinstance(sampler, Sampler):
            raise SamplerError(f"sampler must be a frameworm_lightning Sampler, but got {sampler!r}.")
        store = open_storage(storage)
        record = store.create_or_load_study(name, metric, mode, space.to_spec(), sampler=sampler.identity(),
                                            allow_sampler_change=allow_sampler_change)
        return cls(name, space, metric, mode, sampler, store, record.study_id)

    @classmethod
    def load(cls, name: str, storage: str | Storage, sampler: Sampler | None = None) -> Study:
        """Open a stored study (for analysis or to add workers) using its stored space.

        A SQLite file that does not exist is a :class:`StorageError` (never created).
        """
        store = read_storage(storage)
        record = store.load_study(name)
        if record is None:
            known = ", ".join(store.study_names()) or "none"
            raise StorageError(f"no study named {name!r} in {store.url!r}; stored studies: {known}.")
        space = (SearchSpace.from_spec(record.space) if record.space
                 else recorded_space(store.get_trials(record.study_id)))
        return cls(name, space, record.metric, record.mode, sampler or RandomSampler(), store, record.study_id)

    # Reading --------------------------------------------------------------------------
    @property
    def trials(self) -> list[FrozenTrial]:
        """Every stored trial, ordered by number."""
        return self.storage.get_trials(self.study_id, known_values=self._known_values)

    def trials_in(self, *states: TrialState) -> list[FrozenTrial]:
        return self.storage.get_trials(self.study_id, states, known_values=self._known_values)

    def is_better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` under the study's mode."""
        return a < b if self.mode == "min" else a > b

    @property
    def best_trial(self) -> FrozenTrial | None:
        """The complete trial with the best value (``None`` if there is none yet)."""
        best: FrozenTrial | None = None
        for t in self.trials_in(TrialState.COMPLETE):
            if t.value is not None and (best is None or self.is_better(t.value, best.value)):  # type: ignore[arg-type]
                best = t
        return best

    def budget_used(self) -> int:
        return self.storage.budget_used(self.study_id)

    # Writing --------------------------------------------------------------------------
    def enqueue(self, params: Mapping[str, Any], *, skip_if_exists: bool = True) -> FrozenTrial | None:
        """Evaluate ``params`` before any sampled configuration (warm start)."""
        params = dict(params)
        self.space.validate(params)
        return self.storage.enqueue(self.study_id, self.space.canonical(params), skip_if_exists=skip_if_exists)

    def recover(self, retry_failed: bool = False) -> list[int]:
        """Mark trials whose process died as interrupted and requeue them; optionally requeue failures."""
        numbers = self.storage.recover_interrupted(self.study_id)
        if retry_failed:
            numbers += self.storage.requeue_failed(self.study_id)
        return numbers

    def ask(self, budget: int | None = None, heartbeat_interval: float | None = None) -> Trial | None:
        """Claim the next trial: an enqueued config, else a fresh one from the sampler.

        ``budget`` is the study's total trial budget (``n_trials``), counted over what is
        stored. Returns ``None`` when the budget is spent or the sampler has nothing left.
        """
        frozen, from_queue = self.storage.claim_trial(self.study_id, self.owner, budget)
        if frozen is None:
            return None
        if not from_queue:
            for _ in range(_MAX_CLAIM_RETRIES):
                others = [t for t in self.storage.read_history(self._history) if t.trial_id != frozen.trial_id]
                suggestion = self.sampler.ask(AskContext(self.space, self.mode, others, frozen.number))
                if suggestion is None:
                    self.storage.delete_trial(frozen.trial_id)  # type: ignore[arg-type]
                    return None
                params = self.space.canonical(suggestion.params)
                self.space.validate(params)
                try:
                    self.storage.set_trial_params(frozen.trial_id, params, suggestion.claim_key,  # type: ignore[arg-type]
                                                  {"sampler": type(self.sampler).__name__, **suggestion.system_attrs})
                    break
                except DuplicateClaimError:
                    continue  # another worker took that point meanwhile: ask again with fresh history
            else:
                self.storage.delete_trial(frozen.trial_id)  # type: ignore[arg-type]
                raise StorageError(f"could not claim a free point after {_MAX_CLAIM_RETRIES} tries.")
            frozen = self.storage.get_trial(frozen.trial_id)  # type: ignore[arg-type]
        return Trial(self, frozen, heartbeat_interval)

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, metric={self.metric!r}, mode={self.mode!r}, storage={self.storage.url!r})"
