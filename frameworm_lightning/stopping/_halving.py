"""Successive halving: rungs of growing resource, only the best ``1/eta`` go up a rung.

Notations:
    r_min, r_max: the smallest and largest resource (epochs or global steps).
    eta: the reduction factor; ``K = floor(log_eta(r_max / r_min))``.
    rungs: ``r_min * eta**k`` for ``k < K``, then ``r_max``.
    bracket: a group of configurations that compete with each other on the same rungs.
    config: one configuration followed across the trials that trained it (a promoted
        trial continues its parent's checkpoint as a new trial of the study).

Two ways to run, chosen by where the policy runs:

* Inside a ``SearchRunner`` (``promotion=True``): a trial that reaches a rung and is not
  (yet) in the rung's top ``1/eta`` is *paused*: it saves a checkpoint and is stored
  ``PRUNED`` ("paused at ..."). Promoting it later enqueues a new trial with the same
  params that resumes from that checkpoint (``promoted_from``, ``resume_checkpoint``), so
  a promoted configuration continues rather than restarts. A trial that is already in
  the top continues without stopping. This is ASHA as published (Li et al., 2020) and,
  with ``synchronous`` brackets, the successive halving of Jamieson & Talwalkar (2016)
  and Hyperband (Li et al., 2018).
* In a plain script, or with ``promotion=False``: nothing can be resumed, so a trial not
  in the top ``max(1, floor(n / eta))`` of the ``n`` values recorded at a rung so far is
  pruned, and the others simply go on (the stopping variant of ASHA). A value tied with the
  last of the top is in it: a trial is never pruned for having started later.

Bookkeeping lives in each trial's system attributes: ``fw_bracket``, ``fw_root`` (the
first trial of the config), ``fw_rungs`` (``{rung: [value, promoted]}``), and for a
paused trial ``fw_paused_at`` and ``fw_checkpoint``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from frameworm_lightning.stopping._base import (
    CONTINUE,
    Decision,
    History,
    Promotion,
    Reason,
    StopDecision,
    check_int,
    check_number,
    sort_key,
)
from frameworm_lightning.stopping._callback import StoppingCallback, enqueue_promotion
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["ASHA", "Bracket", "SuccessiveHalving", "rung_resources"]

_RESOURCES = ("epochs", "steps")
_ACTIVE = (TrialState.RUNNING, TrialState.WAITING)


def rung_resources(min_resource: float, max_resource: float, eta: int) -> tuple[float, ...]:
    """``r_min * eta**k`` for ``k < K``, then ``r_max``, with ``K = floor(log_eta(r_max / r_min))``.

    >>> rung_resources(1, 27, 3)
    (1, 3, 9, 27)
    >>> rung_resources(1, 10, 3)
    (1, 3, 10)
    """
    k = _levels(min_resource, max_resource, eta)
    return tuple(_tidy(min_resource * eta**i) for i in range(k)) + (_tidy(max_resource),)


def _levels(min_resource: float, max_resource: float, eta: int) -> int:
    return int(math.floor(math.log(max_resource / min_resource, eta) + 1e-9))


def _tidy(x: float) -> float:
    return int(x) if float(x).is_integer() else float(x)


def rung_key(resource: float) -> str:
    """How a rung's resource is written in the trials' attributes (``3``, ``0.5``)."""
    return f"{resource:g}"


@dataclass(frozen=True)
class Bracket:
    """A group of configurations competing on the same rungs.

    Attributes:
        index: the bracket's number in the search (brackets are filled in order).
        rungs: resources at which configs are compared; the last is ``max_resource``.
        size: how many configurations start in it (``None``: no limit, as in ASHA).
    """

    index: int
    rungs: tuple[float, ...]
    size: int | None


@dataclass
class _Config:
    """One configuration across the trials that trained it."""

    root: int
    bracket: int
    rows: list[FrozenTrial] = field(default_factory=list)
    records: dict[str, tuple[float, bool]] = field(default_factory=dict)

    @property
    def latest(self) -> FrozenTrial:
        return self.rows[-1]

    @property
    def active(self) -> bool:
        return self.latest.state in _ACTIVE

    @property
    def paused_at(self) -> str | None:
        """The rung this config waits at for a promotion, if it does."""
        row = self.latest
        if row.state is TrialState.PRUNED and "fw_paused_at" in row.system_attrs and "promoted_to" not in row.system_attrs:
            return str(row.system_attrs["fw_paused_at"])
        return None

    @property
    def ended(self) -> bool:
        return not self.active and self.paused_at is None

    def value(self, key: str) -> float | None:
        record = self.records.get(key)
        return None if record is None else record[0]

    def promoted(self, key: str) -> bool:
        record = self.records.get(key)
        return bool(record and record[1])


def _records(row: FrozenTrial) -> dict[str, tuple[float, bool]]:
    raw = row.system_attrs.get("fw_rungs") or {}
    out = {}
    for key, rec in raw.items():
        value, promoted = (rec[0], rec[1]) if isinstance(rec, (list, tuple)) else (rec, False)
        out[str(key)] = (math.nan if value is None else float(value), bool(promoted))
    return out


def _configs(trials: Iterable[FrozenTrial]) -> dict[int, _Config]:
    """Group the trials this policy manages (they have ``fw_bracket``) by configuration."""
    configs: dict[int, _Config] = {}
    for row in sorted(trials, key=lambda t: t.number):
        attrs = row.system_attrs
        if "fw_bracket" not in attrs:
            continue
        root = int(attrs.get("fw_root", row.number))
        config = configs.setdefault(root, _Config(root, int(attrs["fw_bracket"])))
        config.rows.append(row)
        config.records.update(_records(row))
    return configs


def _root(history: History) -> int:
    return int(history.attrs.get("fw_root", history.number if history.number is not None else -1))


def _counts_against_budget(trial: FrozenTrial) -> bool:
    """The storage's rule for ``n_trials``: interrupted or requeued failures do not count."""
    if trial.state is TrialState.WAITING:
        return False
    if trial.state is TrialState.FAILED and (trial.system_attrs.get("interrupted")
                                             or trial.system_attrs.get("requeued_as") is not None):
        return False
    return True


class _RungPolicy(StoppingCallback):
    """What successive halving, ASHA and Hyperband share; subclasses say how brackets look."""

    needs_others = True
    #: Promote only when a rung is complete (every config of the bracket is there).
    synchronous = False

    def __init__(
        self,
        monitor: str | None = None,
        min_resource: float = 1,
        max_resource: float = 27,
        eta: int = 3,
        resource: str = "epochs",
        promotion: bool = True,
        mode: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(monitor, mode, **options)
        check_number("min_resource", min_resource, minimum=0, strict=True)
        check_number("max_resource", max_resource, minimum=0, strict=True)
        if max_resource <= min_resource:
            raise ValueError(
                f"max_resource must be greater than min_resource, but got min_resource={min_resource!r} "
                f"and max_resource={max_resource!r}."
            )
        check_int("eta", eta, minimum=2)
        if resource not in _RESOURCES:
            raise ValueError(f"resource must be one of {_RESOURCES}, but got resource={resource!r}.")
        if resource == "steps" and not (float(min_resource).is_integer() and float(max_resource).is_integer()):
            raise ValueError(
                f"with resource='steps' the resources are step counts, but got min_resource={min_resource!r} "
                f"and max_resource={max_resource!r}."
            )
        if not isinstance(promotion, bool):
            raise ValueError(f"promotion must be True or False, but got promotion={promotion!r}.")
        self.min_resource = _tidy(min_resource)
        self.max_resource = _tidy(max_resource)
        self.eta = eta
        self.resource = resource
        self.promotion = promotion

    # Bracket geometry (subclasses) -----------------------------------------------------
    @abstractmethod
    def bracket(self, index: int) -> Bracket:
        """The ``index``-th bracket of the search (brackets are filled in order)."""

    @property
    def rungs(self) -> tuple[float, ...]:
        return rung_resources(self.min_resource, self.max_resource, self.eta)

    def _keep(self, n: int, lenient: bool) -> int:
        """How many of ``n`` configs at a rung go up: ``floor(n / eta)``, at least 1 when lenient."""
        keep = n // self.eta
        return max(1, keep) if lenient and n > 0 else keep

    # Assigning new trials ------------------------------------------------------------------
    def assign(self, others: Sequence[FrozenTrial]) -> int:
        """The bracket a new configuration joins: the first one not yet full."""
        members: dict[int, int] = {}
        for config in _configs(others).values():
            members[config.bracket] = members.get(config.bracket, 0) + 1
        index = 0
        while True:
            size = self.bracket(index).size
            if size is None or members.get(index, 0) < size:
                return index
            index += 1

    def start_attrs(self, history: History) -> dict[str, Any]:
        if "fw_bracket" in history.attrs or history.number is None:
            return {}
        return {"fw_bracket": self.assign(history.others), "fw_root": history.number, "fw_rungs": {}}

    def _can_pause(self) -> bool:
        return self.promotion

    # Deciding ------------------------------------------------------------------------------
    def _resource(self, history: History) -> float:
        return history.epoch if self.resource == "epochs" else float(history.step or 0)

    def _unit(self, r: float) -> str:
        return f"{r:g} {'epoch' if self.resource == 'epochs' else 'step'}{'' if r == 1 else 's'}"

    def decide(self, history: History) -> StopDecision:
        diverged = self._diverged(history)
        if diverged is not None:
            return diverged
        if not history.fresh or "fw_bracket" not in history.attrs:
            return CONTINUE
        bracket = self.bracket(int(history.attrs["fw_bracket"]))
        records = _records(FrozenTrial(0, TrialState.RUNNING, system_attrs=dict(history.attrs)))
        before = dict(records)
        resource = self._resource(history)
        value = float(history.value)  # type: ignore[arg-type]
        promotions: list[Promotion] = []
        for level, r in enumerate(bracket.rungs):
            key = rung_key(r)
            if key in records:
                continue
            if resource < r - 1e-9:
                break
            records[key] = (value, False)
            if level == len(bracket.rungs) - 1:
                return self._stop(Decision.FINISH, Reason.MAX_RESOURCE,
                                  f"reached the largest resource, {self._unit(r)}", records, history)
            verdict, due = self._judge(history, bracket, level, records)
            if verdict is not None:
                return verdict
            records[key] = (value, True)
            promotions += due
        if records == before:
            return CONTINUE
        return StopDecision(attrs={"fw_rungs": _dump(records)}, promotions=tuple(promotions))

    def _judge(self, history: History, bracket: Bracket, level: int,
               records: dict[str, tuple[float, bool]]) -> tuple[StopDecision | None, list[Promotion]]:
        """``(None, promotions due)`` when this config goes up from rung ``level``, else the decision."""
        r = bracket.rungs[level]
        key = rung_key(r)
        configs = self._with_self(history, records)
        root = _root(history)
        peers = [c for c in configs.values() if c.bracket == bracket.index and key in c.records]
        ranked = sorted(peers, key=lambda c: (sort_key(c.value(key), history.mode), c.root))
        position = [c.root for c in ranked].index(root) + 1
        pause = history.can_pause
        if not pause:  # nothing caps how many go on: a value tied with the k-th best is in the top k
            mine = sort_key(records[key][0], history.mode)
            position = 1 + sum(1 for c in peers if c.root != root and sort_key(c.value(key), history.mode) < mine)
        if pause and self.synchronous and not self._complete(configs, bracket, level):
            return self._stop(Decision.PAUSE, Reason.RUNG_PAUSE,
                              f"paused at {self._unit(r)}: waiting for the rest of its bracket",
                              records, history, paused=key), []
        keep = self._keep(len(ranked), lenient=not pause or self.synchronous)
        if position <= keep:
            due = self._plan(configs, history.mode, lenient=False, exclude=root) if pause and self.synchronous else []
            return None, due
        shown = f"{self.monitor or 'metric'}={records[key][0]:.6g} at {self._unit(r)} ranks {position} of {len(ranked)}"
        if pause and not self.synchronous:
            return self._stop(Decision.PAUSE, Reason.RUNG_PAUSE, f"paused: {shown}; {keep} of {len(ranked)} go on so far",
                              records, history, paused=key), []
        return self._stop(Decision.PRUNE, Reason.RUNG_CUT, f"{shown}; only the best {keep} go on",
                          records, history), []

    def _stop(self, decision: Decision, reason: Reason, message: str, records: dict[str, tuple[float, bool]],
              history: History, paused: str | None = None) -> StopDecision:
        attrs: dict[str, Any] = {"fw_rungs": _dump(records)}
        if paused is not None:
            attrs["fw_paused_at"] = paused
        promotions: tuple[Promotion, ...] = ()
        if history.can_pause:  # this trial frees its worker: whoever is due goes up now
            configs = self._with_self(history, records)
            promotions = tuple(self._plan(configs, history.mode, lenient=False, exclude=_root(history)))
        return StopDecision(decision, reason, message, attrs, promotions)

    def _with_self(self, history: History, records: dict[str, tuple[float, bool]]) -> dict[int, _Config]:
        me = FrozenTrial(history.number if history.number is not None else -1, TrialState.RUNNING,
                         system_attrs={**history.attrs, "fw_rungs": _dump(records)})
        return _configs([*history.others, me])

    def _complete(self, configs: dict[int, _Config], bracket: Bracket, level: int) -> bool:
        """Whether every config of the bracket that can reach rung ``level`` is there (or ended)."""
        members = [c for c in configs.values() if c.bracket == bracket.index]
        key = rung_key(bracket.rungs[level])
        if level == 0:
            if bracket.size is None or len(members) < bracket.size:
                return False
            expected = members
        else:
            below = rung_key(bracket.rungs[level - 1])
            expected = [c for c in members if c.promoted(below)]
        return all(key in c.records or c.ended for c in expected)

    def _plan(self, configs: dict[int, _Config], mode: str, lenient: bool, exclude: int | None = None) -> list[Promotion]:
        """Paused configs that should go up a rung now, highest rung first (ASHA: one)."""
        out: list[Promotion] = []
        for index in sorted({c.bracket for c in configs.values()}):
            bracket = self.bracket(index)
            for level in reversed(range(len(bracket.rungs) - 1)):
                if self.synchronous and not lenient and not self._complete(configs, bracket, level):
                    continue
                key = rung_key(bracket.rungs[level])
                peers = [c for c in configs.values() if c.bracket == index and key in c.records]
                ranked = sorted(peers, key=lambda c: (sort_key(c.value(key), mode), c.root))
                for config in ranked[: self._keep(len(ranked), lenient or self.synchronous)]:
                    if config.root == exclude or config.paused_at != key or config.promoted(key):
                        continue
                    if not config.latest.system_attrs.get("fw_checkpoint"):
                        continue  # cut, or its checkpoint was removed
                    out.append(self._promotion(config, key))
                    if not self.synchronous:
                        return out
        return out

    def _promotion(self, config: _Config, key: str) -> Promotion:
        parent = config.latest
        records = dict(config.records)
        records[key] = (records[key][0], True)
        attrs = {
            "promoted_from": parent.number,
            "fw_promoted_at": key,
            "fw_root": config.root,
            "fw_bracket": config.bracket,
            "fw_rungs": _dump(records),
            "resume_checkpoint": parent.system_attrs["fw_checkpoint"],
        }
        return Promotion(parent, key, attrs)

    # Runner hook -----------------------------------------------------------------------------
    def trial_budget(self, study: Any, n_trials: int) -> int:
        """Enqueue the promotions due now and allow them on top of ``n_trials`` fresh configs.

        When no fresh configuration may start and nothing is running or queued, rungs
        that can no longer fill are closed: their best config goes up, so the search
        ends with at least one configuration trained to ``max_resource``.
        """
        if n_trials <= 0 or not self.promotion:
            return n_trials
        trials = study.trials
        fresh = sum(1 for t in trials if "promoted_from" not in t.system_attrs and _counts_against_budget(t))
        active = any(t.state in _ACTIVE for t in trials)
        queued = any(t.state is TrialState.WAITING and "promoted_from" in t.system_attrs for t in trials)
        if not queued:
            closed = fresh >= n_trials and not active
            for promotion in self._plan(_configs(trials), study.mode, lenient=closed):
                enqueue_promotion(study.storage, study.study_id, promotion)
            trials = study.trials
        promoted = sum(1 for t in trials if "promoted_from" in t.system_attrs
                       and (t.state is TrialState.WAITING or _counts_against_budget(t)))
        remove_paused_checkpoints(study, trials, ending=False)
        return n_trials + promoted

    def on_search_end(self, study: Any) -> None:
        """``SearchRunner`` hook, once the search has ended: remove every paused checkpoint left."""
        remove_paused_checkpoints(study, study.trials, ending=True)

    # Trainer --------------------------------------------------------------------------------
    def trainer_limits(self) -> dict[str, Any]:
        """Train trials up to ``max_resource`` and no further: ``max_epochs`` (or ``max_steps``).

        A ``SearchRunner`` passes these to each trial's ``Trainer``; with a Trainer of your
        own, set them yourself (a warning says so when the Trainer disagrees).
        """
        if self.resource == "epochs":
            return {"max_epochs": int(math.ceil(self.max_resource))}
        return {"max_steps": int(self.max_resource), "max_epochs": -1}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._in_runner:
            self._warn_on_limits(trainer)
        super().on_train_start(trainer, pl_module)

    def _warn_on_limits(self, trainer: pl.Trainer) -> None:
        limits = self.trainer_limits()
        now = {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps}
        if self.resource == "epochs":
            differs = now["max_epochs"] != limits["max_epochs"] and now["max_steps"] == -1
        else:
            differs = now["max_steps"] != limits["max_steps"]
        if differs:
            wanted = ", ".join(f"{k}={v}" for k, v in limits.items())
            rank_zero_warn(
                f"{type(self).__name__} trains runs up to max_resource={self.max_resource:g} {self.resource}, but the "
                f"Trainer has max_epochs={now['max_epochs']}, max_steps={now['max_steps']}: pass Trainer({wanted}) so "
                "the run (and any LR schedule planned over it) ends at the last rung."
            )

    def _needs_value_at(self, step: int) -> bool:
        """On steps, the last rung needs a value at ``max_resource`` even between validations."""
        return self.resource == "steps" and step >= self.max_resource

    def _key_args(self) -> dict[str, Any]:
        return {"min_resource": self.min_resource, "max_resource": self.max_resource, "eta": self.eta,
                "resource": self.resource}


def remove_paused_checkpoints(study: Any, trials: Sequence[FrozenTrial], ending: bool) -> list[Path]:
    """Delete the ``paused-*.ckpt`` checkpoints no trial will resume from; returns what was removed.

    A paused trial's checkpoint goes once its promotion has run (the promoted trial
    finished), or, when the search is ``ending``, whether or not it was promoted. A
    checkpoint a waiting or running trial resumes from is always kept. The trial's
    ``fw_checkpoint`` becomes ``None`` (it can no longer be promoted) and the path moves
    to ``fw_checkpoint_removed``.
    """
    by_number = {t.number: t for t in trials}
    needed = {t.system_attrs.get("resume_checkpoint") for t in trials if t.state in _ACTIVE}
    removed = []
    for t in trials:
        path = t.system_attrs.get("fw_checkpoint")
        if not path or path in needed or t.trial_id is None:
            continue
        child = by_number.get(t.system_attrs.get("promoted_to", -1))
        if not ending and (child is None or not child.state.is_finished):
            continue
        file = Path(path)
        if file.is_file():
            file.unlink()
            removed.append(file)
        study.storage.set_trial_attr(t.trial_id, "fw_checkpoint", None, system=True)
        study.storage.set_trial_attr(t.trial_id, "fw_checkpoint_removed", str(path), system=True)
    return removed


def _dump(records: dict[str, tuple[float, bool]]) -> dict[str, list[Any]]:
    return {k: [None if math.isnan(v) else v, p] for k, (v, p) in records.items()}


class SuccessiveHalving(_RungPolicy):
    """Synchronous successive halving: cohorts of ``eta**K`` configs, the best ``1/eta`` go up.

    Configurations start in cohorts (brackets) of ``eta**K`` on the rungs
    ``min_resource * eta**k`` (``k < K``) and ``max_resource``. Inside a
    ``SearchRunner``, each config trains to the first rung and pauses; once the whole
    cohort has reported there, the best ``1/eta`` are promoted and continue from their
    checkpoints to the next rung, and so on, until one config reaches ``max_resource``.
    The runner's ``n_trials`` counts fresh configurations; promotions come on top.
    Without a runner, a run is pruned at a rung unless it is among the best ``1/eta`` of
    the runs recorded there so far.

    Args:
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.
        min_resource / max_resource: the first and the last rung, in ``resource`` units.
        eta: the reduction factor (an integer >= 2).
        resource: ``"epochs"`` (fractional within an epoch) or ``"steps"`` (global steps).
        promotion: inside a runner, pause and resume (``True``), or prune at the rungs.

    Example:
        >>> policy = SuccessiveHalving(monitor="val_loss", min_resource=1, max_resource=9, eta=3)
        >>> policy.bracket(0)
        Bracket(index=0, rungs=(1, 3, 9), size=9)
    """

    synchronous = True

    def bracket(self, index: int) -> Bracket:
        rungs = self.rungs
        return Bracket(index, rungs, self.eta ** (len(rungs) - 1))


class ASHA(_RungPolicy):
    """Asynchronous successive halving (Li et al., 2020): promote as soon as a config is in the top.

    All configurations share the rungs ``min_resource * eta**k`` (``k < K``) and
    ``max_resource``. Inside a ``SearchRunner``, a config reaching a rung goes on at
    once if it is among the best ``floor(n / eta)`` of the ``n`` configs recorded there;
    otherwise it pauses, and whenever a trial ends, the best paused config that now
    qualifies (highest rung first) is promoted and resumes from its checkpoint. The
    runner's ``n_trials`` counts fresh configurations; promotions come on top. When no
    fresh configuration is left, the best paused config of each unfinished rung is
    promoted until one reaches ``max_resource``. Without a runner, a run is pruned at a
    rung unless it is among the best ``max(1, floor(n / eta))`` recorded there so far.

    Args:
        monitor / mode / verbose / strict / check_finite / check_on_train_epoch_end /
            storage / study / every_n_train_steps: see
            :class:`~frameworm_lightning.stopping.StoppingCallback`.
        min_resource / max_resource: the first and the last rung, in ``resource`` units.
        eta: the reduction factor (an integer >= 2).
        resource: ``"epochs"`` (fractional within an epoch) or ``"steps"`` (global steps).
        promotion: inside a runner, pause and resume (``True``), or prune at the rungs.

    Example:
        >>> ASHA(monitor="val_loss", min_resource=1, max_resource=27).rungs
        (1, 3, 9, 27)
    """

    def bracket(self, index: int) -> Bracket:
        return Bracket(index, self.rungs, None)
