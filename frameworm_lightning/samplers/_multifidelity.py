"""Model-based multi-fidelity: a sampler whose model learns from the rungs of ASHA or Hyperband.

Successive halving stops most configurations after a fraction of the budget, so the final
values a plain Bayesian sampler learns from arrive late and few. BOHB (Falkner et al., 2018)
fits its model instead on the values recorded at one rung: the highest rung with enough
results. This module does that for any base sampler, by showing it the history as seen
at that rung (``model="rung"``, the default). With ``model="fidelity"`` it fits instead one
GP over configuration x resource on every rung's values, the resource (in log scale) an
input of the GP, and proposes where the GP's acquisition is best at the largest resource
(:meth:`BayesianSampler.ask_at`, the resource held there).

Notations:
    rung ``r``: a resource at which a halving policy (``ASHA``, ``SuccessiveHalving``,
        ``Hyperband``) records each configuration's value, stored in the trials'
        ``fw_rungs`` attribute as ``{"3": [value, promoted], ...}``.
    config: one configuration across the trials that trained it (a promoted trial
        continues its parent's and carries ``fw_root``, the config's first trial).
    ``n_r``: the configs with a finite value recorded at rung ``r``.
    ``min_points``: ``n_r`` needed for rung ``r`` to feed the model (``model="fidelity"``:
        the configs with a finite value at any rung needed to feed it).
    ``R``: the largest resource any config recorded (``model="fidelity"`` proposes there).

Everything is read from the trials of :class:`~frameworm_lightning.samplers.AskContext`
(the stored history), so any worker, or a resumed search, makes the same suggestion.

Cost: a config's *seconds per unit of resource* are the durations of its finished trials
(``completed_at - started_at``) over the resource they trained (the highest rung each
recorded, less the rung it was promoted at, ``fw_promoted_at``). The base sees them as
the durations of the config's trials, so a cost-aware base
(``BayesianSampler(cost="duration")``) weighs its proposals by the time a unit of
training takes there, whichever rung the config stopped at.

``system_attrs`` written on each trial (besides the base sampler's):
    ``mf_rung``: the rung whose values the model saw (``None``: no rung had ``min_points``
    results, the base sampler's initial design; ``model="fidelity"``: ``R``, the rung the
    acquisition held the resource at); ``mf_points``: ``n_r`` of that rung (``model="fidelity"``:
    the configs with a finite value at some rung); ``mf_model``: ``"fidelity"`` on the
    suggestions of that model; ``mf_random``: ``True`` on a random draw made instead of asking
    the base (``random_fraction``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion
from frameworm_lightning.samplers._bayes import BayesianSampler
from frameworm_lightning.samplers._random import RandomSampler
from frameworm_lightning.space import Real, SearchSpace
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["MultiFidelitySampler"]

_ACTIVE = (TrialState.RUNNING, TrialState.WAITING)
# Salt of the draw deciding whether a suggestion is random (independent of the random point's own draw).
_SALT_RANDOM_PICK = 7919
MODELS = ("rung", "fidelity")
# The resource's name in the fidelity model's view (prefixed with "_" while the space has it).
_RESOURCE = "mf_resource"


@dataclass
class _Config:
    """One configuration across its trials: rung values merged in trial order."""

    first: FrozenTrial
    latest: FrozenTrial
    values: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # the durations of its finished trials...
    resource: float = 0.0  # ...and the resource they trained

    @property
    def seconds_per_resource(self) -> float | None:
        return self.seconds / self.resource if self.resource > 0 and self.seconds > 0 else None


def _rung_values(trial: FrozenTrial) -> dict[str, float]:
    """The trial's ``fw_rungs`` as ``{rung: value}`` (a missing or malformed value is NaN)."""
    raw = trial.system_attrs.get("fw_rungs")
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key, record in raw.items():
        value = record[0] if isinstance(record, (list, tuple)) and record else record
        try:
            out[str(key)] = math.nan if value is None else float(value)
        except (TypeError, ValueError):
            out[str(key)] = math.nan  # data, not code: an unreadable value is no observation
    return out


def _group(trials: Sequence[FrozenTrial]) -> tuple[dict[int, _Config], list[FrozenTrial]]:
    """Trials managed by a halving policy grouped by config (``fw_root``), and the others."""
    configs: dict[int, _Config] = {}
    others: list[FrozenTrial] = []
    for t in sorted(trials, key=lambda t: t.number):
        if not t.has_params:
            continue
        if "fw_bracket" not in t.system_attrs and "fw_rungs" not in t.system_attrs:
            others.append(t)
            continue
        try:
            root = int(t.system_attrs.get("fw_root", t.number))
        except (TypeError, ValueError):
            root = t.number
        config = configs.get(root)
        if config is None:
            config = configs[root] = _Config(t, t)
        config.latest = t
        values = _rung_values(t)
        config.values.update(values)
        trained = _trained(t, values)
        if trained is not None:
            config.seconds += trained[0]
            config.resource += trained[1]
    return configs, others


def _trained(trial: FrozenTrial, values: dict[str, float]) -> tuple[float, float] | None:
    """``(seconds, resource)`` a finished trial trained, or ``None`` when either is unknown."""
    duration = trial.duration
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or duration is None or not values:
        return None
    try:
        start = float(trial.system_attrs.get("fw_promoted_at", 0) or 0)
    except (TypeError, ValueError):
        return None
    resource = max(_resource(key) for key in values) - start
    if not (math.isfinite(duration) and duration > 0 and math.isfinite(resource) and resource > 0):
        return None
    return duration, resource


def _shifts(configs: list[_Config]) -> dict[str, float]:
    """Each rung's shift: how much a value typically changes from the rungs below (0 at the lowest).

    The median, over the configs with a finite value at the rung and at a lower one, of
    their value there less their value at the highest such lower rung, plus that rung's
    shift (0 when no config has both). Values less their rung's shift compare across
    rungs: the fidelity model's prior mean per resource, so that a config seen only at
    rung 1 is predicted at ``R`` from its rank there, not from the level of rung 1.
    """
    keys = sorted({key for config in configs for key in _rungs(config)}, key=_resource)
    shifts: dict[str, float] = {}
    for key in keys:
        changes = []
        for config in configs:
            value = config.values.get(key)
            if value is None or not math.isfinite(value):
                continue
            lower = [k for k in _rungs(config) if _resource(k) < _resource(key) and math.isfinite(config.values[k])]
            if lower:
                changes.append(value - config.values[lower[-1]] + shifts[lower[-1]])
        shifts[key] = float(np.median(changes)) if changes else 0.0
    return shifts


def _rungs(config: _Config) -> list[str]:
    """The config's rungs whose resource is a positive number (data, not code: others are skipped), smallest first."""
    return sorted((key for key in config.values if 0 < _resource(key) < math.inf), key=_resource)


def _resource(key: str) -> float:
    try:
        return float(key)
    except ValueError:
        return -math.inf


class MultiFidelitySampler(Sampler):
    """BO-guided brackets: the base sampler's model sees the values of the highest rung with enough results.

    Use it with :class:`~frameworm_lightning.stopping.ASHA`,
    :class:`~frameworm_lightning.stopping.SuccessiveHalving` or
    :class:`~frameworm_lightning.stopping.Hyperband`: the halving policy decides how long
    each configuration trains, this sampler decides which configurations enter the
    brackets. Before each suggestion it rebuilds the history as seen at rung ``r``, the
    highest rung with at least ``min_points`` configurations recorded there (BOHB's
    rule), and asks ``base`` with it:

    * a configuration with a value recorded at ``r`` is a complete trial with that value
      (even while it trains on beyond ``r``); a diverged one (a non-finite value) is a
      pruned trial;
    * a configuration still training (or enqueued) below ``r``, or paused below ``r``
      with a checkpoint it may be promoted from, is pending, so parallel workers spread
      out as they do with the base sampler (``n_jobs > 1``);
    * a configuration stopped below ``r`` is a pruned trial (the base's rule for pruned
      trials applies: :class:`BayesianSampler` enters it with the worst value by
      default, or ignores it with ``pruned="exclude"``);
    * trials no halving policy manages (no ``fw_rungs``) are tried points without a value.
    * each configuration's trial lasts its seconds per unit of resource (see the module
      docstring; no duration while none of its trials has finished): a base with
      ``cost="duration"`` proposes by expected improvement per second of training.

    Until some rung has ``min_points`` results, the base sees no values and makes its
    initial design (a Sobol sequence for :class:`BayesianSampler`). Once one has, a share
    ``random_fraction`` of the suggestions are random draws instead (BOHB's
    ``random_fraction``), so that a model misled by early rungs still leaves room for
    configurations it would rule out. In a study without
    any rung records (no halving policy), every trial is passed through unchanged: the
    sampler is its base. The promoted trials of a configuration count once, as that
    configuration.

    With ``model="fidelity"`` (a :class:`BayesianSampler` base), the model is instead one
    GP over configuration x resource, fitted on every rung's values:

    * each configuration enters once per rung it recorded, the rung's resource an extra
      input (in log scale, from the smallest recorded resource to ``R``, the largest), its
      value less the rung's *shift* (the median change from the rung below over the
      configurations recorded at both: values improve with training, and a stationary GP
      would otherwise read rung 1's level, not its ranking, into its predictions at ``R``);
      a diverged value is a pruned point at its rung;
    * the acquisition is maximised over the configurations with the resource held at
      ``R`` (:meth:`BayesianSampler.ask_at`), its incumbent the best value the GP
      predicts at ``R`` for a configuration tried so far: a configuration stopped at
      rung 1 tells the model what it can of its value at ``R``;
    * a configuration running or enqueued is pending at ``R`` (with ``n_jobs > 1`` the
      base's fantasies spread the workers out); one paused at a rung is not, its values
      there are what the model knows of it; configurations without any value (failed,
      or stopped before their first rung) and trials no halving policy manages are
      tried points without a value (never suggested again);
    * it feeds the model once ``min_points`` configurations have a finite value at some
      rung; before, the base makes its initial design as with ``model="rung"``.

    Args:
        base: the sampler whose model is fitted on the rung values (default:
            ``BayesianSampler(seed=seed)``). Any sampler works; one that ignores the
            history (``RandomSampler``) is unchanged by the wrapper.
        seed: the seed of the default base; pass a ``base`` *or* a seed, not both.
        min_points: results a rung needs to feed the model (default: the space's
            dimension + 2, as BOHB, and at least the base's ``n_initial_points``, so a
            chosen rung never sends the base back to its initial design).
        random_fraction: the share of suggestions, once a rung feeds the model, drawn at
            random (:class:`RandomSampler`'s draw for that trial number) rather than asked
            of the base; in ``[0, 1)``. Whether suggestion ``n`` is random depends only on
            the seed and ``n``, so a resumed search or another worker decides the same.
        model: ``"rung"`` (default): the base sees the values of one rung (BOHB's rule);
            ``"fidelity"``: one GP over configuration x resource on all rungs, proposing
            at the largest resource (needs a :class:`BayesianSampler` base).

    Example:
        >>> from frameworm_lightning import BayesianSampler, Real, Study
        >>> from frameworm_lightning.samplers import MultiFidelitySampler
        >>> sampler = MultiFidelitySampler(BayesianSampler(seed=0, n_initial_points=4))
        >>> study = Study.create("mf-demo", {"x": Real(0.0, 1.0)}, metric="loss", sampler=sampler)
        >>> trial = study.ask()
        >>> trial.system_attrs["mf_rung"] is None  # no rung results yet: the initial design
        True
    """

    def __init__(self, base: Sampler | None = None, *, seed: int | None = None, min_points: int | None = None,
                 random_fraction: float = 0.0, model: str = "rung") -> None:
        if base is not None and not isinstance(base, Sampler):
            raise ValueError(f"base must be a frameworm_lightning Sampler, but got base={base!r}.")
        if isinstance(base, MultiFidelitySampler):
            raise ValueError("base must not itself be a MultiFidelitySampler; pass its base instead.")
        if base is not None and seed is not None:
            raise ValueError(f"pass the seed to the base sampler, not to MultiFidelitySampler (got seed={seed!r} "
                             f"and base={base!r}).")
        if min_points is not None and (isinstance(min_points, bool) or not isinstance(min_points, int)
                                       or min_points < 1):
            raise ValueError(f"min_points must be a positive integer or None, but got min_points={min_points!r}.")
        if (isinstance(random_fraction, bool) or not isinstance(random_fraction, (int, float))
                or not 0.0 <= random_fraction < 1.0):
            raise ValueError(f"random_fraction must be a number in [0, 1), but got random_fraction={random_fraction!r}.")
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}, but got model={model!r}.")
        if model == "fidelity" and base is not None and not isinstance(base, BayesianSampler):
            raise ValueError(f"model='fidelity' fits the base's GP with the resource as an input, so the base must be "
                             f"a BayesianSampler, but got base={base!r}; pass one, or model='rung'.")
        self.base = base if base is not None else BayesianSampler(seed=seed)
        self.model = model
        super().__init__(seed=self.base.seed)
        self.min_points = min_points
        self.random_fraction = float(random_fraction)
        self._random = RandomSampler(seed=self.base.seed)

    def __repr__(self) -> str:
        return (f"MultiFidelitySampler(base={self.base!r}, min_points={self.min_points!r}, "
                f"random_fraction={self.random_fraction!r}, model={self.model!r})")

    def identity(self) -> dict[str, Any]:
        # random_fraction and model only change the draws, not which points a search may run
        return {"sampler": type(self).__name__, "base": self.base.identity()}

    def max_trials(self, space: SearchSpace) -> int | None:
        return self.base.max_trials(space)

    def points_needed(self, space: SearchSpace) -> int:
        """Results a rung needs to feed the model (see ``min_points``; ``model="fidelity"``: the
        configurations with a finite value at some rung)."""
        if self.min_points is not None:
            return self.min_points
        return max(space.dim + 2, int(getattr(self.base, "n_initial_points", 0) or 0))

    def rung(self, context: AskContext) -> tuple[str | None, int]:
        """The rung the model is fitted on (``None``: none has enough results) and its result count.

        The count is that of the chosen rung, or, when none qualifies, of the rung with
        the most results (0 without any).
        """
        configs, _ = _group(context.trials)
        counts: dict[str, int] = {}
        for config in configs.values():
            for key, value in config.values.items():
                if math.isfinite(value):
                    counts[key] = counts.get(key, 0) + 1
        needed = self.points_needed(context.space)
        for key in sorted(counts, key=_resource, reverse=True):
            if counts[key] >= needed:
                return key, counts[key]
        return None, max(counts.values(), default=0)

    def fidelity(self, context: AskContext) -> tuple[str | None, int]:
        """``model="fidelity"``: the rung ``R`` the acquisition holds the resource at (the largest
        recorded; ``None`` while fewer than ``min_points`` configurations have a finite value at
        some rung) and how many configurations have one."""
        configs, _ = _group(context.trials)
        count, keys = 0, set()
        for config in configs.values():
            rungs = _rungs(config)
            keys.update(rungs)
            count += any(math.isfinite(config.values[key]) for key in rungs)
        top = max(sorted(keys), key=_resource, default=None)
        return (top if count >= self.points_needed(context.space) else None), count

    def fidelity_view(self, context: AskContext) -> tuple[AskContext, dict[str, float]]:
        """``model="fidelity"``: the context the base's GP is fitted on, and the resource to hold.

        The space gains a dimension, the resource (``Real(smallest, R, log=True)``); each
        configuration is one trial per rung it recorded, complete with its value there less
        the rung's shift (pruned when it diverged), one more running at ``R`` while it trains or is enqueued, and one
        failed at ``R`` (a tried point) when it has no value at all.
        """
        key, _ = self.fidelity(context)
        if key is None:
            raise ValueError("fidelity_view needs a rung feeding the model (see fidelity()), but none has enough "
                             "results yet.")
        configs, others = _group(context.trials)
        top = _resource(key)
        low = min(_resource(k) for c in configs.values() for k in _rungs(c))
        name = _RESOURCE
        while name in context.space:
            name = "_" + name
        # One recorded resource: any range does, every point sits at its low end, as R does.
        space = SearchSpace({**context.space, name: Real(low, top if top > low else 2 * low, log=True)})
        trials = [FrozenTrial(t.number, t.state if t.state in _ACTIVE else TrialState.FAILED, {**t.params, name: top})
                  for t in others]
        shift = _shifts(list(configs.values()))
        for config in configs.values():
            params = dict(config.latest.params)
            # The base's own records (warm-started GP hyperparameters) carry over only between
            # suggestions of this model at the same R.
            first = config.first.system_attrs
            attrs = dict(first) if first.get("mf_model") == "fidelity" and first.get("mf_rung") == key else {}
            entries = []
            for rung in _rungs(config):
                value = config.values[rung]
                entries.append(FrozenTrial(config.first.number, TrialState.COMPLETE if math.isfinite(value)
                                           else TrialState.PRUNED, {**params, name: _resource(rung)},
                                           value - shift[rung] if math.isfinite(value) else None))
            if config.latest.state in _ACTIVE:
                entries.append(FrozenTrial(config.first.number, TrialState.RUNNING, {**params, name: top}))
            elif not entries:
                entries.append(FrozenTrial(config.first.number, TrialState.FAILED, {**params, name: top}))
            # Its seconds per unit of resource (see the module docstring), once per configuration.
            per_unit = config.seconds_per_resource
            entries[-1] = replace(entries[-1], started_at=None if per_unit is None else 0.0, completed_at=per_unit)
            entries[0] = replace(entries[0], system_attrs=attrs)
            trials.extend(entries)
        trials.sort(key=lambda t: t.number)
        return replace(context, space=space, trials=trials), {name: top}

    def view(self, context: AskContext) -> AskContext:
        """The context the base sampler is asked with: the history as seen at :meth:`rung`."""
        return self._view_at(context, self.rung(context)[0])

    def _view_at(self, context: AskContext, key: str | None) -> AskContext:
        """The history as seen at rung ``key`` (``None``: no values, the base's initial design)."""
        configs, others = _group(context.trials)
        if not any(config.values for config in configs.values()):
            return context  # no halving policy recorded anything: the base sees the study as it is
        trials = [t if t.state in _ACTIVE else _as(t, TrialState.FAILED) for t in others]
        for config in configs.values():
            latest = config.latest
            value = config.values.get(key) if key is not None else None
            # The base's own records (warm-started GP hyperparameters, hedge history) carry
            # over only between suggestions made on the same rung's data.
            attrs = dict(config.first.system_attrs) if key is not None and config.first.system_attrs.get(
                "mf_rung") == key else {}
            if value is not None and math.isfinite(value):
                state, value_ = TrialState.COMPLETE, value
            elif value is not None:
                state, value_ = TrialState.PRUNED, None  # diverged at the rung
            elif latest.state in _ACTIVE or _waits_for_promotion(latest):
                state, value_ = TrialState.RUNNING, None  # may still reach the rung: pending
            elif key is None or latest.state is TrialState.FAILED:
                state, value_ = TrialState.FAILED, None  # tried, nothing the model can use
            else:
                state, value_ = TrialState.PRUNED, None  # stopped or paused below the rung
            per_unit = config.seconds_per_resource
            trials.append(FrozenTrial(config.first.number, state, dict(latest.params), value_,
                                      started_at=None if per_unit is None else 0.0, completed_at=per_unit,
                                      system_attrs=attrs))
        trials.sort(key=lambda t: t.number)
        return replace(context, trials=trials)

    def ask(self, context: AskContext) -> Suggestion | None:
        fidelity = self.model == "fidelity"
        key, count = self.fidelity(context) if fidelity else self.rung(context)
        if key is not None and self.rng(context.number, salt=_SALT_RANDOM_PICK).random() < self.random_fraction:
            suggestion = self._random.ask(context)
            return replace(suggestion, system_attrs={**suggestion.system_attrs, "mf_rung": key, "mf_points": count,
                                                     "mf_random": True})
        if fidelity and key is not None:
            assert isinstance(self.base, BayesianSampler)  # checked in __init__
            suggestion = self.base.ask_at(*self.fidelity_view(context))
        else:  # before the fidelity model has enough results, the base's initial design, as with rungs
            suggestion = self.base.ask(self._view_at(context, None) if fidelity else self.view(context))
        if suggestion is None:
            return None
        attrs = {**suggestion.system_attrs, "mf_rung": key, "mf_points": count}
        if fidelity and key is not None:
            attrs["mf_model"] = "fidelity"
        return replace(suggestion, system_attrs=attrs)


def _waits_for_promotion(trial: FrozenTrial) -> bool:
    """Paused at a rung with a checkpoint to resume from, not promoted yet (ASHA in a runner)."""
    attrs = trial.system_attrs
    return (trial.state is TrialState.PRUNED and "fw_paused_at" in attrs and "promoted_to" not in attrs
            and bool(attrs.get("fw_checkpoint")))


def _as(trial: FrozenTrial, state: TrialState) -> FrozenTrial:
    return FrozenTrial(trial.number, state, dict(trial.params))
