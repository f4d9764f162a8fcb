"""What one ``ask()`` costs as a study's stored trials accumulate, beside Optuna's RDB storage.

Run from the repository root (PostgreSQL through ``FRAMEWORM_TEST_POSTGRES_URL``, e.g. from
``scripts/postgres.sh start``; without it only SQLite is measured)::

    python benchmarks/ask_cost.py --asks 40     # 0 and 2,000 stored trials, about 4 minutes
    python benchmarks/ask_cost.py --sizes 0 500 2000

For each backend and each size, a fresh study is filled with that many finished trials
(random sampler, three reported values each, as a stopping policy would leave them), then
``ask()`` is timed on new trials, each completed after its timing: the median of
``--asks`` of them, the sizes taking turns ask by ask (the machine is shared: its load
then falls on every size alike). Three columns, measured in the same run:

* **frameworm ask()** — ``Study.ask()`` (claim, history read, sampler, store the params);
* **full read** — ``Storage.get_trials()`` of the whole study, which is what every
  ``ask()`` read before the history was read incrementally, and what a stopping policy
  read at every check before it kept finished trials' reports;
* **policy read** — what a stopping policy (``MedianStopping``, the halving family) reads
  at each check now: the trials added or still running since its last check, the
  finished ones from memory (``Storage.read_history``, as samplers read);
* **Optuna ask()** — ``study.ask()`` plus ``suggest_float`` (Optuna samples lazily) on
  ``optuna.storages.RDBStorage`` over the same database server, random sampler.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frameworm_lightning import RandomSampler, Real, Study  # noqa: E402
from frameworm_lightning.storage import TrialHistory  # noqa: E402


def _fill_frameworm(study: Study, n: int) -> None:
    for _ in range(n):
        trial = study.ask()
        for step in range(3):
            trial.report(step, trial.params["x"] + step)
        trial.complete(trial.params["x"])


def frameworm_study(url: str, n: int) -> Study:
    """A worker's view of a fresh study holding ``n`` finished trials (its first ask read them all)."""
    study = Study.create(f"ask-{uuid.uuid4().hex[:8]}", {"x": Real(0, 1)}, metric="loss",
                         sampler=RandomSampler(seed=0), storage=url)
    _fill_frameworm(study, n)
    worker = Study.create(study.name, {"x": Real(0, 1)}, metric="loss", sampler=RandomSampler(seed=0), storage=url)
    worker.ask(heartbeat_interval=3600).complete(0.5)
    return worker


def optuna_study(url: str, n: int) -> Any:
    """An Optuna study on ``RDBStorage`` holding ``n`` finished trials with three reported values each."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=f"optuna-{uuid.uuid4().hex[:8]}", storage=optuna.storages.RDBStorage(url),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trials([
        optuna.trial.create_trial(params={"x": i / max(n, 1)}, distributions=dist, value=i / max(n, 1),
                                  intermediate_values={s: float(s) for s in range(3)})
        for i in range(n)
    ])
    return study


def time_asks(ours: Study, theirs: Any, seen: TrialHistory) -> tuple[float, float, float, float]:
    """One frameworm ``ask()``, a whole-study read, a policy's read and one Optuna ``ask()`` + ``suggest_float``."""
    start = time.perf_counter()
    trial = ours.ask(heartbeat_interval=3600)
    ask = time.perf_counter() - start
    trial.complete(trial.params["x"])
    start = time.perf_counter()
    ours.storage.get_trials(ours.study_id)
    full = time.perf_counter() - start
    start = time.perf_counter()
    ours.storage.read_history(seen)
    policy = time.perf_counter() - start
    start = time.perf_counter()
    optuna_trial = theirs.ask()
    x = optuna_trial.suggest_float("x", 0, 1)
    optuna_ask = time.perf_counter() - start
    theirs.tell(optuna_trial, x)
    return ask, full, policy, optuna_ask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 2000], help="stored trials (default 0 2000)")
    parser.add_argument("--asks", type=int, default=20, help="asks timed per size (the median is shown)")
    args = parser.parse_args()
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    backends = {"SQLite": None}
    if os.environ.get("FRAMEWORM_TEST_POSTGRES_URL"):
        backends["PostgreSQL"] = os.environ["FRAMEWORM_TEST_POSTGRES_URL"]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; median of {args.asks} asks")
    print(f"{'backend':<11} {'trials':>6} {'frameworm ask()':>16} {'full read':>10} {'policy read':>12} "
          f"{'Optuna ask()':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for backend, url in backends.items():
            studies = [(frameworm_study(url or f"sqlite:///{Path(tmp) / f'fw-{n}.db'}", n),
                        optuna_study(url or f"sqlite:///{Path(tmp) / f'optuna-{n}.db'}", n)) for n in args.sizes]
            # Sizes take turns, ask by ask, so that the shared machine's load falls on each alike.
            times: list[list[tuple[float, float, float, float]]] = [[] for _ in args.sizes]
            seen = [TrialHistory(ours.study_id) for ours, _ in studies]
            for i, (ours, _) in enumerate(studies):  # a policy's first check reads the whole study once
                ours.storage.read_history(seen[i])
            for _ in range(args.asks):
                for i, (ours, theirs) in enumerate(studies):
                    times[i].append(time_asks(ours, theirs, seen[i]))
            base = None
            for n, rows in zip(args.sizes, times):
                ours_ms, full_ms, policy_ms, theirs_ms = (1000 * statistics.median(col) for col in zip(*rows))
                base = ours_ms if base is None else base
                print(f"{backend:<11} {n:>6,} {ours_ms:>11.1f} ms {f'({ours_ms / base:.1f}x)':>3} {full_ms:>7.1f} ms "
                      f"{policy_ms:>9.1f} ms {theirs_ms:>10.1f} ms", flush=True)

if __name__ == "__main__":
    main()
