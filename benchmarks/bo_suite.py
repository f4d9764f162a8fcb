"""Side-by-side benchmark of BayesianSampler against random/Sobol search, Optuna, scikit-optimize and BoTorch.

Run from the repository root (peers are the ``bench`` extra: ``pip install -e .[bench]``)::

    nice python -m benchmarks.bo_suite --seeds 5 --budget 40 --jobs 2

Every optimiser gets the same problems, budget and seeds (and, on noisy problems, the
same noise sequence), in worker processes of one pool. Per problem it prints the median
final simple regret (the noise-free value of the best observed configuration minus the
known minimum), the mean rank among optimisers (over seeds, ties averaged) and the
median seconds per suggestion after the 10-trial initial design. ``--timing N`` adds a
head-to-head of seconds per suggestion at trial ``N`` (BayesianSampler vs Optuna's
GPSampler, same process pool), ``--scaling 20,100,300`` our seconds per suggestion as the
history grows.
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

from benchmarks.problems import PROBLEMS, Problem  # noqa: E402

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


def _timing_task(optimizer: str, trials: int, seed: int) -> tuple[str, list[float]]:
    warnings.simplefilter("ignore")
    _, _, seconds = OPTIMIZERS[optimizer](PROBLEMS["hartmann6"], seed, trials)
    return optimizer, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated; default: all")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated; default: all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--timing", type=int, default=100,
                        help="also time BayesianSampler and Optuna GPSampler up to this many trials (0: skip)")
    parser.add_argument("--timing-seeds", type=int, default=3, help="seeds of the --timing runs")
    parser.add_argument("--scaling", default="",
                        help="e.g. 20,100,300,1000: seconds per suggestion (ours and Optuna GP) after that many trials")
    parser.add_argument("--scaling-k", type=int, default=10, help="suggestions timed at each --scaling size")
    parser.add_argument("--out", default="", help="write the raw results as JSON here")
    args = parser.parse_args(argv)
    problems = [p for p in args.problems.split(",") if p]
    optimizers = [o for o in args.optimizers.split(",") if o]
    for name in problems:
        if name not in PROBLEMS:
            parser.error(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
    for name in optimizers:
        if name not in OPTIMIZERS:
            parser.error(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    seeds = list(range(args.seeds))
    started = time.time()
    tasks = [(o, p, s, args.budget) for p in problems for s in seeds for o in optimizers]
    # Slow optimisers first so the pool stays busy to the end.
    slow = {"bo-hedge": 0, "botorch-logei": 1, "skopt-gp": 2}
    tasks.sort(key=lambda t: slow.get(t[0], 9))
    results: list[RunResult] = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, *t) for t in tasks]
        timing_futures = []
        if args.timing:
            # Pairs run side by side (one per worker), so both see the same machine load.
            timing_futures = [pool.submit(_timing_task, o, args.timing, seed)
                              for seed in range(args.timing_seeds) for o in ("bo-logei", "optuna-gp")]
        scaling_sizes = [int(n) for n in args.scaling.split(",") if n]
        # Pairs side by side again: ours and Optuna's GPSampler on the same history.
        scaling_futures = [pool.submit(_scaling_task, o, n, 0, args.scaling_k)
                           for n in scaling_sizes for o in ("bo-logei", "optuna-gp")]
        for i, fut in enumerate(futures):
            results.append(fut.result())
            print(f"\r{i + 1}/{len(futures)} runs", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        print(f"BO benchmark: budget {args.budget}, seeds {args.seeds}, {args.jobs} worker processes, "
              f"{time.time() - started:.0f} s")
        print(summarise(results, optimizers, problems, seeds))
        if timing_futures:
            print(f"\n### Seconds per suggestion at trial {args.timing} (Hartmann-6, median of the last 10 "
                  f"suggestions over {args.timing_seeds} seeds)\n")
            print("| optimiser | s/suggestion | per seed |")
            print("|---|---:|---|")
            timed: dict[str, list[list[float]]] = {}
            for fut in timing_futures:
                name, secs = fut.result()
                timed.setdefault(name, []).append(secs[-10:])
            for name, runs in timed.items():
                per_seed = ", ".join(f"{np.median(r):.3f}" for r in runs)
                print(f"| {name} | {np.median(np.concatenate(runs)):.3f} | {per_seed} |")
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
    if args.out:
        with open(args.out, "w") as fh:
            json.dump([asdict(r) for r in results], fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
