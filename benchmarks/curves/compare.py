"""Stopping policies side by side on the recorded curve tables, over many seeds.

Run from the repository root::

    python -m benchmarks.curves.compare --seeds 20 --budget 10

Every search on a table gets the same total budget of epochs, ``--budget`` full
trainings (``budget * max_epochs`` epochs), and runs serially (one worker). A search
draws configurations from the table (a seeded permutation of it, repeated when
exhausted; TPE proposes a point of the unit cube of the space and trains the table's
nearest configuration) and "trains" them epoch by epoch on their recorded curves,
asking its policy after each epoch whether to go on.

- ``none``: every configuration trains ``max_epochs``.
- ours: ``MedianStopping``, ``ImprovementStopping`` (patience 3), ``SuccessiveHalving``,
  ``ASHA``, ``Hyperband`` (1 to ``max_epochs`` epochs, eta 3), through their pure
  ``decide(History)``, the trials of the search passed as ``History.others`` with the
  system attributes the decisions store: the logic the callbacks run. Without a runner
  to pause and resume trials, the halving policies *prune* at the rungs (their
  ``promotion=False`` variant, as Ray Tune's ASHA does), which is what they are here.
- Optuna: ``TPESampler`` and ``RandomSampler`` with ``MedianPruner``,
  ``SuccessiveHalvingPruner`` and ``HyperbandPruner`` (min 1, max ``max_epochs``, eta 3).
- Ray Tune's schedulers, when ``ray.tune`` imports.

The search's answer at any time is the configuration trained the furthest with the best
value there (a halving search returns the best of its top rung); its *regret* is that
configuration's fully trained value minus the best fully trained value of the table.
The table prints, per row, the regret after the whole budget, the area under the
best-so-far regret curve (the mean regret over the budget's epochs), the epochs needed
to reach the final regret of the search without stopping on the same seed, and the mean
rank by area across tables.
"""

from __future__ import annotations

import argparse
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

from benchmarks.curves.problems import PROBLEMS
from benchmarks.curves.table import Table, load_table
from frameworm_lightning.stopping import (
    ASHA,
    Decision,
    History,
    Hyperband,
    ImprovementStopping,
    MedianStopping,
    SuccessiveHalving,
)
from frameworm_lightning.trial import FrozenTrial, TrialState

TABLES = ["digits-mlp", "cancer-mlp", "digits-vae"]
ETA = 3


# --- the record of one search ----------------------------------------------------------------
@dataclass
class Search:
    """What a search trained, in order: ``(cumulative epochs, regret of its answer)``."""

    table: Table
    budget: int
    spent: int = 0
    best: tuple[int, int, float] | None = None  # (not finished, -epochs trained, value) of the answer
    answer: int | None = None
    trials: int = 0  # trials ended
    trace: list[tuple[int, float]] = field(default_factory=list)

    @property
    def left(self) -> int:
        return self.budget - self.spent

    def trained(self, index: int, values: list[float], finished: bool | None = None, ended: bool = True) -> None:
        """Configuration ``index`` trained ``len(values)`` epochs (already counted by ``epoch``).

        ``finished``: the search counts it as fully trained (it reached ``max_epochs``, or a
        policy such as ``ImprovementStopping`` judged it converged); by default, whether it
        reached ``max_epochs``. The answer is the best finished configuration, else the one
        trained furthest with the best value there. Searches call it after every epoch
        (``ended=False``) and when a trial ends, so the answer is updated at every report.
        """
        self.trials += ended
        if finished is None:
            finished = len(values) >= self.table.max_epochs
        key = (0 if finished else 1, 0 if finished else -len(values), self.table.quality(values[-1]))
        if self.best is None or key < self.best:
            self.best, self.answer = key, index
        self.trace.append((self.spent, self.regret(self.answer)))

    def epoch(self) -> None:
        self.spent += 1

    def regret(self, index: int | None) -> float:
        if index is None:
            return self.worst
        final = self.table.quality(self.table.curves[index].final)
        return final - self.table.best_final if math.isfinite(final) else self.worst

    @property
    def worst(self) -> float:
        finals = [self.table.quality(c.final) for c in self.table.curves]
        return max(f for f in finals if math.isfinite(f)) - self.table.best_final

    def curve(self) -> np.ndarray:
        """Regret of the answer after each epoch ``1..budget`` (the table's worst before any)."""
        out = np.full(self.budget, self.worst)
        for spent, regret in self.trace:
            out[spent - 1:] = regret
        return out


def stream(table: Table, seed: int) -> Iterator[int]:
    """Configurations of a table in a seeded random order, a new order when it runs out."""
    rng = np.random.default_rng(seed)
    while True:
        yield from (int(i) for i in rng.permutation(len(table)))


# --- our policies, through decide() -------------------------------------------------------------
def ours(table: Table, seed: int, budget: int, make: Callable[[], Any] | None) -> Search:
    search = Search(table, budget)
    policy = make() if make is not None else None
    done: list[FrozenTrial] = []
    for number, index in enumerate(stream(table, seed)):
        if search.left <= 0:
            break
        curve = table.curves[index].values
        attrs: dict[str, Any] = {}
        start = getattr(policy, "start_attrs", None)
        if start is not None:
            attrs.update(start(History(mode="min", number=number, others=tuple(done))))
        values: dict[int, float] = {}
        state = TrialState.PRUNED  # unless it reaches max_epochs or a policy finishes it
        for e in range(table.max_epochs):
            if search.left <= 0:
                break
            search.epoch()
            values[e + 1] = table.quality(curve[e])
            search.trained(index, curve[:e + 1], finished=False, ended=False)
            if e + 1 == table.max_epochs:
                state = TrialState.COMPLETE
            if policy is None:
                continue
            decision = policy.decide(History(values, mode="min", step=e + 1, epoch=float(e + 1), number=number,
                                             attrs=attrs, others=tuple(done)))
            attrs.update(decision.attrs)
            if decision.stops:
                state = TrialState.PRUNED if decision.decision is Decision.PRUNE else TrialState.COMPLETE
                break
        done.append(FrozenTrial(number, state, {"config": index}, values[max(values)], dict(values),
                                system_attrs=dict(attrs)))
        search.trained(index, [curve[e - 1] for e in values], finished=state is TrialState.COMPLETE)
    return search


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


# --- Optuna ---------------------------------------------------------------------------------------
def _nearest(table: Table) -> Callable[[np.ndarray], int]:
    space = PROBLEMS[table.name].space
    points = np.array([space.encode(c.params) for c in table.curves])

    def nearest(u: np.ndarray) -> int:
        return int(np.argmin(((points - u) ** 2).sum(1)))

    return nearest


def optuna_search(table: Table, seed: int, budget: int, sampler: str, pruner: str) -> Search:
    import optuna  # noqa: PLC0415 - a benchmark extra

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    top = table.max_epochs
    pruners = {
        "Median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "SHA": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA),
        "Hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=top, reduction_factor=ETA),
    }
    samplers = {"TPE": lambda: optuna.samplers.TPESampler(seed=seed), "random": None}
    study = optuna.create_study(direction="minimize", sampler=samplers[sampler]() if samplers[sampler] else
                                optuna.samplers.RandomSampler(seed=seed), pruner=pruners[pruner]())
    search = Search(table, budget)
    nearest = _nearest(table)
    order = stream(table, seed)
    dim = len(PROBLEMS[table.name].space)
    while search.left > 0:
        trial = study.ask()
        if sampler == "random":  # the same seeded order as ours: only the pruner differs
            index = next(order)
        else:
            index = nearest(np.array([trial.suggest_float(f"u{i}", 0.0, 1.0) for i in range(dim)]))
        curve = table.curves[index].values
        seen: list[float] = []
        pruned = False
        for e in range(top):
            if search.left <= 0:
                break
            search.epoch()
            value = table.quality(curve[e])
            seen.append(curve[e])
            search.trained(index, seen, finished=False, ended=False)
            trial.report(value if math.isfinite(value) else 1e12, e + 1)
            if trial.should_prune():
                pruned = True
                break
        last = table.quality(seen[-1])
        if pruned or len(seen) < top:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, last if math.isfinite(last) else 1e12)
        search.trained(index, seen)
    return search


# --- Ray Tune's schedulers, driven through on_trial_result -----------------------------------------
def ray_available() -> str | None:
    """``None`` when ``ray.tune`` imports, else why not."""
    try:
        import ray.tune.schedulers  # noqa: F401, PLC0415
    except Exception as err:  # noqa: BLE001 - any import failure means "not here"
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return None


class _Controller:
    """The calls a Tune scheduler makes on its ``TuneController`` in a serial search."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.trials: list[Any] = []

    def get_trials(self) -> list[Any]:
        return self.trials

    def stop_trial(self, trial: Any) -> None:
        from ray.tune.experiment import Trial  # noqa: PLC0415 - a benchmark extra

        trial.set_status(Trial.TERMINATED)
        self.scheduler.on_trial_remove(self, trial)


def ray_search(table: Table, seed: int, budget: int, scheduler: str) -> Search:
    """Random search (the seeded order ours use) under Ray Tune's ``ASHAScheduler`` or
    ``HyperBandScheduler``, one trial at a time, with no cluster: the scheduler's
    ``on_trial_add``/``on_trial_result``/``choose_trial_to_run`` are called as Tune's
    controller calls them, and a paused trial resumes at the epoch it paused at."""
    from ray.tune.experiment import Trial  # noqa: PLC0415 - a benchmark extra
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, TrialScheduler  # noqa: PLC0415

    top = table.max_epochs
    common = {"metric": "loss", "mode": "min", "max_t": top, "reduction_factor": ETA,
              "time_attr": "training_iteration"}
    sched = ASHAScheduler(grace_period=1, **common) if scheduler == "ASHA" else HyperBandScheduler(**common)
    ctl = _Controller(sched)
    search = Search(table, budget)
    order = stream(table, seed)
    index_of: dict[Any, int] = {}
    seen: dict[Any, list[float]] = {}
    while search.left > 0:
        trial = sched.choose_trial_to_run(ctl)
        if trial is None:
            trial = Trial("__fake", stub=True, trial_id=str(len(index_of)))
            index_of[trial], seen[trial] = next(order), []
            ctl.trials.append(trial)
            sched.on_trial_add(ctl, trial)
            trial = sched.choose_trial_to_run(ctl) or trial
        trial.set_status(Trial.RUNNING)
        curve = table.curves[index_of[trial]].values
        decision = TrialScheduler.CONTINUE
        while decision == TrialScheduler.CONTINUE and search.left > 0 and len(seen[trial]) < top:
            search.epoch()
            seen[trial].append(curve[len(seen[trial])])
            search.trained(index_of[trial], seen[trial], finished=False, ended=False)
            value = table.quality(seen[trial][-1])
            result = {"training_iteration": len(seen[trial]), "loss": value if math.isfinite(value) else 1e12}
            decision = sched.on_trial_result(ctl, trial, result)
        search.trained(index_of[trial], seen[trial])
        if decision == TrialScheduler.PAUSE:
            trial.set_status(Trial.PAUSED)
        elif trial.status == Trial.RUNNING:
            trial.set_status(Trial.TERMINATED)
            sched.on_trial_complete(ctl, trial, result)
    return search


# --- our halving policies in the real SearchRunner, on the replay ---------------------------------
def runner_search(table: Table, seed: int, budget: int, policy: str, root: Path) -> Search:
    """``ASHA``/``Hyperband`` *with promotions* (pause, checkpoint, resume) in a real
    ``SearchRunner`` on :class:`ReplayModule`, the seeded order enqueued, ended by
    ``BudgetStopping(search_max_steps=budget)`` (one step is one epoch in the replay)."""
    import logging  # noqa: PLC0415

    from benchmarks.curves.replay import REPLAY_TRAINER, ReplayModule, replay_space  # noqa: PLC0415
    from frameworm_lightning import SearchRunner  # noqa: PLC0415
    from frameworm_lightning.stopping import BudgetStopping  # noqa: PLC0415

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    top = table.max_epochs
    halving = {"ASHA": ASHA, "Hyperband": Hyperband}[policy](min_resource=1, max_resource=top, eta=ETA)
    order = stream(table, seed)
    enqueue = [{"config": next(order)} for _ in range(len(table))]
    path = str(Path(root) / f"{table.name}-{policy}-{seed}")
    runner = SearchRunner(metric=table.metric, mode=table.mode, n_trials=len(table), seed=seed, root_dir=path,
                          quiet=True, callbacks=[halving, BudgetStopping(search_max_steps=budget)],
                          trainer_kwargs=dict(REPLAY_TRAINER))
    trials = runner.fit(ReplayModule, replay_space(table.name), model_kwargs={"table": table.name},
                        enqueue=enqueue).trials
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


def run_rows(table: Table, seeds: list[int], budget_trainings: int, rows: list[str],
             runner_seeds: int = 0, runner_root: Path | None = None) -> list[Result]:
    budget = budget_trainings * table.max_epochs
    results: dict[str, Result] = {}
    targets: dict[int, float] = {}
    makers = our_rows(table)
    for row in rows:
        res = Result(row, [], [], [])
        for seed in seeds[:runner_seeds] if row.startswith("runner:") else seeds:
            if row in makers:
                s = ours(table, seed, budget, makers[row])
            elif row.startswith("runner:"):
                s = runner_search(table, seed, budget, row.split(":")[1], runner_root)
            elif row.startswith("ray:"):
                s = ray_search(table, seed, budget, row.split(":")[1])
            else:
                _, sampler, pruner = row.split(":")
                s = optuna_search(table, seed, budget, sampler, pruner)
            c = s.curve()
            if row == "none":
                targets[seed] = c[-1]
            res.finals.append(float(c[-1]))
            res.aucs.append(float(c.mean()))
            reached = np.nonzero(c <= targets[seed] + 1e-12)[0]
            res.to_target.append(float(reached[0] + 1) if len(reached) else math.inf)
        if not res.finals:
            continue
        results[row] = res
    return list(results.values())


def render(table: Table, results: list[Result], budget: int) -> str:
    none = results[0]
    lines = [f"### {table.name}: {len(table)} configurations, {table.metric} after {table.max_epochs} epochs "
             f"(best {table.best_final:.4g}), budget {budget} epochs",
             "",
             "| search | final regret | AUC of regret | epochs to none's final regret (median) | reached | "
             "x fewer epochs than none |",
             "|---|---|---|---|---|---|"]
    base = statistics.median(none.to_target)
    for r in results:
        med = statistics.median(r.to_target)
        reached = sum(math.isfinite(t) for t in r.to_target)
        ratio = f"{base / med:.1f}x" if math.isfinite(med) else "-"
        label = r.row if len(r.finals) == len(none.finals) else f"{r.row} ({len(r.finals)} seeds)"
        lines.append(f"| {label} | {statistics.mean(r.finals):.4g} | {statistics.mean(r.aucs):.4g} | "
                     f"{med:.0f} | {reached}/{len(r.to_target)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=10, help="total epochs, in full trainings of max_epochs")
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--no-optuna", action="store_true")
    parser.add_argument("--runner-seeds", type=int, default=0,
                        help="also run ASHA and Hyperband with promotions in the real SearchRunner on the replay, "
                             "for this many seeds (about 20 s a search on 2 shared cores)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.budget < 1:
        parser.error(f"--seeds and --budget must be >= 1, got {args.seeds} and {args.budget}")
    warnings.filterwarnings("ignore")
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    if not names:
        parser.error(f"--tables must name at least one table, got {args.tables!r}")
    rows = list(our_rows(load_table(names[0])))  # the row names; each table builds its own policies
    if not args.no_optuna:
        rows += [f"optuna:{s}:{p}" for s in ("TPE", "random") for p in ("Median", "SHA", "Hyperband")]
    why = ray_available()
    if why is None:
        rows += ["ray:ASHA", "ray:HyperBand"]
    print(f"Ray Tune schedulers: {'driven' if why is None else 'not run, ray.tune does not import (' + why + ')'}")
    if args.runner_seeds:
        rows += ["runner:ASHA", "runner:Hyperband"]
    ranks: dict[str, list[float]] = {r: [] for r in rows if not r.startswith("runner:")}
    for name in names:
        table = load_table(name)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as root:
            results = run_rows(table, list(range(args.seeds)), args.budget, rows, args.runner_seeds, Path(root))
        print()
        print(render(table, results, args.budget * table.max_epochs))
        print(f"\n({time.perf_counter() - start:.0f} s)")
        # Rows run on fewer seeds (the real runner) are shown, not ranked.
        order = sorted((r for r in results if len(r.aucs) == args.seeds), key=lambda r: statistics.mean(r.aucs))
        for rank, r in enumerate(order, 1):
            ranks[r.row].append(rank)
    print("\n| search | mean rank by AUC |\n|---|---|")
    for row, rs in sorted(ranks.items(), key=lambda kv: statistics.mean(kv[1])):
        print(f"| {row} | {statistics.mean(rs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
