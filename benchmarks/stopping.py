"""The same VAE search with Hyperband, ASHA and no stopping, side by side.

Run from the repository root::

    python benchmarks/stopping.py            # about 10-15 minutes on 2 CPU cores
    python benchmarks/stopping.py --quick    # a smoke run: 9 epochs at most, 17 configs

``models.VAE`` on ``models.DigitsDataModule`` (scikit-learn's 8x8 digits, nothing to
download), ``val_loss`` = the negative ELBO in nats per image (lower is better). One
list of configurations, drawn once from the space below, is enqueued into every search,
and trial ``n`` trains under ``seed_everything(n)``, so the three searches evaluate the
same configurations from the same initial weights. Without stopping every configuration
trains ``max_resource`` epochs. The table gives, per search, the stored trials
(configurations plus promotions), how many configurations were trained to
``max_resource``, the training steps spent over all trials, the wall time and the best
value found among the configurations trained to ``max_resource``.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread: the comparison is about the policies, not thread pools fighting
# over two cores.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from frameworm_lightning import Categorical, RandomSampler, Real, SearchRunner, SearchSpace, TrialState  # noqa: E402
from frameworm_lightning.samplers import AskContext  # noqa: E402
from frameworm_lightning.stopping import ASHA, Hyperband, trained_steps  # noqa: E402
from models import VAE, DigitsDataModule  # noqa: E402

SPACE = SearchSpace({
    "lr": Real(1e-3, 3e-2, log=True),
    "hidden_dim": Categorical([64, 128, 256]),
    "latent_dim": Categorical([4, 8, 16]),
    "num_layers": Categorical([1, 2]),
})
BATCH_SIZE = 64


@dataclass
class Row:
    search: str
    trials: int
    configs: int
    full: int
    steps: int
    seconds: float
    best: float | None
    best_params: dict[str, Any] | None


def draw_configs(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations of ``SPACE``, the same for every search."""
    sampler = RandomSampler(seed=seed)
    return [sampler.ask(AskContext(SPACE, "min", [], i)).params for i in range(n)]


def run_search(name: str, callbacks: list[Any], configs: list[dict[str, Any]], max_epochs: int, root: Path) -> Row:
    runner = SearchRunner(
        metric="val_loss", mode="min", n_trials=len(configs), storage=f"sqlite:///{root / 'stopping.db'}",
        study_name=f"vae-{name}", root_dir=root / name, seed=0, quiet=True, save_checkpoints=False,
        callbacks=callbacks,
        trainer_kwargs={"max_epochs": max_epochs, "num_sanity_val_steps": 0, "enable_progress_bar": False,
                        "enable_model_summary": False},
    )
    start = time.perf_counter()
    result = runner.fit(VAE, SPACE, datamodule=DigitsDataModule, datamodule_kwargs={"batch_size": BATCH_SIZE},
                        enqueue=configs)
    seconds = time.perf_counter() - start
    trials = result.trials
    full = [t for t in trials if t.state is TrialState.COMPLETE]
    return Row(
        search=name, trials=len(trials), configs=sum("promoted_from" not in t.system_attrs for t in trials),
        full=len(full), steps=sum(trained_steps(t) for t in trials), seconds=seconds,
        best=result.best_score, best_params=result.best_params,
    )


def table(rows: list[Row], max_epochs: int) -> str:
    base = rows[0]
    lines = [
        f"| search | trials (configs + promotions) | trained to {max_epochs} epochs | training steps | "
        "wall time | best val_loss | steps vs. none | best vs. none |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = "-" if r.best is None else f"{r.best:.2f}"
        ratio = f"{base.steps / r.steps:.2f}x fewer" if r is not base and r.steps else "1x"
        if r.best is None or base.best is None:
            gap = "-"
        elif r is base:
            gap = "0%"
        else:
            gap = f"{100 * (r.best - base.best) / abs(base.best):+.2f}%"
        lines.append(f"| {r.search} | {r.trials} ({r.configs} + {r.trials - r.configs}) | {r.full} | {r.steps} | "
                     f"{r.seconds:.0f} s | {best} | {ratio} | {gap} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=27, help="max_resource: epochs of a full training")
    parser.add_argument("--min-epochs", type=int, default=1, help="min_resource: the first rung")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--configs", type=int, default=None,
                        help="configurations per search (default: one Hyperband round)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the configurations drawn")
    parser.add_argument("--searches", default="none,asha,hyperband")
    parser.add_argument("--quick", action="store_true", help="max 9 epochs and one Hyperband round (17 configs)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-stopping"))
    args = parser.parse_args(argv)
    if args.quick:
        args.max_epochs = 9
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)

    hyperband = Hyperband(min_resource=args.min_epochs, max_resource=args.max_epochs, eta=args.eta)
    n = args.configs or sum(hyperband.bracket_sizes)
    configs = draw_configs(n, args.seed)
    policies = {
        "none": [],
        "asha": [ASHA(min_resource=args.min_epochs, max_resource=args.max_epochs, eta=args.eta)],
        "hyperband": [hyperband],
    }
    names = [s.strip() for s in args.searches.split(",") if s.strip()]
    unknown = sorted(set(names) - set(policies))
    if unknown or not names or names[0] != "none":
        parser.error(f"--searches must start with 'none' and name searches among {sorted(policies)}, got {names}")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    print(f"VAE on digits: {n} configurations, up to {args.max_epochs} epochs (batch {BATCH_SIZE}), "
          f"rungs from {args.min_epochs} epoch, eta={args.eta}; Hyperband brackets {hyperband.bracket_sizes}",
          flush=True)
    rows = []
    for name in names:
        row = run_search(name, policies[name], configs, args.max_epochs, args.out)
        rows.append(row)
        print(f"  {name}: {row.steps} steps in {row.seconds:.0f} s, best val_loss {row.best}", flush=True)
    print()
    print(table(rows, args.max_epochs))
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=2, default=str))
    base = rows[0]
    ok = all(r.best is not None and base.best is not None and base.steps >= 3 * r.steps
             and (r.best - base.best) <= 0.02 * abs(base.best) for r in rows[1:])
    print(f"\ntarget (>= 3x fewer steps, best within 2% of no stopping): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
