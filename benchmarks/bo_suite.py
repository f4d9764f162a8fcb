"""Side-by-side benchmark of BayesianSampler against random/Sobol search, Optuna, scikit-optimize and BoTorch.

Run from the repository root (peers are the ``bench`` extra: ``pip install -e .[bench]``)::

    nice python -m benchmarks.bo_suite --seeds 5 --budget 40 --jobs 2

Every optimiser gets the same problems, budget and seeds (and, on noisy problems, the
same noise sequence), in worker processes of one pool. Per problem it prints the median
final simple regret (the noise-free value of the best observed configuration minus the
known minimum), the mean rank among optimisers (over seeds, ties averaged) and the
median seconds per suggestion after the 10-trial initial design. ``--problems`` takes
problem names or the sets ``public`` (default) and ``highdim`` (20 to 50 dimensions).

* ``--timing 20,100``: seconds per suggestion around trial ``N`` of a sequential
  Hartmann-6 search (ours vs Optuna's GPSampler, side by side in the pool).
* ``--scaling 20,100,300,1000,2000``: seconds per suggestion of ours and Optuna's
  GPSampler after that many random Hartmann-6 trials (:func:`_scaling_task`);
  ``--scaling-peer-max`` leaves Optuna out past a size.
* ``--async-workers 1,4,8``: ``k`` simulated asynchronous workers with random durations,
  the optimiser asked whenever one frees up with the others pending (:func:`run_async`);
  ranked by regret at equal simulated time, with the time ``k = 4`` needs to reach the
  final regret of ``k = 1``.
* ``--acq-check hartmann6,levy30,hartmann6_in_50``: the acquisition optimiser's default
  effort against four and eight times more raw points and starts (:func:`_acq_check_task`).
* ``--no-suite`` skips the sequential suite; ``--merge a.json,b.json`` summarises runs saved
  with ``--out`` (e.g. one optimiser re-run after a change, the peers from an earlier run).
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per worker for every optimiser, set before numpy/torch load:
# the comparison is then about algorithms, not about thread pools fighting over cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.problems import PROBLEM_SETS, PROBLEMS, Problem  # noqa: E402

N_INITIAL = 10


@dataclass
class RunResult:
    optimizer: str
    problem: str
    seed: int
    regret: float
    seconds: list[float]  # per suggestion, in order
    error: str | None = None


# Our samplers, through the Study exactly as the product drives them ---------------------------
History = tuple[list[dict[str, Any]], list[float], list[float]]  # params, observed values, seconds


def _run_study(sampler: Any, problem: Problem, seed: int, budget: int) -> History:
    from frameworm_lightning import Study

    study = Study.create(f"{problem.name}-{seed}", problem.space, metric="f", mode="min", sampler=sampler)
    noise = np.random.default_rng([seed, 7])
    params, values, seconds = [], [], []
    for _ in range(budget):
        t0 = time.perf_counter()
        trial = study.ask()
        seconds.append(time.perf_counter() - t0)
        y = problem.observe(trial.params, noise)
        trial.complete(y)
        params.append(dict(trial.params))
        values.append(y)
    return params, values, seconds


def _ours(acquisition: str) -> Callable[[Problem, int, int], History]:
    def run(problem: Problem, seed: int, budget: int) -> History:
        from frameworm_lightning.samplers._bayes import BayesianSampler

        sampler = BayesianSampler(seed=seed, n_initial_points=N_INITIAL, acquisition=acquisition)
        return _run_study(sampler, problem, seed, budget)

    return run


def _random(problem: Problem, seed: int, budget: int) -> History:
    from frameworm_lightning import RandomSampler

    return _run_study(RandomSampler(seed=seed), problem, seed, budget)


def _sobol(problem: Problem, seed: int, budget: int) -> History:
    from frameworm_lightning import SobolSampler

    return _run_study(SobolSampler(seed=seed), problem, seed, budget)


# Optuna ----------------------------------------------------------------------------------------
def _optuna_distributions(problem: Problem) -> dict[str, Any]:
    """The problem's space as Optuna distributions (``study.ask(fixed_distributions)``)."""
    import optuna.distributions as od

    from frameworm_lightning.space import Categorical, Integer, Real

    out: dict[str, Any] = {}
    for key, dim in problem.space.items():
        if isinstance(dim, Real):
            out[key] = od.FloatDistribution(dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Integer):
            out[key] = od.IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
        elif isinstance(dim, Categorical):
            out[key] = od.CategoricalDistribution(list(dim.choices))
    return out


def _optuna_sampler(kind: str, seed: int, constant_liar: bool = False) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=N_INITIAL, constant_liar=constant_liar)
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=N_INITIAL)


def _optuna(kind: str) -> Callable[[Problem, int, int], History]:
    def run(problem: Problem, seed: int, budget: int) -> History:
        import optuna

        study = optuna.create_study(sampler=_optuna_sampler(kind, seed), direction="minimize")
        noise = np.random.default_rng([seed, 7])
        params, values, seconds = [], [], []
        for _ in range(budget):
            t0 = time.perf_counter()
            trial = study.ask(_optuna_distributions(problem))
            p = dict(trial.params)
            seconds.append(time.perf_counter() - t0)
            y = problem.observe(p, noise)
            study.tell(trial, y)
            params.append(p)
            values.append(y)
        return params, values, seconds

    return run


# scikit-optimize -------------------------------------------------------------------------------
def _skopt(problem: Problem, seed: int, budget: int) -> History:
    import skopt

    from frameworm_lightning.space import Categorical, Integer, Real

    dims, keys = [], list(problem.space)
    for key, dim in problem.space.items():
        if isinstance(dim, Real):
            dims.append(skopt.space.Real(dim.low, dim.high, prior="log-uniform" if dim.log else "uniform", name=key))
        elif isinstance(dim, Integer):
            dims.append(skopt.space.Integer(dim.low, dim.high, prior="log-uniform" if dim.log else "uniform", name=key))
        elif isinstance(dim, Categorical):
            dims.append(skopt.space.Categorical(list(dim.choices), name=key))
    noise = np.random.default_rng([seed, 7])
    params: list[dict[str, Any]] = []
    values: list[float] = []
    seconds: list[float] = []
    last = [time.perf_counter()]

    def f(x: list[Any]) -> float:
        seconds.append(time.perf_counter() - last[0])  # the optimiser's time since the last evaluation
        p = {k: (v.item() if hasattr(v, "item") else v) for k, v in zip(keys, x)}
        y = problem.observe(p, noise)
        params.append(p)
        values.append(y)
        last[0] = time.perf_counter()
        return y

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skopt.gp_minimize(f, dims, n_calls=budget, n_initial_points=N_INITIAL, random_state=seed)
    return params, values, seconds


# A plain BoTorch loop --------------------------------------------------------------------------
def _botorch(problem: Problem, seed: int, budget: int) -> History:
    import torch
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    space, d = problem.space, problem.space.dim
    torch.manual_seed(seed)
    init = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(N_INITIAL).to(torch.float64)
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
    noise = np.random.default_rng([seed, 7])
    X: list[torch.Tensor] = []
    params, values, seconds = [], [], []
    for i in range(budget):
        t0 = time.perf_counter()
        if i < N_INITIAL:
            x = init[i]
        else:
            train_X = torch.stack(X)
            train_Y = -torch.tensor(values, dtype=torch.float64).unsqueeze(-1)  # BoTorch maximises
            model = SingleTaskGP(train_X, train_Y, outcome_transform=Standardize(m=1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
                acqf = LogExpectedImprovement(model, best_f=train_Y.max())
                cand, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=8, raw_samples=512)
            x = cand[0].detach()
        p = space.decode(x.numpy())
        seconds.append(time.perf_counter() - t0)
        X.append(torch.as_tensor(space.encode(p), dtype=torch.float64))  # the point actually evaluated
        y = problem.observe(p, noise)
        params.append(p)
        values.append(y)
    return params, values, seconds


OPTIMIZERS: dict[str, Callable[[Problem, int, int], History]] = {
    "bo-logei": _ours("logei"),
    "bo-ei": _ours("ei"),
    "bo-pi": _ours("pi"),
    "bo-ucb": _ours("ucb"),
    "bo-hedge": _ours("hedge"),
    "random": _random,
    "sobol": _sobol,
    "optuna-tpe": _optuna("tpe"),
    "optuna-gp": _optuna("gp"),
    "skopt-gp": _skopt,
    "botorch-logei": _botorch,
}


def run_one(optimizer: str, problem_name: str, seed: int, budget: int) -> RunResult:
    problem = PROBLEMS[problem_name]
    warnings.simplefilter("ignore")
    try:
        params, values, seconds = OPTIMIZERS[optimizer](problem, seed, budget)
    except Exception as err:  # a peer crashing must not lose the other results
        return RunResult(optimizer, problem_name, seed, math.nan, [], f"{type(err).__name__}: {err}")
    best = int(np.argmin(values))
    return RunResult(optimizer, problem_name, seed, problem.value(params[best]) - problem.optimum, seconds)


# Asynchronous parallel workers -----------------------------------------------------------------
# k simulated workers; evaluation i takes a random simulated duration d_i ~ U(0.5, 1.5) (the same
# sequence for every optimiser); whenever a worker frees up the optimiser is told its result and
# asked for the next point while the other k - 1 evaluations are still pending.
ASYNC_OPTIMIZERS = ("bo-logei", "optuna-gp", "optuna-tpe", "botorch-qlogei", "random")
# Points closer than this in the unit cube (max-norm) count as "the same or nearly the same".
NEAR_DUPLICATE = 1e-3


class _AskTell:
    """One optimiser behind ``ask() -> (handle, params)`` and ``tell(handle, value)``."""

    def __init__(self, optimizer: str, problem: Problem, seed: int) -> None:
        self.optimizer, self.problem, self.seed = optimizer, problem, seed
        if optimizer in ("bo-logei", "random"):
            from frameworm_lightning import RandomSampler, Study
            from frameworm_lightning.samplers._bayes import BayesianSampler

            sampler = (BayesianSampler(seed=seed, n_initial_points=N_INITIAL) if optimizer == "bo-logei"
                       else RandomSampler(seed=seed))
            self.study = Study.create(f"async-{problem.name}-{seed}", problem.space, metric="f", mode="min",
                                      sampler=sampler)
        elif optimizer.startswith("optuna"):
            import optuna

            # TPE with its constant liar; Optuna's GPSampler has no such option and runs as it is.
            self.dists = _optuna_distributions(problem)
            kind = "tpe" if optimizer == "optuna-tpe" else "gp"
            self.optuna = optuna.create_study(sampler=_optuna_sampler(kind, seed, constant_liar=True),
                                              direction="minimize")
        elif optimizer == "botorch-qlogei":
            import torch

            d = problem.space.dim
            self.init = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(N_INITIAL).double()
            self.done_X: list[Any] = []
            self.done_Y: list[float] = []
            self.pending: dict[int, Any] = {}
            self.asked = 0
        else:
            raise ValueError(f"no asynchronous runner for {optimizer!r}")

    def ask(self) -> tuple[Any, dict[str, Any]]:
        if hasattr(self, "study"):
            trial = self.study.ask()
            return trial, dict(trial.params)  # type: ignore[union-attr]
        if hasattr(self, "optuna"):
            trial = self.optuna.ask(self.dists)
            return trial, dict(trial.params)
        return self._botorch_ask()

    def tell(self, handle: Any, value: float) -> None:
        if hasattr(self, "study"):
            handle.complete(value)
        elif hasattr(self, "optuna"):
            self.optuna.tell(handle, value)
        else:
            self.done_X.append(self.pending.pop(handle))
            self.done_Y.append(-value)  # BoTorch maximises

    def _botorch_ask(self) -> tuple[Any, dict[str, Any]]:
        import torch
        from botorch.acquisition.logei import qLogExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Standardize
        from botorch.optim import optimize_acqf
        from gpytorch.mlls import ExactMarginalLogLikelihood

        space, d = self.problem.space, self.problem.space.dim
        handle = self.asked
        self.asked += 1
        if handle < N_INITIAL or len(self.done_Y) < 2:
            x = self.init[handle % N_INITIAL]
        else:
            train_Y = torch.tensor(self.done_Y, dtype=torch.float64).unsqueeze(-1)
            model = SingleTaskGP(torch.stack(self.done_X), train_Y, outcome_transform=Standardize(m=1))
            pending = torch.stack(list(self.pending.values())) if self.pending else None
            bounds = torch.stack([torch.zeros(d), torch.ones(d)]).double()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
                acqf = qLogExpectedImprovement(model, best_f=train_Y.max(), X_pending=pending)
                cand, _ = optimize_acqf(acqf, bounds=bounds, q=1, num_restarts=8, raw_samples=512)
            x = cand[0].detach()
        params = space.decode(x.numpy())
        self.pending[handle] = torch.as_tensor(space.encode(params), dtype=torch.float64)
        return handle, params


@dataclass
class AsyncResult:
    optimizer: str
    problem: str
    seed: int
    workers: int
    finished: list[tuple[float, float]]  # (simulated finish time, noise-free value), in time order
    min_pending_gap: float  # the smallest max-norm unit-cube distance between a new point and a pending one
    seconds: list[float]
    error: str | None = None


def run_async(optimizer: str, problem_name: str, seed: int, workers: int, horizon: float) -> AsyncResult:
    """Simulate ``workers`` asynchronous workers until simulated time ``horizon``."""
    import heapq

    problem = PROBLEMS[problem_name]
    warnings.simplefilter("ignore")
    durations = np.random.default_rng([seed, 19])
    noise = np.random.default_rng([seed, 7])
    finished: list[tuple[float, float]] = []
    seconds: list[float] = []
    min_gap = math.inf
    try:
        runner = _AskTell(optimizer, problem, seed)
        running: list[tuple[float, int, Any, dict[str, Any]]] = []
        count = 0

        def start(now: float) -> None:
            nonlocal count, min_gap
            t0 = time.perf_counter()
            handle, params = runner.ask()
            seconds.append(time.perf_counter() - t0)
            u = problem.space.encode(params)
            for _, _, _, other in running:
                min_gap = min(min_gap, float(np.max(np.abs(u - problem.space.encode(other)))))
            heapq.heappush(running, (now + float(durations.uniform(0.5, 1.5)), count, handle, params))
            count += 1

        for _ in range(workers):
            start(0.0)
        while running:
            now, _, handle, params = heapq.heappop(running)
            if now > horizon:
                break
            runner.tell(handle, problem.observe(params, noise))
            finished.append((now, problem.value(params)))
            start(now)
    except Exception as err:  # a peer crashing must not lose the other results
        return AsyncResult(optimizer, problem_name, seed, workers, finished, min_gap, seconds,
                           f"{type(err).__name__}: {err}")
    return AsyncResult(optimizer, problem_name, seed, workers, finished, min_gap, seconds)


def _regret_at(result: AsyncResult, t: float) -> float:
    values = [v for when, v in result.finished if when <= t]
    return min(values) - PROBLEMS[result.problem].optimum if values else math.inf


def summarise_async(results: list[AsyncResult], budget: int, optimizers: list[str], problems: list[str],
                    seeds: list[int], worker_counts: list[int]) -> str:
    """Mean rank by regret at the common simulated horizon, per worker count; the k = 4 speed-up."""
    by = {(r.optimizer, r.problem, r.seed, r.workers): r for r in results}
    t1 = float(budget)  # k = 1 runs for `budget` mean durations; k > 1 runs for a third of that
    lines = ["| workers | horizon | optimiser | mean rank | median regret | evaluations | "
             "min gap to a pending point | median s/suggestion |",
             "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for k in worker_counts:
        horizon = t1 if k == 1 else t1 / 3
        ranks: dict[str, list[float]] = {o: [] for o in optimizers}
        for prob in problems:
            for seed in seeds:
                regrets = np.array([_regret_at(by[(o, prob, seed, k)], horizon) for o in optimizers])
                for o, rk in zip(optimizers, _rank(regrets)):
                    ranks[o].append(float(rk))
        for o in sorted(optimizers, key=lambda o: np.mean(ranks[o])):
            runs = [by[(o, p, s, k)] for p in problems for s in seeds]
            regret = np.median([_regret_at(r, horizon) for r in runs])
            gaps = [r.min_pending_gap for r in runs if math.isfinite(r.min_pending_gap)]
            secs = [t for r in runs for t in r.seconds[N_INITIAL:]]
            errors = sorted({r.error for r in runs if r.error})
            note = f" (errors: {'; '.join(errors)[:120]})" if errors else ""
            lines.append(f"| {k} | {horizon:g} | {o} | {np.mean(ranks[o]):.2f} | {regret:.4g} | "
                         f"{np.mean([len(r.finished) for r in runs]):.0f} | "
                         f"{min(gaps) if gaps else math.nan:.3g} | "
                         f"{np.median(secs) if secs else math.nan:.3f} |{note}")
    if 1 in worker_counts and 4 in worker_counts:
        lines.append("\nTime for k = 4 workers to reach the final regret of the k = 1 run, as a fraction of "
                     "the k = 1 run's time (runs stop at 1/3; '>1/3': not reached by then)\n")
        lines.append("| optimiser | reached by 1/3 | median fraction | per run |")
        lines.append("|---|---:|---:|---|")
        for o in optimizers:
            fractions = []
            for prob in problems:
                for seed in seeds:
                    target = _regret_at(by[(o, prob, seed, 1)], t1)
                    hit = [when for when, _ in by[(o, prob, seed, 4)].finished
                           if _regret_at(by[(o, prob, seed, 4)], when) <= target + 1e-12]
                    fractions.append(min(hit) / t1 if hit else math.inf)
            shown = ", ".join(f"{f:.2f}" if math.isfinite(f) else ">1/3" for f in fractions)
            lines.append(f"| {o} | {sum(f <= 1 / 3 for f in fractions)}/{len(fractions)} | "
                         f"{np.median(fractions):.2f} | {shown} |")
    return "\n".join(lines)


def _rank(regrets: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    filled = np.where(np.isfinite(regrets), regrets, np.inf)
    return rankdata(np.round(filled, 9))  # ties (e.g. both at the optimum) share a rank


def summarise(results: list[RunResult], optimizers: list[str], problems: list[str], seeds: list[int]) -> str:
    by = {(r.optimizer, r.problem, r.seed): r for r in results}
    lines = []
    overall_ranks: dict[str, list[float]] = {o: [] for o in optimizers}
    all_seconds: dict[str, list[float]] = {o: [] for o in optimizers}
    for prob in problems:
        ranks: dict[str, list[float]] = {o: [] for o in optimizers}
        for seed in seeds:
            regrets = np.array([by[(o, prob, seed)].regret for o in optimizers])
            for o, rk in zip(optimizers, _rank(regrets)):
                ranks[o].append(float(rk))
        lines.append(f"\n### {prob} (minimum {PROBLEMS[prob].optimum:.6g}"
                     + (f", noise std {PROBLEMS[prob].noise_std:g}" if PROBLEMS[prob].noise_std else "") + ")\n")
        lines.append("| optimiser | median regret | mean rank | median s/suggestion |")
        lines.append("|---|---:|---:|---:|")
        for o in optimizers:
            runs = [by[(o, prob, s)] for s in seeds]
            finite = [r.regret for r in runs if np.isfinite(r.regret)]
            regret = float(np.median(finite)) if finite else math.nan
            secs = [t for r in runs for t in r.seconds[N_INITIAL:]]
            all_seconds[o] += secs
            overall_ranks[o] += ranks[o]
            errors = sorted({r.error for r in runs if r.error})
            note = f" (errors: {'; '.join(errors)[:120]})" if errors else ""
            lines.append(f"| {o} | {regret:.4g} | {np.mean(ranks[o]):.2f} | "
                         f"{np.median(secs) if secs else math.nan:.3f} |{note}")
    lines.append("\n### Overall (mean rank over every problem and seed)\n")
    lines.append("| optimiser | mean rank | median s/suggestion |")
    lines.append("|---|---:|---:|")
    for o in sorted(optimizers, key=lambda o: np.mean(overall_ranks[o])):
        secs = all_seconds[o]
        lines.append(f"| {o} | {np.mean(overall_ranks[o]):.2f} | {np.median(secs) if secs else math.nan:.3f} |")
    return "\n".join(lines)


def _scaling_task(optimizer: str, n: int, seed: int, k: int) -> tuple[str, int, list[float]]:
    """Seconds of ``k + 1`` suggestions (each told before the next) after ``n`` random Hartmann-6 trials.

    The first suggestion on the history is a cold start (no earlier fit to warm-start from);
    the next ``k`` are the steady state of a long search. ``optimizer`` is ``"bo-logei"`` or
    ``"optuna-gp"``; both get the same history.
    """
    warnings.simplefilter("ignore")
    problem = PROBLEMS["hartmann6"]
    rng = np.random.default_rng([seed, 13])
    history = [problem.space.decode(rng.random(problem.space.dim)) for _ in range(n)]
    seconds = []
    if optimizer == "optuna-gp":
        import optuna

        dists = _optuna_distributions(problem)
        study = optuna.create_study(sampler=_optuna_sampler("gp", seed), direction="minimize")
        study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=problem.value(p))
                          for p in history])
        for _ in range(k + 1):
            t0 = time.perf_counter()
            trial = study.ask(dists)
            seconds.append(time.perf_counter() - t0)
            study.tell(trial, problem.value(trial.params))
    else:
        from frameworm_lightning import Study
        from frameworm_lightning.samplers._bayes import BayesianSampler

        ours = Study.create(f"scaling-{n}", problem.space, metric="f", mode="min",
                            sampler=BayesianSampler(seed=seed, n_initial_points=N_INITIAL))
        for p in history:
            ours.enqueue(p, skip_if_exists=False)
        for _ in range(n):
            t = ours.ask()
            t.complete(problem.value(t.params))  # type: ignore[union-attr]
        for _ in range(k + 1):
            t0 = time.perf_counter()
            t = ours.ask()
            seconds.append(time.perf_counter() - t0)
            t.complete(problem.value(t.params))  # type: ignore[union-attr]
    return optimizer, n, seconds


def _acq_check_task(problem_name: str, seed: int, trials: list[int]) -> list[str]:
    """Is the acquisition optimiser's default effort enough? Rows of a markdown table.

    Runs ``bo-logei`` on ``problem_name``; at each trial in ``trials`` the acquisition the
    sampler optimised is captured and optimised again with the default effort (1,024 raw
    points, 4 starts) and with more raw points and starts, from the same raw-candidate seed.
    Each cell is the best log-EI found and the CPU seconds of the optimiser alone.
    """
    import torch

    import frameworm_lightning.samplers._bayes as bayes
    from frameworm_lightning import Study
    from frameworm_lightning._gp.optim import optimize_acquisition

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    captured: list[tuple[Any, Any, dict[str, Any]]] = []

    def spy(acqf: Any, encoding: Any, raw_seed: Any, **kwargs: Any) -> Any:
        captured.append((acqf, encoding, kwargs))
        return optimize_acquisition(acqf, encoding, raw_seed, **kwargs)

    bayes.optimize_acquisition = spy  # type: ignore[assignment]  # this worker process only
    problem = PROBLEMS[problem_name]
    study = Study.create(f"acq-{problem_name}", problem.space, metric="f", mode="min",
                         sampler=bayes.BayesianSampler(seed=seed, n_initial_points=N_INITIAL))
    noise = np.random.default_rng([seed, 7])
    rows = []
    for i in range(max(trials) + 1):
        captured.clear()
        trial = study.ask()
        trial.complete(problem.observe(trial.params, noise))  # type: ignore[union-attr]
        if i not in trials or not captured:
            continue
        acqf, encoding, kwargs = captured[0]
        cells = []
        for n_raw, n_starts in ((1024, 4), (4096, 4), (1024, 16), (8192, 32)):
            t0 = time.process_time()
            result = optimize_acquisition(acqf, encoding, np.random.default_rng([seed, i]), n_raw=n_raw,
                                          n_starts=n_starts, extra_starts=kwargs.get("extra_starts"))
            cells.append(f"{result.values[0]:.3f} ({time.process_time() - t0:.3f} s)")
        rows.append(f"| {problem_name} | {encoding.dim} | {i} | " + " | ".join(cells) + " |")
    return rows


def _timing_task(optimizer: str, trials: int, seed: int) -> tuple[str, list[float]]:
    warnings.simplefilter("ignore")
    _, _, seconds = OPTIMIZERS[optimizer](PROBLEMS["hartmann6"], seed, trials)
    return optimizer, seconds


def _expand(names: str) -> list[str]:
    """Problem names, with set names (``public``, ``highdim``) replaced by their problems."""
    return [q for p in names.split(",") if p for q in PROBLEM_SETS.get(p, [p])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="public",
                        help=f"comma-separated problems or sets ({', '.join(PROBLEM_SETS)}); default: public")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated; default: all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="run seeds first-seed .. first-seed + seeds - 1 (runs are deterministic per seed, so "
                             "more seeds can be added to an earlier run)")
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--timing", default="100",
                        help="e.g. 20,100: also time BayesianSampler and Optuna GPSampler at these trial counts "
                             "of a sequential search (0: skip)")
    parser.add_argument("--timing-seeds", type=int, default=3, help="seeds of the --timing runs")
    parser.add_argument("--scaling", default="",
                        help="e.g. 20,100,300,1000: seconds per suggestion (ours and Optuna GP) after that many trials")
    parser.add_argument("--scaling-k", type=int, default=10, help="suggestions timed at each --scaling size")
    parser.add_argument("--scaling-peer-max", type=int, default=0,
                        help="time Optuna's GPSampler only up to this --scaling size (0: every size)")
    parser.add_argument("--async-workers", default="",
                        help="e.g. 1,4,8: also simulate that many asynchronous workers (see run_async)")
    parser.add_argument("--async-problems", default="", help="problems of the asynchronous runs (default: --problems)")
    parser.add_argument("--async-optimizers", default=",".join(ASYNC_OPTIMIZERS))
    parser.add_argument("--acq-check", default="",
                        help="e.g. hartmann6,levy30,hartmann6_in_50: re-optimise the acquisition of a bo-logei run with "
                             "more raw points and starts (:func:`_acq_check_task`)")
    parser.add_argument("--acq-check-trials", default="40,80", help="trials at which --acq-check captures it")
    parser.add_argument("--no-suite", action="store_true", help="skip the sequential suite")
    parser.add_argument("--out", default="", help="write the raw results as JSON here")
    parser.add_argument("--merge", default="",
                        help="a,b.json: summarise these --out files instead of running (a later file's run of "
                             "the same optimiser, problem and seed replaces an earlier one's)")
    args = parser.parse_args(argv)
    problems = _expand(args.problems)
    optimizers = [o for o in args.optimizers.split(",") if o]
    for name in problems:
        if name not in PROBLEMS:
            parser.error(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
    for name in optimizers:
        if name not in OPTIMIZERS:
            parser.error(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if args.merge:
        merged: dict[tuple[str, str, int], RunResult] = {}
        for path in args.merge.split(","):
            with open(path) as fh:
                for row in json.load(fh):
                    run = RunResult(**row)
                    merged[(run.optimizer, run.problem, run.seed)] = run
        print(f"BO benchmark: {args.merge} merged")
        print(summarise(list(merged.values()), optimizers, problems, seeds))
        return 0
    started = time.time()
    tasks = [] if args.no_suite else [(o, p, s, args.budget) for p in problems for s in seeds for o in optimizers]
    # Slow optimisers first so the pool stays busy to the end.
    slow = {"bo-hedge": 0, "botorch-logei": 1, "skopt-gp": 2}
    tasks.sort(key=lambda t: slow.get(t[0], 9))
    results: list[RunResult] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, *t) for t in tasks]
        # Pairs run side by side (one per worker), so both see the same machine load.
        timing_sizes = [int(n) for n in args.timing.split(",") if n and int(n) > 0]
        timing_futures = [pool.submit(_timing_task, o, n, seed) for n in timing_sizes
                          for seed in range(args.timing_seeds) for o in ("bo-logei", "optuna-gp")]
        scaling_sizes = [int(n) for n in args.scaling.split(",") if n]
        # Pairs side by side again: ours and Optuna's GPSampler on the same history.
        scaling_futures = [pool.submit(_scaling_task, o, n, 0, args.scaling_k)
                           for n in scaling_sizes for o in ("bo-logei", "optuna-gp")
                           if o == "bo-logei" or not args.scaling_peer_max or n <= args.scaling_peer_max]
        acq_trials = [int(t) for t in args.acq_check_trials.split(",") if t]
        acq_futures = [pool.submit(_acq_check_task, p, 0, acq_trials) for p in _expand(args.acq_check)]
        worker_counts = [int(k) for k in args.async_workers.split(",") if k]
        async_problems = _expand(args.async_problems or args.problems)
        async_optimizers = [o for o in args.async_optimizers.split(",") if o]
        async_futures = [pool.submit(run_async, o, p, s, k, float(args.budget) if k == 1 else args.budget / 3)
                         for k in sorted(worker_counts, reverse=True) for p in async_problems for s in seeds
                         for o in async_optimizers]
        for i, fut in enumerate(futures):
            results.append(fut.result())
            print(f"\r{i + 1}/{len(futures)} runs", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        if results:
            print(f"BO benchmark: budget {args.budget}, seeds {seeds[0]}-{seeds[-1]}, {args.jobs} worker processes, "
                  f"{time.time() - started:.0f} s")
            print(summarise(results, optimizers, problems, seeds))
        if async_futures:
            async_results = [fut.result() for fut in async_futures]
            print(f"\n### Asynchronous workers (problems {', '.join(async_problems)}; seeds {seeds[0]}-{seeds[-1]}; "
                  f"durations U(0.5, 1.5); {time.time() - started:.0f} s so far)\n")
            print(summarise_async(async_results, args.budget, async_optimizers, async_problems, seeds,
                                 sorted(worker_counts)))
        if timing_futures:
            print(f"\n### Seconds per suggestion at trial N of a sequential search (Hartmann-6, median of the "
                  f"last 10 suggestions over {args.timing_seeds} seeds)\n")
            print("| trials | optimiser | s/suggestion | per seed |")
            print("|---:|---|---:|---|")
            timed: dict[tuple[int, str], list[list[float]]] = {}
            for fut in timing_futures:
                name, secs = fut.result()
                timed.setdefault((len(secs), name), []).append(secs[-10:])
            for (n, name), runs in timed.items():
                per_seed = ", ".join(f"{np.median(r):.3f}" for r in runs)
                print(f"| {n} | {name} | {np.median(np.concatenate(runs)):.3f} | {per_seed} |")
        if scaling_futures:
            print(f"\n### Seconds per suggestion after n random trials (Hartmann-6): the first suggestion "
                  f"(cold) and the median / mean of the next {args.scaling_k} (each told before the next)\n")
            print("| trials | optimiser | cold | median | mean | max |")
            print("|---:|---|---:|---:|---:|---:|")
            for fut in scaling_futures:
                name, n, secs = fut.result()
                steady = np.array(secs[1:])
                print(f"| {n} | {name} | {secs[0]:.3f} | {np.median(steady):.3f} | {steady.mean():.3f} | "
                      f"{steady.max():.3f} |")
        if acq_futures:
            print("\n### The acquisition optimiser's default effort against more (seed 0): best log-EI found "
                  "(CPU seconds of the optimiser alone)\n")
            print("| problem | d | trial | 1,024 raw, 4 starts (default) | 4,096 raw, 4 starts | "
                  "1,024 raw, 16 starts | 8,192 raw, 32 starts |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            for fut in acq_futures:
                print("\n".join(fut.result()))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump([asdict(r) for r in results], fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
