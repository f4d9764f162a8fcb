"""Stopping policies side by side on the recorded curve tables, over many seeds.

Run from the repository root::

    python -m benchmarks.curves.compare --seeds 20 --budget 10              # one worker
    python -m benchmarks.curves.compare --seeds 20 --budget 10 --workers 4  # 4 asynchronous workers

Every search on a table gets the same budget: on one worker, ``--budget`` full trainings
(``budget * max_epochs`` epochs, each epoch one unit of time); on ``--workers`` simulated
asynchronous workers, the wall time those workers need to train ``--budget`` configurations
of the table's mean recorded duration, each epoch taking its recorded seconds. A search
draws configurations from the table (a seeded permutation of it, repeated when exhausted;
a model-based sampler proposes a point of the space's unit cube and trains the table's
nearest configuration not yet tried) and "trains" them epoch by epoch on their recorded
curves, asking its policy after each epoch whether to go on; on several workers the
reports reach the policy in the order their epochs end.

- ``none``: every configuration trains ``max_epochs``.
- ours: ``MedianStopping``, ``ImprovementStopping`` (patience 3), ``SuccessiveHalving``,
  ``ASHA``, ``Hyperband`` (1 to ``max_epochs`` epochs, eta 3), through their pure
  ``decide(History)``, the other trials of the search (running ones too) passed as
  ``History.others`` with the system attributes the decisions store: the logic the
  callbacks run. Without a runner to pause and resume trials, the halving policies
  *prune* at the rungs (their ``promotion=False`` variant, as Ray Tune's ASHA does).
- ``ASHA+BO``, ``Hyperband+BO``: the same policies, the configurations proposed by
  ``MultiFidelitySampler(BayesianSampler(seed))`` (the sampler's default settings), whose
  model is fitted on the values of the highest rung with enough results; the sampler's
  initial design takes the random rows' configurations.
- ``ASHA+BOF``, ``Hyperband+BOF``, ``ASHA+BOF+pause``: the same with the fidelity model,
  ``MultiFidelitySampler(BayesianSampler(seed), model="fidelity")``: one GP over
  configuration x resource fitted on every rung's values, proposing at the largest resource.
- ``ASHA+BO+cost``, ``ASHA+BO+cost+pause``: the same with a cost-aware model,
  ``BayesianSampler(seed, cost="duration")``: expected improvement per second of training,
  each configuration's seconds per epoch read from the (simulated) durations of its
  trials. On one worker an epoch is one unit of time for every configuration: the rows
  are then their cost-blind counterparts.
- ``ASHA+pause``, ``Hyperband+pause``, ``ASHA+BO+pause``: the halving policies *with
  promotions* (a ``SearchRunner``'s default): a trial not in the top pauses and a promotion
  resumes its configuration where it paused, in a memory ``Study`` driven as the runner does.
- Optuna: ``TPESampler`` and ``RandomSampler`` with ``MedianPruner``,
  ``SuccessiveHalvingPruner`` and ``HyperbandPruner`` (min 1, max ``max_epochs``, eta 3).
- Ray Tune's ``ASHAScheduler`` and ``HyperBandScheduler``, when ``ray.tune`` imports.
- ``runner:ASHA``, ``runner:Hyperband`` (``--runner-seeds``): ours with promotions in
  the real ``SearchRunner`` on the replay (one worker; the seeded order proposed by its
  sampler, so they train what ``ASHA+pause`` and ``Hyperband+pause`` train).

The *best-so-far regret* at time ``t`` is the value of the best run the search has finished
by ``t`` (trained to ``max_epochs``; or judged converged by its policy, which delivers the
model it stopped with: its value at that epoch, not the ``max_epochs`` value it did not pay
for), minus the best fully trained value of the table (the table's worst before any): monotone.
(``Search.answer_curve`` gives the regret of the search's current answer, the best finished
configuration else the one trained furthest with the best value there; not monotone.) The table prints, per row, the best-so-far regret at the end of the budget,
its area under the curve (its mean over the budget), the time needed to reach the final
regret of the search without stopping on the same seed, and the mean rank by area across
tables: the rank of each row's mean area, and its rank per seed averaged over the seeds
(:func:`per_seed_ranks`).
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import heapq
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from benchmarks.curves.problems import PROBLEMS
from benchmarks.curves.table import Table, load_table
from frameworm_lightning.samplers import AskContext, Sampler, Suggestion
from frameworm_lightning.stopping import (
    ASHA,
    Check,
    Decision,
    History,
    Hyperband,
    ImprovementStopping,
    MedianStopping,
    SuccessiveHalving,
)
from frameworm_lightning.storage import TrialHistory
from frameworm_lightning.trial import FrozenTrial, TrialState

TABLES = ["digits-mlp", "cancer-mlp", "digits-vae"]
ETA = 3


# --- the record of one search ----------------------------------------------------------------
@dataclass
class Search:
    """What a search trained, in order: ``(time, regret of its answer)`` at every report.

    Time is in epochs for a serial search (each epoch one unit) and in recorded seconds
    for a search on several simulated workers; ``budget`` is in the same unit.
    """

    table: Table
    budget: float
    now: float = 0.0
    best: tuple[int, int, float] | None = None  # (not finished, -epochs trained, value) of the answer
    answer: int | None = None
    trials: int = 0  # trials ended
    epochs: int = 0  # epochs trained, on all workers
    trace: list[tuple[float, float]] = field(default_factory=list)
    finished: list[tuple[float, float]] = field(default_factory=list)  # (time, best finished regret so far)

    @property
    def left(self) -> float:
        return self.budget - self.now

    @property
    def spent(self) -> float:
        return self.now

    def trained(self, index: int, values: list[float], finished: bool | None = None, ended: bool = True) -> None:
        """Configuration ``index`` has trained ``len(values)`` epochs.

        ``finished``: the search counts it as fully trained (it reached ``max_epochs``, or a
        policy such as ``ImprovementStopping`` judged it converged); by default, whether it
        reached ``max_epochs``. The answer is the best finished configuration, else the one
        trained furthest with the best value there. Searches call it after every epoch
        (``ended=False``) and when a trial ends, so the answer is updated at every report.
        """
        self.trials += ended
        if finished is None:
            finished = len(values) >= self.table.max_epochs
        if finished:
            # A run judged converged before max_epochs delivers the model it stopped with: it is
            # credited with its value there, not with the recorded max_epochs value it never paid for.
            regret = self.regret(index) if len(values) >= self.table.max_epochs else self._regret_of(values[-1])
            if not self.finished or regret < self.finished[-1][1]:
                self.finished.append((self.now, regret))
        key = (0 if finished else 1, 0 if finished else -len(values), self.table.quality(values[-1]))
        if self.best is None or key < self.best:
            self.best, self.answer = key, index
        self.trace.append((self.now, self.regret(self.answer)))

    def epoch(self, seconds: float = 1.0) -> None:
        """One more epoch trained, ending ``seconds`` later (serial searches)."""
        self.now += seconds
        self.epochs += 1

    def regret(self, index: int | None) -> float:
        """The regret of configuration ``index`` fully trained (``max_epochs``)."""
        if index is None:
            return self.worst
        return self._regret_of(self.table.curves[index].final)

    def _regret_of(self, value: float) -> float:
        quality = self.table.quality(value)
        return quality - self.table.best_final if math.isfinite(quality) else self.worst

    @property
    def worst(self) -> float:
        finals = [self.table.quality(c.final) for c in self.table.curves]
        return max(f for f in finals if math.isfinite(f)) - self.table.best_final

    def grid(self, points: int | None = None) -> np.ndarray:
        """Times the curves are read at: every epoch ``1..budget``, or ``points`` even steps."""
        if points is None:
            return np.arange(1, int(self.budget) + 1, dtype=float)
        return self.budget * np.arange(1, points + 1) / points

    def _read(self, trace: list[tuple[float, float]], grid: np.ndarray | None) -> np.ndarray:
        """The last value of ``trace`` at or before each time of ``grid`` (the table's worst before any)."""
        grid = self.grid() if grid is None else grid
        out = np.full(len(grid), self.worst)
        times = np.array([t for t, _ in trace])
        values = np.array([r for _, r in trace])
        if len(times):
            last = np.searchsorted(times, grid + 1e-9, side="right") - 1
            out[last >= 0] = values[last[last >= 0]]
        return out

    def answer_curve(self, grid: np.ndarray | None = None) -> np.ndarray:
        """The regret of the search's answer at each time of ``grid``.

        Not monotone: a configuration named the answer after a few epochs can be replaced
        by a worse one that finished.
        """
        return self._read(self.trace, grid)

    def curve(self, grid: np.ndarray | None = None) -> np.ndarray:
        """Best-so-far regret: the regret of the best run finished so far (trained to
        ``max_epochs``; or judged converged by its policy, at the value it stopped with); the
        table's worst before any.

        Monotone (never increases), and it credits a search only with what it trained fully.
        """
        return self._read(self.finished, grid)


def stream(table: Table, seed: int) -> Iterator[int]:
    """Configurations of a table in a seeded random order, a new order when it runs out."""
    rng = np.random.default_rng(seed)
    while True:
        yield from (int(i) for i in rng.permutation(len(table)))


def _nearest(table: Table) -> Callable[[np.ndarray, set[int]], int]:
    """The table's configuration nearest (in the space's unit cube) to a point, skipping ``tried``
    ones while any is left: a real search would train a new configuration near its proposal."""
    space = PROBLEMS[table.name].space
    points = np.array([space.encode(c.params) for c in table.curves])

    def nearest(u: np.ndarray, tried: set[int]) -> int:
        order = np.argsort(((points - u) ** 2).sum(1), kind="stable")
        fresh = [int(i) for i in order if int(i) not in tried]
        return fresh[0] if fresh else int(order[0])

    return nearest


# --- one row: which configuration to train next, and whether to go on --------------------------
class Row(abc.ABC):
    """A search strategy, driven one epoch at a time by :func:`drive` on one or more workers.

    ``start()`` returns a handle of the trial to train next: a new configuration, or (Ray's
    HyperBand) a paused one to resume; ``report`` says after each epoch whether it goes on;
    ``end`` is called once it stops. ``index[h]`` is the table configuration of handle ``h``
    and ``seen[h]`` the values it trained so far.
    """

    def __init__(self, table: Table, seed: int) -> None:
        self.table, self.seed = table, seed
        self.order = stream(table, seed)
        self.index: dict[Any, int] = {}
        self.seen: dict[Any, list[float]] = {}
        self.now = 0.0  # the simulated time, set by the driver before each call

    @abc.abstractmethod
    def start(self) -> Any:
        """The handle of the trial to train next."""

    @abc.abstractmethod
    def report(self, h: Any, epoch: int, value: float) -> tuple[bool, bool]:
        """``(go on, finished)`` after epoch ``epoch`` (from 1) of trial ``h`` with ``value`` (to minimise)."""

    def end(self, h: Any, finished: bool) -> None:
        """Trial ``h`` stopped (``finished``: it reached the last epoch or its policy finished it)."""


class TableSampler(Sampler):
    """Proposes configurations of a table: the seeded random order (:func:`stream`), or, with a
    ``model`` sampler, the table's configuration nearest to the model's proposal among those
    not tried yet. The model's initial design (``bo == "initial"``) and its random draws
    (``mf_random``, ``MultiFidelitySampler``'s ``random_fraction``) take the random order's
    configurations, so that rows differ only by the model's proposals (the configuration
    nearest to a Sobol point favours isolated, often extreme, ones).

    ``clock``: each trial's simulated ``(start, end)`` (``end`` ``None`` while it runs), kept
    by the row; the model sees them as the trials' ``started_at``/``completed_at``, in place
    of the wall clock of this process."""

    def __init__(self, table: Table, seed: int, model: Sampler | None = None) -> None:
        super().__init__(seed)
        self.table, self.model = table, model
        self.clock: dict[int, tuple[float, float | None]] = {}
        self.order = stream(table, seed)
        self.space = PROBLEMS[table.name].space
        self.nearest = _nearest(table)
        self._index = {_key(c.params): i for i, c in enumerate(table.curves)}

    def index(self, params: dict[str, Any]) -> int:
        return self._index[_key(params)]

    def ask(self, context: AskContext) -> Suggestion:
        tried = {self.index(t.params) for t in context.trials if t.has_params}
        attrs: dict[str, Any] = {}
        if self.model is not None:
            trials = [dataclasses.replace(t, started_at=self.clock[t.number][0], completed_at=self.clock[t.number][1])
                      if t.number in self.clock else t for t in context.trials]
            suggestion = self.model.ask(dataclasses.replace(context, trials=trials))
            assert suggestion is not None  # an unbounded space
            attrs = dict(suggestion.system_attrs)
            if attrs.get("bo") != "initial" and not attrs.get("mf_random"):
                i = self.nearest(self.space.encode(suggestion.params), tried)
                return Suggestion(dict(self.table.curves[i].params), system_attrs=attrs)
        i = next(i for i in self.order if i not in tried or len(tried) >= len(self.table))
        return Suggestion(dict(self.table.curves[i].params), system_attrs=attrs)


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def table_sampler(table: Table, seed: int, model: str | None) -> TableSampler:
    """Random proposals (``model=None``), or ``MultiFidelitySampler(BayesianSampler(seed))``'s
    (default settings; ``model="cost"``: with ``cost="duration"``, ``"blind"``: without;
    ``"fidelity"``: cost-blind, with ``model="fidelity"``)."""
    if model is None:
        return TableSampler(table, seed)
    from frameworm_lightning import BayesianSampler, MultiFidelitySampler  # noqa: PLC0415 - torch on first use

    cost = {"blind": None, "cost": "duration", "fidelity": None}[model]
    return TableSampler(table, seed, MultiFidelitySampler(BayesianSampler(seed=seed, cost=cost),
                                                          model="fidelity" if model == "fidelity" else "rung"))


class OursRow(Row):
    """Our policies through their pure ``decide(History)``, every other trial of the search in
    ``History.others`` (running ones too) with the system attributes the decisions store;
    ``model``: configurations from :class:`MultiFidelitySampler` instead of the seeded order
    (see :func:`table_sampler`)."""

    def __init__(self, table: Table, seed: int, make: Callable[[], Any] | None, model: str | None = None) -> None:
        super().__init__(table, seed)
        self.policy = make() if make is not None else None
        self.done: list[FrozenTrial] = []
        self.running: dict[int, dict[str, Any]] = {}  # number -> attrs
        self.values: dict[int, dict[int, float]] = {}
        self.sampler = table_sampler(table, seed, model)
        self.space = self.sampler.space

    def _others(self, number: int | None) -> tuple[FrozenTrial, ...]:
        live = tuple(FrozenTrial(n, TrialState.RUNNING, self._params(n), None, dict(self.values[n]),
                                 system_attrs=dict(attrs)) for n, attrs in self.running.items() if n != number)
        return (*self.done, *live)

    def _params(self, number: int) -> dict[str, Any]:
        return self.table.curves[self.index[number]].params

    def start(self) -> int:
        number = len(self.index)
        suggestion = self.sampler.ask(AskContext(self.space, "min", self._others(None), number))
        self.index[number] = self.sampler.index(suggestion.params)
        attrs = dict(suggestion.system_attrs)  # the sampler's records, as a Study stores them
        self.seen[number], self.values[number] = [], {}
        self.sampler.clock[number] = (self.now, None)
        start = getattr(self.policy, "start_attrs", None)
        if start is not None:
            attrs.update(start(History(mode="min", number=number, others=self._others(number))))
        self.running[number] = attrs
        return number

    def report(self, h: int, epoch: int, value: float) -> tuple[bool, bool]:
        self.values[h][epoch] = value
        last = epoch == self.table.max_epochs
        if self.policy is None:
            return not last, last
        attrs = self.running[h]
        # Asked at the last epoch too, as the callback is: the halving policies record the top rung there.
        decision = self.policy.decide(History(dict(self.values[h]), mode="min", step=epoch, epoch=float(epoch),
                                              number=h, attrs=attrs, others=self._others(h)))
        attrs.update(decision.attrs)
        if last or decision.stops:
            return False, last or decision.decision is not Decision.PRUNE
        return True, False

    def end(self, h: int, finished: bool) -> None:
        values = self.values[h]
        self.sampler.clock[h] = (self.sampler.clock[h][0], self.now)
        self.done.append(FrozenTrial(h, TrialState.COMPLETE if finished else TrialState.PRUNED, self._params(h),
                                     values[max(values)], dict(values), system_attrs=self.running.pop(h)))


class PausingRow(Row):
    """Our halving policies *with promotions*, as in a ``SearchRunner``: a trial not (yet) in the
    top pauses, and a promotion enqueues a trial that resumes its configuration at the epoch it
    paused at. A real :class:`Study` (in memory) holds the trials; the policy is driven as the
    callback and the runner drive it (``start_attrs``, ``decide`` with ``can_pause``, its
    scheduler's ``trial_budget`` before every claim)."""

    def __init__(self, table: Table, seed: int, make: Callable[[], Any], model: str | None = None) -> None:
        from frameworm_lightning import Study  # noqa: PLC0415

        super().__init__(table, seed)
        self.policy = make()
        self.policy.promotion = True
        self.scheduler = self.policy.scheduler()
        self.sampler = table_sampler(table, seed, model)
        self.study = Study.create(f"{table.name}-{seed}", self.sampler.space, metric=table.metric, mode="min",
                                  sampler=self.sampler, storage="memory")
        self.values: dict[Any, dict[int, float]] = {}
        self.seen_trials = TrialHistory(self.study.study_id)

    def _others(self, trial: Any) -> list[FrozenTrial]:
        # As the callback reads them: what changed since the last read (Storage.read_history).
        return [t for t in self.study.storage.read_history(self.seen_trials) if t.number != trial.number]

    def start(self) -> Any:
        trial = self.study.ask(budget=self.scheduler.trial_budget(self.study, 10**9))
        assert trial is not None
        history = History(mode="min", number=trial.number, attrs=trial.system_attrs, others=self._others(trial),
                          check=Check.START)
        for key, value in self.policy.start_attrs(history).items():
            trial.set_system_attr(key, value)
        index = self.sampler.index(trial.params)
        resumed = int(float(trial.system_attrs.get("fw_promoted_at", 0)))  # a promotion resumes there
        self.index[trial], self.seen[trial] = index, list(self.table.curves[index].values[:resumed])
        self.values[trial] = {}
        self.sampler.clock[trial.number] = (self.now, None)
        return trial

    def report(self, h: Any, epoch: int, value: float) -> tuple[bool, bool]:
        self.values[h][epoch] = value
        h.report(epoch, value)
        decision = self.policy.decide(History(dict(self.values[h]), mode="min", step=epoch, epoch=float(epoch),
                                              number=h.number, attrs=h.system_attrs, others=self._others(h),
                                              can_pause=True))
        for key, attr in decision.attrs.items():
            h.set_system_attr(key, attr)
        if decision.decision is Decision.PAUSE:
            h.set_system_attr("fw_checkpoint", f"paused-{h.number}.ckpt")  # nothing to save: the curve is known
        if decision.stops or epoch == self.table.max_epochs:
            return False, decision.decision is Decision.FINISH or epoch == self.table.max_epochs
        return True, False

    def end(self, h: Any, finished: bool) -> None:
        values = self.values[h]
        self.sampler.clock[h.number] = (self.sampler.clock[h.number][0], self.now)
        if finished:
            h.complete(values[max(values)])
        else:
            h.prune(value=values[max(values)] if math.isfinite(values[max(values)]) else None)


def our_rows(table: Table) -> dict[str, Callable[[], Any] | None]:
    top = table.max_epochs
    return {
        "none": None,
        "Median": lambda: MedianStopping(grace_steps=1, min_trials=3, mode="min"),
        "Improvement": lambda: ImprovementStopping(patience=3, mode="min"),
        "SuccessiveHalving": lambda: SuccessiveHalving(min_resource=1, max_resource=top, eta=ETA, mode="min",
                                                       promotion=False),
        "ASHA": lambda: ASHA(min_resource=1, max_resource=top, eta=ETA, mode="min", promotion=False),
        "Hyperband": lambda: Hyperband(min_resource=1, max_resource=top, eta=ETA, mode="min", promotion=False),
    }


#: Our halving policies with configurations proposed by MultiFidelitySampler(BayesianSampler()),
#: cost-blind or cost-aware, or by its fidelity model (see :func:`table_sampler`).
MODEL_BASED = {"ASHA+BO": ("ASHA", "blind"), "Hyperband+BO": ("Hyperband", "blind"), "ASHA+BO+cost": ("ASHA", "cost"),
               "ASHA+BOF": ("ASHA", "fidelity"), "Hyperband+BOF": ("Hyperband", "fidelity")}
#: Our halving policies with promotions (pause and resume, a SearchRunner's default), random or model-based.
PAUSING = {"ASHA+pause": ("ASHA", None), "Hyperband+pause": ("Hyperband", None), "ASHA+BO+pause": ("ASHA", "blind"),
           "ASHA+BO+cost+pause": ("ASHA", "cost"), "ASHA+BOF+pause": ("ASHA", "fidelity")}


# --- Optuna ---------------------------------------------------------------------------------------
class OptunaRow(Row):
    """Optuna's ask-and-tell: ``TPESampler`` (its proposal's nearest untried configuration) or
    random search in the seeded order ours use, under one of its pruners."""

    def __init__(self, table: Table, seed: int, sampler: str, pruner: str) -> None:
        import optuna  # noqa: PLC0415 - a benchmark extra

        super().__init__(table, seed)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.optuna = optuna
        top = table.max_epochs
        pruners = {
            "Median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
            "SHA": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA),
            "Hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=top,
                                                                reduction_factor=ETA),
        }
        chosen = optuna.samplers.TPESampler(seed=seed) if sampler == "TPE" else optuna.samplers.RandomSampler(seed)
        # A fixed name: HyperbandPruner picks a trial's bracket from a hash of the study's name,
        # a random UUID by default, which made its rows differ from run to run.
        self.study = optuna.create_study(study_name=f"{table.name}-{sampler}-{pruner}-{seed}", direction="minimize",
                                         sampler=chosen, pruner=pruners[pruner]())
        self.tpe = sampler == "TPE"
        self.nearest = _nearest(table)
        self.dim = len(PROBLEMS[table.name].space)

    def start(self) -> Any:
        trial = self.study.ask()
        if self.tpe:
            u = np.array([trial.suggest_float(f"u{i}", 0.0, 1.0) for i in range(self.dim)])
            self.index[trial] = self.nearest(u, set(self.index.values()))
        else:  # the same seeded order as ours: only the pruner differs
            self.index[trial] = next(self.order)
        self.seen[trial] = []
        return trial

    def report(self, h: Any, epoch: int, value: float) -> tuple[bool, bool]:
        h.report(value if math.isfinite(value) else 1e12, epoch)
        if epoch == self.table.max_epochs:
            return False, True
        return not h.should_prune(), False

    def end(self, h: Any, finished: bool) -> None:
        last = self.table.quality(self.seen[h][-1])
        if finished:
            self.study.tell(h, last if math.isfinite(last) else 1e12)
        else:
            self.study.tell(h, state=self.optuna.trial.TrialState.PRUNED)


# --- Ray Tune's schedulers, driven through on_trial_result -----------------------------------------
def ray_available() -> str | None:
    """``None`` when ``ray.tune`` imports, else why not."""
    try:
        import ray.tune.schedulers  # noqa: F401, PLC0415
    except Exception as err:  # noqa: BLE001 - any import failure means "not here"
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return None


class _Controller:
    """The calls a Tune scheduler makes on its ``TuneController``."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.trials: list[Any] = []

    def get_trials(self) -> list[Any]:
        return self.trials

    def stop_trial(self, trial: Any) -> None:
        from ray.tune.experiment import Trial  # noqa: PLC0415 - a benchmark extra

        trial.set_status(Trial.TERMINATED)
        self.scheduler.on_trial_remove(self, trial)


class RayRow(Row):
    """Random search (the seeded order ours use) under Ray Tune's ``ASHAScheduler`` or
    ``HyperBandScheduler``, with no cluster: the scheduler's ``on_trial_add``,
    ``on_trial_result``, ``choose_trial_to_run`` and ``on_trial_complete`` are called as
    Tune's controller calls them, and a paused trial resumes at the epoch it paused at."""

    def __init__(self, table: Table, seed: int, scheduler: str) -> None:
        from ray.tune.experiment import Trial  # noqa: PLC0415 - a benchmark extra
        from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, TrialScheduler  # noqa: PLC0415

        super().__init__(table, seed)
        self.Trial, self.TrialScheduler = Trial, TrialScheduler
        common = {"metric": "loss", "mode": "min", "max_t": table.max_epochs, "reduction_factor": ETA,
                  "time_attr": "training_iteration"}
        self.sched = ASHAScheduler(grace_period=1, **common) if scheduler == "ASHA" else HyperBandScheduler(**common)
        self.ctl = _Controller(self.sched)
        self.last: dict[Any, dict[str, Any]] = {}

    def start(self) -> Any:
        trial = self.sched.choose_trial_to_run(self.ctl)
        if trial is None:
            trial = self.Trial("__fake", stub=True, trial_id=str(len(self.index)))
            self.index[trial], self.seen[trial] = next(self.order), []
            self.ctl.trials.append(trial)
            self.sched.on_trial_add(self.ctl, trial)
            trial = self.sched.choose_trial_to_run(self.ctl) or trial
        trial.set_status(self.Trial.RUNNING)
        return trial

    def report(self, h: Any, epoch: int, value: float) -> tuple[bool, bool]:
        if h.status == self.Trial.TERMINATED:  # stopped by the scheduler while it trained
            return False, False
        result = {"training_iteration": epoch, "loss": value if math.isfinite(value) else 1e12}
        self.last[h] = result
        decision = self.sched.on_trial_result(self.ctl, h, result)
        if decision == self.TrialScheduler.PAUSE:
            h.set_status(self.Trial.PAUSED)
            return False, False
        if decision == self.TrialScheduler.STOP or epoch == self.table.max_epochs:
            return False, epoch == self.table.max_epochs
        return True, False

    def end(self, h: Any, finished: bool) -> None:
        if h.status == self.Trial.RUNNING:
            h.set_status(self.Trial.TERMINATED)
            self.sched.on_trial_complete(self.ctl, h, self.last[h])


# --- the driver -----------------------------------------------------------------------------------
def drive(row: Row, budget: float, workers: int = 1, seconds: bool = False) -> Search:
    """Run ``row`` on ``workers`` simulated workers until ``budget`` runs out.

    Each worker trains one trial at a time, epoch by epoch; an epoch takes one unit of time
    (``seconds=False``: the budget is in epochs) or its recorded seconds. A free worker
    takes ``row.start()`` at once; the reports of all workers reach the row in the order
    their epochs end (asynchronous, as a ``SearchRunner`` with ``n_jobs`` workers). An
    epoch that would end after the budget is not trained.
    """
    table = row.table
    search = Search(table, budget)
    events: list[tuple[float, int, int, Any]] = []  # (end time, tie-break, worker, handle)
    tick = 0

    def launch(worker: int, now: float) -> None:
        nonlocal tick
        row.now = now
        h = row.start()
        epoch = len(row.seen[h])
        duration = table.curves[row.index[h]].seconds[epoch] if seconds else 1.0
        heapq.heappush(events, (now + duration, tick, worker, h))
        tick += 1

    for w in range(workers):
        launch(w, 0.0)
    while events:
        end, _, worker, h = heapq.heappop(events)
        if end > budget + 1e-9:
            break
        search.now = row.now = end
        search.epochs += 1
        index = row.index[h]
        curve = table.curves[index].values
        row.seen[h].append(curve[len(row.seen[h])])
        go_on, finished = row.report(h, len(row.seen[h]), table.quality(row.seen[h][-1]))
        search.trained(index, row.seen[h], finished=False, ended=False)
        if go_on:
            duration = table.curves[index].seconds[len(row.seen[h])] if seconds else 1.0
            heapq.heappush(events, (end + duration, tick, worker, h))
            tick += 1
            continue
        row.end(h, finished)
        search.trained(index, row.seen[h], finished=finished)
        launch(worker, end)
    search.now = budget
    return search


def make_row(table: Table, seed: int, row: str) -> Row:
    if row in MODEL_BASED:
        policy, model = MODEL_BASED[row]
        return OursRow(table, seed, our_rows(table)[policy], model)
    if row in PAUSING:
        policy, model = PAUSING[row]
        return PausingRow(table, seed, our_rows(table)[policy], model)
    if row.startswith("ray:"):
        return RayRow(table, seed, row.split(":")[1])
    if row.startswith("optuna:"):
        _, sampler, pruner = row.split(":")
        return OptunaRow(table, seed, sampler, pruner)
    return OursRow(table, seed, our_rows(table)[row])


def ours(table: Table, seed: int, budget: int, make: Callable[[], Any] | None) -> Search:
    """One serial search of ours (``make``: the policy, ``None``: no stopping) over ``budget`` epochs."""
    return drive(OursRow(table, seed, make), budget)


# --- our halving policies in the real SearchRunner, on the replay ---------------------------------
class OrderSampler(Sampler):
    """The replay's configurations (``{"config": index}``) in the seeded random order of
    :func:`stream`, skipping those tried: the proposals of the ``+pause`` rows' random order."""

    def __init__(self, table: Table, seed: int) -> None:
        super().__init__(seed)
        self.table, self.order = table, stream(table, seed)

    def ask(self, context: AskContext) -> Suggestion:
        tried = {int(t.params["config"]) for t in context.trials if t.has_params}
        return Suggestion({"config": next(i for i in self.order if i not in tried or len(tried) >= len(self.table))})


def runner_search(table: Table, seed: int, budget: int, policy: str, root: Path) -> Search:
    """``ASHA``/``Hyperband`` *with promotions* (pause, checkpoint, resume) in a real
    ``SearchRunner`` on :class:`ReplayModule`, the seeded order proposed by its sampler
    (:class:`OrderSampler`), ended by ``BudgetStopping(search_max_steps=budget)`` (one step is
    one epoch in the replay). The order is proposed, not enqueued: the runner claims waiting
    trials lowest number first, so promotions would wait behind every enqueued configuration."""
    import logging  # noqa: PLC0415

    from benchmarks.curves.replay import REPLAY_TRAINER, ReplayModule, replay_space  # noqa: PLC0415
    from frameworm_lightning import SearchRunner  # noqa: PLC0415
    from frameworm_lightning.stopping import BudgetStopping  # noqa: PLC0415

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    top = table.max_epochs
    halving = {"ASHA": ASHA, "Hyperband": Hyperband}[policy](min_resource=1, max_resource=top, eta=ETA)
    path = str(Path(root) / f"{table.name}-{policy}-{seed}")
    runner = SearchRunner(metric=table.metric, mode=table.mode, n_trials=len(table), seed=seed, root_dir=path,
                          quiet=True, callbacks=[halving, BudgetStopping(search_max_steps=budget)],
                          sampler=OrderSampler(table, seed), trainer_kwargs=dict(REPLAY_TRAINER))
    trials = runner.fit(ReplayModule, replay_space(table.name), model_kwargs={"table": table.name}).trials
    search = Search(table, budget)
    curve_of = {i: table.curves[i].values for i in range(len(table))}
    for t in sorted(trials, key=lambda t: (t.completed_at or 0.0, t.number)):
        steps = sorted(t.intermediate_values)
        if not steps:
            continue
        index = int(t.params["config"])
        for step in steps:
            if search.left > 0:
                search.epoch()
                search.trained(index, curve_of[index][:step], finished=False, ended=False)
        search.trained(index, curve_of[index][:steps[-1]], finished=t.state is TrialState.COMPLETE)
    return search


# --- the table --------------------------------------------------------------------------------------
@dataclass
class Result:
    row: str
    finals: list[float]
    aucs: list[float]
    to_target: list[float]
    curves: list[np.ndarray] = field(default_factory=list)  # best-so-far regret per seed, read at ``grid``
    grid: np.ndarray | None = None
    first: list[float] = field(default_factory=list)  # time of the first finished run (inf: none)

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "finals": self.finals, "aucs": self.aucs, "to_target": self.to_target,
                "first": self.first}


def mean_curve_speedup(none: Result, row: Result) -> float:
    """The speed-up over no stopping on the curves averaged over the seeds (as Falkner et al., 2018,
    and Li et al., 2018, measure it against random search): the time no stopping's mean curve takes
    to reach its own final value, over the time ``row``'s mean curve takes to reach it; ``0`` if it
    never does. Unlike the per-seed first hit of no stopping's final regret (the time its best
    configuration happened to come, known only in hindsight), a mean curve that still falls at the
    end of the budget needs the whole budget to reach its final value."""

    def first(curves: list[np.ndarray]) -> float:
        mean = np.mean(curves, axis=0)
        hit = np.nonzero(mean <= target + 1e-12)[0]
        return float(none.grid[hit[0]]) if len(hit) else math.inf

    target = float(np.mean(none.curves, axis=0)[-1])
    t = first(row.curves)
    return first(none.curves) / t if math.isfinite(t) else 0.0


def budget_of(table: Table, trainings: int, workers: int) -> float:
    """The budget of a search: ``trainings * max_epochs`` epochs on one worker; on ``workers``
    simulated workers, the wall time they need to train ``trainings`` configurations of mean
    recorded duration fully (equal compute on average)."""
    if workers == 1:
        return float(trainings * table.max_epochs)
    return trainings * statistics.mean(sum(c.seconds) for c in table.curves) / workers


def run_rows(table: Table, seeds: list[int], budget_trainings: int, rows: list[str],
             runner_seeds: int = 0, runner_root: Path | None = None, workers: int = 1) -> list[Result]:
    budget = budget_of(table, budget_trainings, workers)
    points = None if workers == 1 else budget_trainings * table.max_epochs
    results: dict[str, Result] = {}
    targets: dict[int, float] = {}
    for row in rows:
        res = Result(row, [], [], [])
        for seed in seeds[:runner_seeds] if row.startswith("runner:") else seeds:
            if row.startswith("runner:"):
                s = runner_search(table, seed, int(budget), row.split(":")[1], runner_root)
            else:
                s = drive(make_row(table, seed, row), budget, workers, seconds=workers > 1)
            grid = s.grid(points)
            c = s.curve(grid)
            if row == "none":
                targets[seed] = c[-1]
            res.first.append(s.finished[0][0] if s.finished else math.inf)
            res.curves.append(c)
            res.grid = grid
            res.finals.append(float(c[-1]))
            res.aucs.append(float(c.mean()))
            reached = np.nonzero(c <= targets[seed] + 1e-12)[0]
            res.to_target.append(float(grid[reached[0]]) if len(reached) else math.inf)
        if res.finals:
            results[row] = res
    return list(results.values())


def render(table: Table, results: list[Result], budget: float, workers: int = 1) -> str:
    none = results[0]
    unit = "epochs" if workers == 1 else "s"
    where = "one worker" if workers == 1 else f"{workers} asynchronous workers, recorded epoch times"
    lines = [f"**{table.name}: {len(table)} configurations, {table.metric} after {table.max_epochs} epochs "
             f"(best {table.best_final:.4g}), budget {budget:.0f} {unit}, {where}**",
             "",
             "| search | final regret | AUC of regret | " + ("epochs" if workers == 1 else "wall time (s)")
             + " to none's final regret (median) | reached | x less than none | speed-up, mean curves "
             + "| first run finished (median) |",
             "|---|---|---|---|---|---|---|---|"]
    base = statistics.median(none.to_target)
    for r in results:
        med = statistics.median(r.to_target)
        reached = sum(math.isfinite(t) for t in r.to_target)
        ratio = f"{base / med:.1f}x" if math.isfinite(med) else "-"
        label = r.row if len(r.finals) == len(none.finals) else f"{r.row} ({len(r.finals)} seeds)"
        up = mean_curve_speedup(none, r) if len(r.curves) == len(none.curves) else math.nan
        speedup = "-" if up == 0 or not math.isfinite(up) else f"{up:.1f}x"
        first = statistics.median(r.first) if r.first else math.inf
        first = "-" if not math.isfinite(first) else f"{first:.0f}" if workers == 1 else f"{first:.3g}"
        shown = f"{med:.0f}" if workers == 1 or not math.isfinite(med) else f"{med:.3g}"
        lines.append(f"| {label} | {statistics.mean(r.finals):.4g} | {statistics.mean(r.aucs):.4g} | "
                     f"{shown} | {reached}/{len(r.to_target)} | {ratio} | {speedup} | {first} |")
    return "\n".join(lines)


def all_rows(table: Table, optuna: bool = True) -> list[str]:
    rows = [*our_rows(table), *MODEL_BASED, *PAUSING]
    if optuna:
        rows += [f"optuna:{s}:{p}" for s in ("TPE", "random") for p in ("Median", "SHA", "Hyperband")]
    if ray_available() is None:
        rows += ["ray:ASHA", "ray:HyperBand"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=10, help="total epochs, in full trainings of max_epochs")
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--rows", default=None, help="comma-separated rows to run (default: all; 'none' always runs)")
    parser.add_argument("--workers", type=int, default=1,
                        help="simulated asynchronous workers; above 1, epochs take their recorded seconds and the "
                             "budget is the wall time of --budget full trainings over the workers")
    parser.add_argument("--no-optuna", action="store_true")
    parser.add_argument("--json", default=None, help="also write every row's per-seed figures to this JSON file")
    parser.add_argument("--runner-seeds", type=int, default=0,
                        help="also run ASHA and Hyperband with promotions in the real SearchRunner on the replay, "
                             "for this many seeds (about 20 s a search on 2 shared cores; one worker only)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.budget < 1 or args.workers < 1:
        parser.error(f"--seeds, --budget and --workers must be >= 1, got {args.seeds}, {args.budget}, {args.workers}")
    warnings.filterwarnings("ignore")
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    if not names:
        parser.error(f"--tables must name at least one table, got {args.tables!r}")
    known = all_rows(load_table(names[0]), optuna=not args.no_optuna)  # the names; each table builds its own
    rows = known
    if args.rows:
        wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = [r for r in wanted if r not in known]
        if unknown:
            parser.error(f"unknown --rows {unknown}; rows: {', '.join(known)}")
        rows = ["none", *[r for r in wanted if r != "none"]]
    why = ray_available()
    print(f"Ray Tune schedulers: {'driven' if why is None else 'not run, ray.tune does not import (' + why + ')'}")
    if args.runner_seeds and args.workers == 1:
        rows += ["runner:ASHA", "runner:Hyperband"]
    ranks: dict[str, list[float]] = {r: [] for r in rows if not r.startswith("runner:")}
    seed_ranks: dict[str, list[float]] = {r: [] for r in ranks}
    dump: dict[str, Any] = {"argv": sys.argv[1:] if argv is None else argv, "tables": {}}
    for name in names:
        table = load_table(name)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as root:
            results = run_rows(table, list(range(args.seeds)), args.budget, rows, args.runner_seeds, Path(root),
                               args.workers)
        dump["tables"][name] = [r.to_json() for r in results]
        print()
        print(render(table, results, budget_of(table, args.budget, args.workers), args.workers))
        print(f"\n({time.perf_counter() - start:.0f} s)")
        # Rows run on fewer seeds (the real runner) are shown, not ranked.
        order = sorted((r for r in results if len(r.aucs) == args.seeds), key=lambda r: statistics.mean(r.aucs))
        for rank, r in enumerate(order, 1):
            ranks[r.row].append(rank)
        for row, rank in per_seed_ranks([r for r in results if len(r.aucs) == args.seeds]).items():
            seed_ranks[row].append(rank)
    if args.json:
        Path(args.json).write_text(json.dumps(dump, indent=1))
    print("\n| search | mean rank by AUC | mean rank by AUC, per seed |\n|---|---|---|")
    for row, rs in sorted(ranks.items(), key=lambda kv: statistics.mean(kv[1])):
        print(f"| {row} | {statistics.mean(rs):.2f} | {statistics.mean(seed_ranks[row]):.2f} |")
    return 0


def per_seed_ranks(results: list[Result]) -> dict[str, float]:
    """Each row's rank by area on every seed (ties share the mean of their ranks), averaged over
    the seeds: unlike the rank of the mean area, a few seeds with a large area cannot decide it."""
    if not results:
        return {}
    aucs = np.array([r.aucs for r in results])  # (rows, seeds)
    ranks = scipy.stats.rankdata(aucs, axis=0)
    return {r.row: float(ranks[i].mean()) for i, r in enumerate(results)}


if __name__ == "__main__":
    sys.exit(main())
