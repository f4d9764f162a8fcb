"""Record the learning-curve tables: train configurations with Lightning, every epoch kept.

Run from the repository root (regenerates the shipped tables; resumable, see ``--fresh``)::

    nice -n 10 python -m benchmarks.curves.record --tables digits-mlp,cancer-mlp,digits-vae --configs 150 --seed 0

For each table, configuration ``i`` is ``space.sample(default_rng([seed, i]))`` (so
adding configurations never changes the earlier ones) and trains for the problem's full
budget of epochs under ``seed_everything(seed * 100003 + i)``, with one thread. After
each validation a callback records the metric and the seconds since the epoch began.
The table is rewritten every ``--save-every`` configurations, so an interrupted run
keeps what it has trained and a second run goes on from there.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.curves.problems import PROBLEMS, Problem  # noqa: E402
from benchmarks.curves.table import DATA_DIR, Curve, Table, load_table  # noqa: E402


class CurveRecorder(pl.Callback):
    """Keeps, after each validation, the monitored metric and the seconds the epoch took."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.values: list[float] = []
        self.seconds: list[float] = []
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.seconds.append(time.perf_counter() - self._start)
        value = trainer.callback_metrics.get(self.metric)
        self.values.append(math.nan if value is None else float(value))


def draw(problem: Problem, seed: int, index: int) -> dict[str, Any]:
    """Configuration ``index`` of a table: independent of how many are drawn."""
    return problem.space.sample(np.random.default_rng([seed, index]))


def train(problem: Problem, params: dict[str, Any], seed: int) -> tuple[list[float], list[float]]:
    """Train one configuration for the full budget; its per-epoch values and seconds."""
    pl.seed_everything(seed, verbose=False)
    module, datamodule = problem.build(params)
    recorder = CurveRecorder(problem.metric)
    trainer = pl.Trainer(
        max_epochs=problem.max_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=[recorder],
    )
    trainer.fit(module, datamodule=datamodule)
    # A run that diverged keeps its NaN after it; Lightning trains on regardless.
    return recorder.values, recorder.seconds


def record(problem: Problem, n: int, seed: int, path: Path, fresh: bool, save_every: int) -> Table:
    table = Table(problem.name, problem.metric, problem.mode, problem.max_epochs, seed,
                  {k: repr(d) for k, d in problem.space.items()})
    if path.is_file() and not fresh:
        old = load_table(path)
        if (old.seed, old.max_epochs, old.space) == (seed, problem.max_epochs, table.space):
            table.curves = [c for c in old.curves if c.index < n]
    start = time.perf_counter()
    done = {c.index for c in table.curves}
    for i in range(n):
        if i in done:
            continue
        params = draw(problem, seed, i)
        values, seconds = train(problem, params, seed * 100003 + i)
        table.curves.append(Curve(i, params, values, seconds))
        table.curves.sort(key=lambda c: c.index)
        if len(table.curves) % save_every == 0 or len(table.curves) == n:
            table.save(path)
            print(f"{problem.name}: {len(table.curves)}/{n} configurations "
                  f"({time.perf_counter() - start:.0f} s this run)", flush=True)
    table.save(path)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(PROBLEMS), help=f"comma-separated, among {', '.join(PROBLEMS)}")
    parser.add_argument("--configs", type=int, default=150, help="configurations per table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--fresh", action="store_true", help="retrain every configuration, ignoring a stored table")
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in names if t not in PROBLEMS]
    if unknown or not names:
        parser.error(f"--tables must name tables among {', '.join(PROBLEMS)}, got {args.tables!r}")
    if args.configs < 1:
        parser.error(f"--configs must be >= 1, got {args.configs}")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    # Round-robin in chunks, so an interrupted run leaves every table with something.
    for stop in range(args.save_every, args.configs + args.save_every, args.save_every):
        for name in names:
            record(PROBLEMS[name], min(stop, args.configs), args.seed, args.out / f"{name}.json.gz",
                   args.fresh and stop == args.save_every, args.save_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
