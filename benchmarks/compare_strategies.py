"""Grid vs Random vs Bayesian search on the digits VAE: the seed's comparison table, measured.

    python benchmarks/compare_strategies.py --seeds 3 --epochs 10

Each strategy searches the same space of :class:`models.VAE` on
:class:`models.DigitsDataModule` with the same per-trial budget (``--epochs`` epochs,
batch 64), once per seed: Grid 9 trials (3 x 3 points), Random 20, Bayesian 20
(``BayesianSampler``, 5 Sobol points then the GP), over ``lr`` and ``beta``. Seed ``s`` seeds the sampler and the
trials' training (trial ``n`` trains under ``seed_everything(s + n)``), so the Grid's
spread comes from training noise only. The score is ``val_loss``, the VAE's negative
ELBO in nats per image (lower is better), at the end of each trial.

Prints a Markdown table -- best ``val_loss`` (mean ± std over seeds), trials to reach
each run's best (mean, min-max), wall time per search (mean ± std) -- and writes
``benchmarks/results/compare_strategies.png`` (best-so-far against trial number, the
mean over seeds with a min-max band) and ``compare_strategies.json`` (every run's
trace). Trials run in this process on one thread each: on 2 shared CPU cores the default
run (3 seeds, 10 epochs) took 7 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Tiny models: intra-op threads only spin against each other on a small shared machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import frameworm_lightning as fw  # noqa: E402
from frameworm_lightning import Real, SearchRunner, TrialState  # noqa: E402
from models import VAE, DigitsDataModule  # noqa: E402

#: Two continuous dimensions, so a 3-point-per-axis grid is exactly the seed's 9 grid
#: trials (an ``Integer`` dimension would put every one of its integers in the grid).
SPACE = {
    "lr": Real(1e-4, 3e-2, log=True),
    "beta": Real(0.1, 10.0, log=True),
}
FIXED_MODEL = {"hidden_dim": 128, "num_layers": 2, "latent_dim": 8}
BATCH_SIZE = 64
TRIALS = {"Grid": 9, "Random": 20, "Bayesian": 20}


@dataclass
class Run:
    """One search: its strategy, seed, trial values in order, and wall time."""

    strategy: str
    seed: int
    values: list[float]
    seconds: float
    best_params: dict[str, Any] | None

    @property
    def best_so_far(self) -> list[float]:
        out, best = [], float("inf")
        for v in self.values:
            best = min(best, v)
            out.append(best)
        return out

    @property
    def best(self) -> float:
        return min(self.values)

    @property
    def trials_to_best(self) -> int:
        """1-based number of the first trial that reached this run's best value."""
        return self.values.index(self.best) + 1


def make_sampler(strategy: str, seed: int) -> fw.Sampler:
    if strategy == "Grid":
        return fw.GridSampler(grid_points=3)
    if strategy == "Random":
        return fw.RandomSampler(seed=seed)
    return bayesian_sampler_class()(seed=seed, n_initial_points=5)


def bayesian_sampler_class() -> type:
    """``frameworm_lightning.BayesianSampler``, or its module while it is not exported yet."""
    bayes = getattr(fw, "BayesianSampler", None)
    if bayes is None:
        try:
            from frameworm_lightning.samplers._bayes import BayesianSampler as bayes
        except ImportError as err:
            raise RuntimeError("BayesianSampler is not available; run with --strategies Grid Random") from err
    return bayes


def run_search(strategy: str, seed: int, epochs: int, root: Path) -> Run:
    """One search of ``TRIALS[strategy]`` trials, each ``epochs`` epochs of the VAE."""
    runner = SearchRunner(
        metric="val_loss", mode="min", sampler=make_sampler(strategy, seed), n_trials=TRIALS[strategy],
        trainer_kwargs={"max_epochs": epochs, "accelerator": "cpu", "devices": 1, "num_sanity_val_steps": 0,
                        "enable_progress_bar": False, "enable_model_summary": False},
        storage="memory", study_name=f"vae-{strategy.lower()}-seed{seed}", root_dir=root, seed=seed,
        quiet=True, save_checkpoints=False, loggers=False, executor="inline",
    )
    start = time.perf_counter()
    result = runner.fit(VAE, SPACE, datamodule=DigitsDataModule, model_kwargs=FIXED_MODEL,
                        datamodule_kwargs={"batch_size": BATCH_SIZE})
    seconds = time.perf_counter() - start
    trials = sorted(result.trials, key=lambda t: t.number)
    # A failed trial (e.g. a diverged lr) counts as no improvement, not as a crash.
    values = [t.value if t.state is TrialState.COMPLETE and t.value is not None else float("inf") for t in trials]
    return Run(strategy, seed, values, seconds, result.best_params)


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def table(runs: list[Run], strategies: list[str]) -> str:
    """The Markdown comparison table (Method | Best Val Loss | Trials to Best | Time)."""
    lines = [
        "| Method | Trials | Best Val Loss (mean ± std) | Trials to Best (mean, min–max) | Time per search (mean ± std) |",
        "|---|---|---|---|---|",
    ]
    for s in strategies:
        rs = [r for r in runs if r.strategy == s]
        best_m, best_s = _mean_std([r.best for r in rs])
        ttb = [r.trials_to_best for r in rs]
        t_m, t_s = _mean_std([r.seconds for r in rs])
        lines.append(
            f"| {s} | {TRIALS[s]} | {best_m:.2f} ± {best_s:.2f} | {statistics.fmean(ttb):.1f} ({min(ttb)}–{max(ttb)}) "
            f"| {t_m:.0f} ± {t_s:.0f} s |"
        )
    return "\n".join(lines)


def plot(runs: list[Run], strategies: list[str], path: Path) -> None:
    """Best-so-far ``val_loss`` against trial number: mean over seeds, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s in strategies:
        curves = torch.tensor([r.best_so_far for r in runs if r.strategy == s], dtype=torch.float64)
        x = range(1, curves.shape[1] + 1)
        finite = torch.where(torch.isfinite(curves), curves, torch.nan)
        ax.plot(x, finite.nanmean(0).tolist(), marker="o", ms=3, label=f"{s} ({curves.shape[0]} seeds)")
        ax.fill_between(x, finite.nan_to_num(nan=float("inf")).amin(0).tolist(), finite.nan_to_num(nan=0).amax(0).tolist(), alpha=0.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("best val_loss so far (negative ELBO, nats)")
    ax.set_title("VAE on digits: best-so-far by search strategy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="searches per strategy (seeds 0..N-1)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (the per-trial budget)")
    parser.add_argument("--strategies", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be >= 1")

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)

    runs: list[Run] = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        for s in args.strategies:
            run = run_search(s, seed, args.epochs, args.out / "runs")
            runs.append(run)
            print(f"{s:>8} seed {seed}: best {run.best:.3f} at trial {run.trials_to_best}/{len(run.values)} "
                  f"in {run.seconds:.0f} s  {run.best_params}", flush=True)
    total = time.perf_counter() - start

    print()
    print(f"VAE on digits, {args.epochs} epochs per trial (batch {BATCH_SIZE}), {args.seeds} seeds, "
          f"space lr ~ logU(1e-4, 3e-2), beta ~ logU(0.1, 10), {FIXED_MODEL}; total {total / 60:.1f} min")
    print()
    print(table(runs, args.strategies))
    png = args.out / "compare_strategies.png"
    plot(runs, args.strategies, png)
    (args.out / "compare_strategies.json").write_text(json.dumps(
        {"epochs": args.epochs, "seeds": args.seeds, "runs": [asdict(r) for r in runs]}, indent=1, default=str))
    print(f"\nwrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
