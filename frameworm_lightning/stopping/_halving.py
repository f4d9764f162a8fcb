"""Successive halving, ASHA: rungs of growing resource, only the best ``1/eta`` go up a rung.

The policy judges one trial at a time, inside its Trainer (the rung arithmetic is in
``stopping/_rungs.py``, the search's promotions in ``stopping/_promotions.py``). Two ways
to run, chosen by where the policy runs:

* Inside a ``SearchRunner`` (``promotion=True``): a trial that reaches a rung and is not
  (yet) in the rung's top ``1/eta`` is *paused*: it saves a checkpoint and is stored
  ``PRUNED`` ("paused at ..."). The policy's scheduler (:meth:`_RungPolicy.scheduler`,
  a :class:`~frameworm_lightning.stopping._promotions.Promotions`) later promotes it: a
  new trial with the same params resumes from that checkpoint (``promoted_from``,
  ``resume_checkpoint``), so a promoted configuration continues rather than restarts. A
  trial that is already in the top continues without stopping. This is ASHA as published
  (Li et al., 2020) and, with ``synchronous`` brackets, the successive halving of
  Jamieson & Talwalkar (2016) and Hyperband (Li et al., 2018).
* In a plain script, or with ``promotion=False``: nothing can be resumed, so a trial not
  in the top ``max(1, floor(n / eta))`` of the ``n`` values recorded at a rung so far is
  pruned, and the others simply go on (the stopping variant of ASHA). A value tied with the
  last of the top is in it: a trial is never pruned for having started later.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from frameworm_lightning.stopping._base import (
    CONTINUE,
    Decision,
    History,
    Reason,
    StopDecision,
    check_int,
    check_number,
    sort_key,
)
from frameworm_lightning.stopping._callback import StoppingCallback
from frameworm_lightning.stopping._promotions import Promotions
from frameworm_lightning.stopping._rungs import (
    Bracket,
    Config,
    complete,
    configs_of,
    dump_records,
    keep,
    ranked,
    records_of,
    rung_key,
    rung_resources,
    tidy,
)
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["ASHA", "SuccessiveHalving"]

_RESOURCES = ("epochs", "steps")


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
        self.min_resource = tidy(min_resource)
        self.max_resource = tidy(max_resource)
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

    # Assigning new trials ------------------------------------------------------------------
    def assign(self, others: Sequence[FrozenTrial]) -> int:
        """The bracket a new configuration joins: the first one not yet full."""
        members: dict[int, int] = {}
        for config in configs_of(others).values():
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

    @property
    def pauses_trials(self) -> bool:
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
        records = records_of(dict(history.attrs))
        before = dict(records)
        resource = self._resource(history)
        value = float(history.value)  # type: ignore[arg-type]
        for level, r in enumerate(bracket.rungs):
            key = rung_key(r)
            if key in records:
                continue
            if resource < r - 1e-9:
                break
            records[key] = (value, False)
            if level == len(bracket.rungs) - 1:
                return self._stop(Decision.FINISH, Reason.MAX_RESOURCE,
                                  f"reached the largest resource, {self._unit(r)}", records)
            verdict = self._judge(history, bracket, level, records)
            if verdict is not None:
                return verdict
            records[key] = (value, True)
        if records == before:
            return CONTINUE
        return StopDecision(attrs={"fw_rungs": dump_records(records)})

    def _judge(self, history: History, bracket: Bracket, level: int,
               records: dict[str, tuple[float, bool]]) -> StopDecision | None:
        """``None`` when this config goes up from rung ``level``, else the decision that stops it."""
        r = bracket.rungs[level]
        key = rung_key(r)
        configs = self._with_self(history, records)
        root = int(history.attrs.get("fw_root", history.number if history.number is not None else -1))
        peers = ranked(configs, bracket.index, key, history.mode)
        position = [c.root for c in peers].index(root) + 1
        pause = history.can_pause
        if not pause:  # nothing caps how many go on: a value tied with the k-th best is in the top k
            mine = sort_key(records[key][0], history.mode)
            position = 1 + sum(1 for c in peers if c.root != root and sort_key(c.value(key), history.mode) < mine)
        if pause and self.synchronous and not complete(self, configs, bracket, level, history.mode):
            return self._stop(Decision.PAUSE, Reason.RUNG_PAUSE,
                              f"paused at {self._unit(r)}: waiting for the rest of its bracket", records, paused=key)
        kept = keep(self, len(peers), lenient=not pause or self.synchronous)
        if position <= kept:
            return None
        shown = f"{history.metric}={records[key][0]:.6g} at {self._unit(r)} ranks {position} of {len(peers)}"
        if pause and not self.synchronous:
            return self._stop(Decision.PAUSE, Reason.RUNG_PAUSE, f"paused: {shown}; {kept} of {len(peers)} go on so far",
                              records, paused=key)
        return self._stop(Decision.PRUNE, Reason.RUNG_CUT, f"{shown}; only the best {kept} go on", records)

    @staticmethod
    def _stop(decision: Decision, reason: Reason, message: str, records: dict[str, tuple[float, bool]],
              paused: str | None = None) -> StopDecision:
        attrs: dict[str, Any] = {"fw_rungs": dump_records(records)}
        if paused is not None:
            attrs["fw_paused_at"] = paused
        return StopDecision(decision, reason, message, attrs)

    @staticmethod
    def _with_self(history: History, records: dict[str, tuple[float, bool]]) -> dict[int, Config]:
        me = FrozenTrial(history.number if history.number is not None else -1, TrialState.RUNNING,
                         system_attrs={**history.attrs, "fw_rungs": dump_records(records)})
        return configs_of([*history.others, me])

    # The search ----------------------------------------------------------------------------
    def scheduler(self) -> Promotions | None:
        """Inside a ``SearchRunner`` with ``promotion=True``: what promotes the paused trials."""
        return Promotions(self) if self.promotion else None

    # Trainer --------------------------------------------------------------------------------
    def trainer_limits(self) -> dict[str, Any]:
        """Train trials up to ``max_resource`` and no further: ``max_epochs`` (or ``max_steps``).

        A ``SearchRunner`` passes these to each trial's ``Trainer``; with a Trainer of your
        own, set them yourself (a warning says so when the Trainer disagrees).
        """
        if self.resource == "epochs":
            return {"max_epochs": int(math.ceil(self.max_resource))}
        return {"max_steps": int(self.max_resource), "max_epochs": -1}

    def resume_limits(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """A promoted trial on steps resumes with ``max_epochs`` in place of ``max_steps``.

        With ``max_steps`` Lightning resumes as iteration-based training, which replays the end of the
        epoch a pause was saved at (Lightning-AI/pytorch-lightning#19617): the module's and the user's
        ``on_train_epoch_end`` would run twice for it, a ``ModelCheckpoint`` would save it again. Bounded
        by epochs (enough for ``max_resource`` at the paused run's steps per epoch, ``fw_epoch_steps``) it
        resumes as an uninterrupted run goes on; the policy still stops it at ``max_resource`` steps.
        """
        steps = attrs.get("fw_epoch_steps")
        if self.resource != "steps" or not attrs.get("resume_checkpoint") or not steps:
            return {}
        return {"max_steps": -1, "max_epochs": int(math.ceil(self.max_resource / int(steps)))}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._in_runner:
            self._warn_on_limits(trainer)
        self._warn_on_sparse_validation(trainer)
        super().on_train_start(trainer, pl_module)

    def _warn_on_sparse_validation(self, trainer: pl.Trainer) -> None:
        """Rungs that fall between validations are judged at the next one: say which. A last rung that no
        validation reaches (its epoch is not validated) is an error: every run would end on a stale value."""
        every = trainer.check_val_every_n_epoch
        if self._epoch_check or not isinstance(every, int) or every <= 1:
            return
        epoch_steps = None
        if self.resource == "steps":
            batches = trainer.num_training_batches
            if not isinstance(batches, (int, float)) or not math.isfinite(batches) or batches <= 0:
                return  # no epochs to validate at
            epoch_steps = math.ceil(batches / trainer.accumulate_grad_batches)

        def epochs(r: float) -> float:
            return r if epoch_steps is None else r / epoch_steps

        last = self.rungs[-1]
        if math.ceil(epochs(last) - 1e-9) % every != 0:
            raise ValueError(
                f"{type(self).__name__} judges its last rung at {self._unit(last)}, but the Trainer validates every "
                f"{every} epochs (check_val_every_n_epoch={every}): no validation comes at it, so every run would "
                f"end on the value of an earlier validation. Use check_val_every_n_epoch=1, or a max_resource in "
                f"an epoch that is a multiple of {every}."
            )
        if self.resource == "steps" and trainer.val_check_interval != 1.0:
            return  # validations inside the epochs too: which rungs they miss is not worth a guess
        late = [r for r in self.rungs[:-1] if abs(epochs(r) / every - round(epochs(r) / every)) > 1e-9]
        if late:
            shown = ", ".join(f"{r:g}" for r in self.rungs)
            which = (f"rung {late[0]:g} is judged at the first validation after it" if len(late) == 1 else
                     f"rungs {', '.join(f'{r:g}' for r in late)} are judged at the first validation after them")
            rank_zero_warn(
                f"{type(self).__name__} judges configurations at rungs at {shown} {self.resource}, but the Trainer "
                f"validates every {every} epochs (check_val_every_n_epoch={every}): {which}, on more training than "
                "the rung says. Use "
                f"check_val_every_n_epoch=1, or min_resource and eta whose rungs are in epochs that are multiples of "
                f"{every}."
            )

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
    Arguments as for :class:`SuccessiveHalving`.

    Example:
        >>> ASHA(monitor="val_loss", min_resource=1, max_resource=27).rungs
        (1, 3, 9, 27)
    """

    def bracket(self, index: int) -> Bracket:
        return Bracket(index, self.rungs, None)
