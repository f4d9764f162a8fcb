"""The search's side of successive halving: promote paused configurations, tidy their checkpoints.

A halving policy (``stopping/_halving.py``) judges one trial inside its Trainer and, in a
search, *pauses* a trial that is not (yet) among the best of its rung. Which paused
configuration goes up, and when, is decided here, by :class:`Promotions`: the scheduler a
halving policy gives the run loop (``policy.scheduler()``; ``runner._loop.Scheduler``).
Before every claim the loop calls :meth:`Promotions.trial_budget`, which reads the study,
enqueues the promotions due as waiting trials that resume their parent's checkpoint, and
raises the budget by them; when the search ends, :meth:`Promotions.on_search_end`
removes the checkpoints no trial will resume from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from frameworm_lightning.stopping._rungs import ACTIVE, Config, Layout, complete, configs_of, dump_records, keep, ranked, rung_key
from frameworm_lightning.storage import DuplicateClaimError, Storage
from frameworm_lightning.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from frameworm_lightning.study import Study

__all__ = ["Promotion", "Promotions", "enqueue_promotion", "plan_promotions", "remove_paused_checkpoints"]


@dataclass(frozen=True)
class Promotion:
    """A paused trial chosen to continue to the next rung.

    It is stored as a new waiting trial with the same params that resumes from the
    paused trial's checkpoint (``attrs`` are the new trial's system attrs).
    """

    trial: FrozenTrial
    rung: str
    attrs: Mapping[str, Any]


def plan_promotions(layout: Layout, configs: dict[int, Config], mode: str, lenient: bool) -> list[Promotion]:
    """Paused configs that should go up a rung now, highest rung first (asynchronous: one).

    A config goes up from a rung when it is among the best ``floor(n / eta)`` of the
    ``n`` recorded there (``lenient``: at least one, to close a rung that cannot fill);
    a synchronous layout waits until the rung is complete.
    """
    out: list[Promotion] = []
    for index in sorted({c.bracket for c in configs.values()}):
        bracket = layout.bracket(index)
        for level in reversed(range(len(bracket.rungs) - 1)):
            if layout.synchronous and not lenient and not complete(layout, configs, bracket, level, mode):
                continue
            key = rung_key(bracket.rungs[level])
            peers = ranked(configs, index, key, mode)
            for config in peers[: keep(layout, len(peers), lenient or layout.synchronous)]:
                if config.paused_at != key or config.promoted(key):
                    continue
                if not config.latest.system_attrs.get("fw_checkpoint"):
                    continue  # cut, or its checkpoint was removed
                out.append(_promotion(config, key))
                if not layout.synchronous:
                    return out
    return out


def _promotion(config: Config, key: str) -> Promotion:
    parent = config.latest
    records = dict(config.records)
    records[key] = (records[key][0], True)
    attrs = {
        "promoted_from": parent.number,
        "fw_promoted_at": key,
        "fw_root": config.root,
        "fw_bracket": config.bracket,
        "fw_rungs": dump_records(records),
        "resume_checkpoint": parent.system_attrs["fw_checkpoint"],
    }
    if "fw_epoch_steps" in parent.system_attrs:  # the paused run's epoch length (the policy's resume_limits)
        attrs["fw_epoch_steps"] = parent.system_attrs["fw_epoch_steps"]
    return Promotion(parent, key, attrs)


def enqueue_promotion(storage: Storage, study_id: int, promotion: Promotion) -> int | None:
    """Store a promotion as a waiting trial that resumes the paused one; ``None`` if another
    process promoted it first (the claim key ``promote:<number>:<rung>`` is unique)."""
    parent = promotion.trial
    try:
        child = storage.enqueue(
            study_id, parent.params, claim_key=f"promote:{parent.number}:{promotion.rung}",
            skip_if_exists=False, system_attrs=dict(promotion.attrs),
        )
    except (DuplicateClaimError, IntegrityError):  # the unique claim key is taken: promoted already
        return None
    if child is None:
        return None
    storage.set_trial_attr(parent.trial_id, "promoted_to", child.number, system=True)  # type: ignore[arg-type]
    return child.number


def counts_against_budget(trial: FrozenTrial) -> bool:
    """The storage's rule for ``n_trials``: interrupted or requeued failures do not count."""
    if trial.state is TrialState.WAITING:
        return False
    if trial.state is TrialState.FAILED and (trial.system_attrs.get("interrupted")
                                             or trial.system_attrs.get("requeued_as") is not None):
        return False
    return True


def remove_paused_checkpoints(study: Study, trials: Sequence[FrozenTrial], ending: bool) -> list[Path]:
    """Delete the ``paused-*.ckpt`` checkpoints no trial will resume from; returns what was removed.

    A paused trial's checkpoint goes once its promotion has run (the promoted trial
    finished), or, when the search is ``ending``, whether or not it was promoted. A
    checkpoint a waiting or running trial resumes from is always kept. The trial's
    ``fw_checkpoint`` becomes ``None`` (it can no longer be promoted) and the path moves
    to ``fw_checkpoint_removed``.
    """
    by_number = {t.number: t for t in trials}
    needed = {t.system_attrs.get("resume_checkpoint") for t in trials if t.state in ACTIVE}
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


class Promotions:
    """The scheduler of a halving policy: promotions before each claim, checkpoints at the end.

    A :class:`runner._loop.Scheduler`. It holds the policy only for its brackets
    (:class:`~frameworm_lightning.stopping._rungs.Layout`); everything else it reads
    from the study, so any number of processes sharing the study may run it (a
    promotion's claim key is unique).
    """

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def trial_budget(self, study: Study, n_trials: int) -> int:
        """Enqueue the promotions due now and allow them on top of ``n_trials`` fresh configs.

        When no fresh configuration may start and nothing is running or queued, rungs
        that can no longer fill are closed: their best config goes up, so the search
        ends with at least one configuration trained to ``max_resource``.
        """
        if n_trials <= 0:
            return n_trials
        trials = study.trials
        fresh = sum(1 for t in trials if "promoted_from" not in t.system_attrs and counts_against_budget(t))
        active = any(t.state in ACTIVE for t in trials)
        queued = any(t.state is TrialState.WAITING and "promoted_from" in t.system_attrs for t in trials)
        if not queued:
            closed = fresh >= n_trials and not active
            for promotion in plan_promotions(self.layout, configs_of(trials), study.mode, lenient=closed):
                enqueue_promotion(study.storage, study.study_id, promotion)
            trials = study.trials
        promoted = sum(1 for t in trials if "promoted_from" in t.system_attrs
                       and (t.state is TrialState.WAITING or counts_against_budget(t)))
        remove_paused_checkpoints(study, trials, ending=False)
        return n_trials + promoted

    def on_search_end(self, study: Study) -> None:
        """Remove every paused checkpoint left: nothing will resume from them."""
        remove_paused_checkpoints(study, study.trials, ending=True)
