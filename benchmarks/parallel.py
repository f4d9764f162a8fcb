"""Parallel trials on this machine: throughput of n_jobs=1 vs 2, and what one trial costs per executor.

Run from the repository root::

    python benchmarks/parallel.py                     # about 9 minutes on 2 CPU cores
    python benchmarks/parallel.py --workload digits   # the README demo's model in the throughput table
    python benchmarks/parallel.py --quick             # one round, fewer trials

Two tables, printed side by side:

* **Throughput** — the same random search of a workload (``--workload``: a small CPU-bound
  MLP, about 0.7 s of matrix products per trial, or the README demo's digits classifier,
  about 0.25 s per trial with validation) with ``n_jobs=1`` (trials in the search process, with
  torch's default threads and with one thread) and ``n_jobs=2`` (two worker processes,
  one thread each): trials per minute of wall time, the median of rotated rounds
  (the machine is shared, so its load changes under us). Each search runs in a fresh
  process, as a user's script; its forkserver is started and ready before its clock
  starts (the forkserver's start is shown in the other table). Each round also measures the
  machine itself without frameworm — matrix products in one process, then in two at
  once — so the ``n_jobs=2`` figure can be read against the parallel capacity the
  machine had to give, and the same CpuMLP fits in two bare processes (one thread each,
  no frameworm) against one, so the ``n_jobs=2`` figure can be read against what this
  workload itself can gain from a second process. The share of each control is taken
  round by round (``n_jobs=2`` over one-thread ``n_jobs=1`` of that round, over that
  round's control), then its median: settings and controls a minute apart, not
  medians of rows whose rounds ran at different speeds of the machine.
* **Empty-trial cost** — a trial of one training step on one sample, run with each
  executor, ``n_jobs=1``: the median time a trial is held (claim to stored outcome,
  from storage), the first trial's, the overhead over in-process, and the one-off
  start of the executor (the forkserver's imports, a local Ray cluster).
* **Cold starts** — each in a fresh interpreter running a search script, as a user
  does: the time from ``fit()`` to the first trial running in a worker (``n_jobs=2``),
  and ``GridSearch(...).run(fn, n_jobs=2)`` on four trials of a 1.5 s function.

Worker processes import this script (its classes are defined here, in ``__main__``),
as they would a user's search script. The machine is shared; its load average is
printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "examples"):  # the package and ``models``; the README demo's script
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from frameworm_lightning import RandomSampler, Real, SearchRunner  # noqa: E402
from frameworm_lightning.runner._forkserver import forkserver_ready, start_forkserver, warm_up  # noqa: E402


class CpuMLP(pl.LightningModule):
    """A 3-layer MLP on 4096 random points: a few seconds of CPU-bound training."""

    def __init__(self, lr: float = 1e-2, width: int = 512) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                       torch.nn.ReLU(), torch.nn.Linear(width, 1))

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4096, 32, generator=g)
        return DataLoader(TensorDataset(x, x.sin().sum(1, keepdim=True)), batch_size=128)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, D102
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):  # noqa: D102
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class EmptyModule(pl.LightningModule):
    """One parameter, one sample, one step: what is left is the cost of running a trial."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, D102
        loss = (self.w - batch[0]).pow(2).mean()
        self.log("loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):  # noqa: D102
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


TRAINER = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
           "enable_model_summary": False, "enable_checkpointing": False}

def _cpu_mlp() -> tuple[type, None]:
    return CpuMLP, None


def _digits() -> tuple[type, type]:
    # Imported only for this workload: a worker process runs this script's imports, and the
    # CpuMLP rows must not pay for the demo's modules.
    from digits_search import DigitsMLP  # noqa: PLC0415 - examples/: the README demo's model
    from models import DigitsDataModule  # noqa: PLC0415

    return DigitsMLP, DigitsDataModule


# The throughput table's workloads: (module and datamodule class or None, metric, epochs,
# trials a search, what it is). About 5 s of training a search either way.
WORKLOADS: dict[str, tuple[Any, str, int, int, str]] = {
    "mlp": (_cpu_mlp, "loss", 6, 6, "CpuMLP (6 epochs of 32 batches of 128 x 32, width 512, no validation)"),
    "digits": (_digits, "val_loss", 8, 20,
               "the README demo's DigitsMLP on digits (8 epochs of 23 batches, validation each epoch)"),
}


def search(root: Path, tag: str, module: type, n_trials: int, n_jobs: int, executor: str,
           datamodule: Any = None, metric: str = "loss", **trainer: Any) -> dict[str, Any]:
    runner = SearchRunner(
        metric=metric, sampler=RandomSampler(seed=0), n_trials=n_trials, n_jobs=n_jobs, executor=executor,
        quiet=True, save_checkpoints=False, root_dir=root / tag, storage=f"sqlite:///{root / tag}.db",
        study_name=tag, trainer_kwargs={**TRAINER, **trainer},
    )
    t = time.perf_counter()
    result = runner.fit(module, {"lr": Real(1e-3, 1e-1, log=True)}, datamodule)
    wall = time.perf_counter() - t
    held = sorted(tr.duration for tr in result.trials if tr.duration is not None)
    states = {tr.state.value for tr in result.trials}
    if states != {"COMPLETE"}:
        raise RuntimeError(f"{tag}: trials ended {states}: {[tr.error for tr in result.trials if tr.error][:1]}")
    return {"tag": tag, "trials": len(result.trials), "wall_s": wall, "per_min": 60 * len(result.trials) / wall,
            "median_trial_s": statistics.median(held), "first_trial_s": result.trials[0].duration}


# The machine's own parallel capacity, without frameworm: matrix products for a few seconds
# in one process, then in two processes at once; the ratio of the work done.
_CONTROL = """
import sys, time, torch
torch.set_num_threads(1)
a = torch.randn(256, 256)
t, n = time.perf_counter(), 0
while time.perf_counter() - t < float(sys.argv[1]):
    a @ a
    n += 1
print(n)
"""


# The CPUs a single process's figures are taken on, one after the other, then averaged: on
# this project's 2-core machine one CPU ran CpuMLP fits 30% slower than the other (4.17 s
# against 3.21 s for the same four fits pinned to each, matrix products and the digits
# workload alike on both: its cache or memory path is shared with a neighbour). A process
# stays on the CPU it starts on, so an unpinned single-process figure was fast or slow by
# the draw, while two processes always use both. Pinning each CPU in turn measures the
# average CPU. Only for a few CPUs (each costs a run); otherwise unpinned.
_AFFINITY = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
ONE_PROCESS_CPUS: list[int | None] = list(_AFFINITY) if 1 < len(_AFFINITY) <= 4 else [None]


def _pinned(cpu: int | None) -> Any:
    """A ``preexec_fn`` that keeps the child on ``cpu`` (``None``: anywhere)."""
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def search_in_a_process(root: Path, tag: str, n_trials: int, n_jobs: int, threads: int | None,
                        workload: str, cpu: int | None = None) -> dict[str, Any]:
    """:func:`search` of a workload in a fresh interpreter (``--one-search``), its forkserver ready first."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if n_jobs > 1:
        env["OMP_NUM_THREADS"] = "1"  # one thread per worker on any number of cores
    spec = {"root": str(root), "tag": tag, "n_trials": n_trials, "n_jobs": n_jobs, "threads": threads,
            "workload": workload}
    args = [sys.executable, __file__, "--one-search", json.dumps(spec)]
    out = subprocess.run(args, capture_output=True, text=True, env=env, preexec_fn=_pinned(cpu))
    if out.returncode != 0:
        raise RuntimeError(f"{tag}: the search's process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_search(spec: dict[str, Any]) -> None:
    """``--one-search``: one throughput search in this process, as JSON on the last line."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    # Its classes first, as a user's script imports them at its top (before any search starts).
    classes, metric, epochs, _, _ = WORKLOADS[spec["workload"]]
    module, datamodule = classes()
    # Warm before the clock starts, either way: the forkserver's imports and tiny fit done, or the
    # same tiny fit here (a process's first Lightning fit fills caches for about 0.25 s).
    if spec["n_jobs"] > 1:
        context = start_forkserver()
        probe = context.Process(target=time.sleep, args=(0,))
        probe.start()
        probe.join()
        while not forkserver_ready():
            time.sleep(0.05)
    else:
        warm_up()
    row = search(Path(spec["root"]), spec["tag"], module, spec["n_trials"], spec["n_jobs"], "auto",
                 datamodule() if datamodule else None, metric, max_epochs=epochs)
    print(json.dumps(row))


def bare_fits(n: int, workload: str) -> None:
    """``--bare-fits``: ``n`` fits of a workload one after another in this process, one thread, no frameworm."""
    classes, _, epochs, _, _ = WORKLOADS[workload]
    module, datamodule = classes()
    torch.set_num_threads(1)
    warm_up()  # as the search processes are warmed before their clocks start
    start = time.perf_counter()
    for i in range(n):
        pl.seed_everything(i, verbose=False)
        pl.Trainer(max_epochs=epochs, **TRAINER).fit(module(lr=1e-2), datamodule=datamodule() if datamodule else None)
    print(time.perf_counter() - start)


def trial_capacity(n: int, workload: str) -> float:
    """How much more of *these trials'* work two bare processes do at once than one alone.

    The same fits as the throughput table, ``n`` per process, each process one
    thread and no frameworm: what two processes of this workload can give on this machine
    (memory traffic included, which matrix products alone do not show).
    """
    def launch(cpu: int | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, __file__, "--bare-fits", str(n), "--workload", workload],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=_pinned(cpu),
                                env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})

    one = statistics.mean(n / float(launch(cpu).communicate()[0].split()[-1]) for cpu in ONE_PROCESS_CPUS)
    pair = [launch(), launch()]
    two = 2 * n / max(float(p.communicate()[0].split()[-1]) for p in pair)
    return two / one


def capacity(seconds: float = 4.0) -> float:
    """How much more work two single-thread processes do at once than one alone (2.0 on 2 free cores)."""
    def launch(cpu: int | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", _CONTROL, str(seconds)], stdout=subprocess.PIPE, text=True,
                                preexec_fn=_pinned(cpu))

    one = statistics.mean(int(launch(cpu).communicate()[0]) for cpu in ONE_PROCESS_CPUS)
    pair = [launch(), launch()]
    two = sum(int(p.communicate()[0]) for p in pair)
    return two / one


SETTINGS = (  # (label, n_jobs, torch threads in the search process; workers get cpu_count // n_jobs)
    ("n_jobs=1 in-process, default thr", 1, None),
    ("n_jobs=1 in-process, 1 thr", 1, 1),
    ("n_jobs=2 workers, 1 thr each", 2, None),
)


def throughput(root: Path, n_trials: int, workload: str, rounds: int) -> list[dict[str, Any]]:
    """Each setting once per round, in a rotated order; the median round per setting.

    The machine is shared: rounds spread the others' load over every setting alike. Each
    search runs in a fresh process, as a user's script does. The single-thread settings and
    controls run once on each CPU and are averaged (:data:`ONE_PROCESS_CPUS`): the same
    single-thread search ran 0.68 to 0.95 s a trial from one process to the next on this
    machine, by the CPU it landed on.
    """
    default_threads = torch.get_num_threads()
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in SETTINGS}
    ratios, trial_ratios, shares = [], [], []
    for r in range(rounds):
        ratios.append(capacity())
        trial_ratios.append(trial_capacity(n_trials, workload))
        print(f"  round {r + 1}: two processes do {ratios[-1]:.2f}x the work of one on this machine now "
              f"({trial_ratios[-1]:.2f}x of these trials' fits)", flush=True)
        for label, n_jobs, threads in SETTINGS[r % len(SETTINGS):] + SETTINGS[: r % len(SETTINGS)]:
            # One thread: once on each CPU, averaged (see ONE_PROCESS_CPUS); the others use both CPUs.
            cpus = ONE_PROCESS_CPUS if threads == 1 else [None]
            each = [search_in_a_process(root, f"{workload}-{r}-{n_jobs}-{threads}-{cpu}", n_trials, n_jobs, threads,
                                        workload, cpu) for cpu in cpus]
            row = {"per_min": statistics.mean(x["per_min"] for x in each),
                   "median_trial_s": statistics.mean(x["median_trial_s"] for x in each),
                   "per_cpu": [x["per_min"] for x in each], "searches": each}
            runs[label].append(row)
            on = f" (on each CPU: {', '.join(f'{x:.1f}' for x in row['per_cpu'])})" if len(each) > 1 else ""
            print(f"  round {r + 1}: {label}: {row['per_min']:.1f} trials/min{on}", flush=True)
        # The round's own share: its n_jobs=2 gain over its one-thread n_jobs=1, read against
        # its own controls. A round pairs settings and controls measured within a minute of
        # each other, so a change of the machine's speed between rounds (others' load, a
        # neighbour on the host) cancels out instead of landing on one setting's median.
        gain = runs[SETTINGS[2][0]][-1]["per_min"] / runs[SETTINGS[1][0]][-1]["per_min"]
        shares.append((gain / ratios[-1], gain / trial_ratios[-1]))
        print(f"  round {r + 1}: n_jobs=2 does {gain:.2f}x the work of n_jobs=1 (1 thread): {shares[-1][0]:.2f} of "
              f"the machine's two processes, {shares[-1][1]:.2f} of these fits'", flush=True)
    rows = []
    for label, _, threads in SETTINGS:
        per_min = sorted(x["per_min"] for x in runs[label])
        median = statistics.median(per_min)
        rows.append({"setting": label.replace("default", str(default_threads)), "per_min": median,
                     "range": (per_min[0], per_min[-1]),
                     "median_trial_s": statistics.median(x["median_trial_s"] for x in runs[label]),
                     "rounds": runs[label]})
    rows.append({"setting": "machine: 2 procs vs 1 (no frameworm)", "ratio": statistics.median(ratios),
                 "range": (min(ratios), max(ratios))})
    rows.append({"setting": "these fits: 2 bare procs vs 1", "ratio": statistics.median(trial_ratios),
                 "range": (min(trial_ratios), max(trial_ratios))})
    for i, control in enumerate(("share of the machine's 2 procs", "share of these fits' 2 procs")):
        each = sorted(share[i] for share in shares)
        rows.append({"setting": control, "share": statistics.median(each), "range": (each[0], each[-1]),
                     "rounds": each})
    return rows


def empty_trials(root: Path, n_trials: int, forkserver_start: float, with_ray: bool) -> list[dict[str, Any]]:
    rows = []
    row = search(root, "empty-inline", EmptyModule, n_trials, 1, "inline", max_steps=1)
    row.update(executor="in-process", start_s=0.0)
    rows.append(row)

    row = search(root, "empty-process", EmptyModule, n_trials, 1, "process", max_steps=1)
    row.update(executor="worker process (forkserver)", start_s=forkserver_start)
    rows.append(row)

    if with_ray:
        try:
            import ray
        except ImportError:
            print("  ray is not installed: pip install 'frameworm-lightning[ray]'", flush=True)
            return rows
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t
        try:
            row = search(root, "empty-ray", EmptyModule, n_trials, 1, "ray", max_steps=1)
        finally:
            ray.shutdown()
        row.update(executor="Ray task", start_s=start)
        rows.append(row)
    for r in rows:
        r["overhead_s"] = r["median_trial_s"] - rows[0]["median_trial_s"]
        print(f"  {r['executor']}: {r['median_trial_s']:.2f} s per empty trial", flush=True)
    return rows


FIRST_TRIAL = """
import json, sys, time
sys.path.insert(0, {root!r})
from benchmarks.parallel import EmptyModule
from frameworm_lightning import GridSampler, SearchRunner
if __name__ == "__main__":
    runner = SearchRunner(metric="loss", sampler=GridSampler(), n_trials=None, n_jobs=2, quiet=True,
                          root_dir={folder!r}, storage="sqlite:///{folder}/fw.db", save_checkpoints=False,
                          trainer_kwargs=dict(max_steps=1, logger=False, enable_checkpointing=False))
    t0 = time.time()
    result = runner.fit(EmptyModule, {{"lr": [0.1, 0.2]}})
    first = min(t.system_attrs["worker"]["started_at"] for t in result.trials)
    print(json.dumps({{"first_s": first - t0, "total_s": time.time() - t0}}))
"""

GRID_FN = """
import json, sys, time
sys.path.insert(0, {root!r})
from frameworm_lightning.search import GridSearch

def train(config):
    time.sleep(1.5)
    return config["x"]

if __name__ == "__main__":
    t0 = time.time()
    GridSearch({{}}, {{"x": [1.0, 2.0, 3.0, 4.0]}}, metric="loss", verbose=False).run(train, n_jobs=2)
    print(json.dumps({{"total_s": time.time() - t0}}))
"""


def _fresh(code: str) -> dict[str, float]:
    """Run ``code`` as a script in a fresh interpreter (a user's search); its last line of JSON."""
    folder = Path(tempfile.mkdtemp(prefix="fw-bench-cold-"))
    try:
        script = folder / "search.py"
        script.write_text(code.format(root=str(ROOT), folder=str(folder)))
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, cwd=folder)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cold_starts(runs: int = 3) -> dict[str, float]:
    """The issue's targets, each measured from a cold process: first trial in a worker, a 4-trial grid."""
    first = [_fresh(FIRST_TRIAL) for _ in range(runs)]
    grid = [_fresh(GRID_FN) for _ in range(runs)]
    out = {
        "fit() to first trial running in a worker": statistics.median(r["first_s"] for r in first),
        "GridSearch n_jobs=2, 4 x 1.5 s trials": statistics.median(r["total_s"] for r in grid),
    }
    for k, v in out.items():
        print(f"  {k}: {v:.2f} s", flush=True)
    return out


def side_by_side(left: list[str], right: list[str]) -> str:
    width = max(len(line) for line in left) + 4
    lines = []
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        lines.append(f"{a:<{width}}{b}".rstrip())
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, fewer trials")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of the throughput settings (default 5)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures there")
    parser.add_argument("--bare-fits", type=int, default=None, help=argparse.SUPPRESS)  # trial_capacity's processes
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="mlp",
                        help="the throughput table's trials: " + "; ".join(f"{k}: {v[4]}" for k, v in WORKLOADS.items())
                        + " (default: %(default)s)")
    parser.add_argument("--one-search", default=None, help=argparse.SUPPRESS)  # throughput's processes
    args = parser.parse_args()
    if args.one_search is not None:
        one_search(json.loads(args.one_search))
        return
    if args.bare_fits is not None:
        bare_fits(args.bare_fits, args.workload)
        return
    n_empty, rounds = (4, 1) if args.quick else (8, 5)
    n_mlp = 2 if args.quick else WORKLOADS[args.workload][3]
    rounds = args.rounds or rounds

    root = Path(tempfile.mkdtemp(prefix="fw-bench-parallel-"))
    load_before = os.getloadavg()
    try:
        print("cold starts, each in a fresh process as a user's script:", flush=True)
        cold = cold_starts()
        t = time.perf_counter()
        context = start_forkserver()  # the worker processes' one-off start, paid by a process's first search
        probe = context.Process(target=time.sleep, args=(0,))
        probe.start()
        probe.join()
        forkserver_start = time.perf_counter() - t
        print(f"forkserver started (its imports) in {forkserver_start:.1f} s", flush=True)
        what = WORKLOADS[args.workload][4]
        print(f"throughput: {rounds} rounds of {n_mlp} trials of {what}", flush=True)
        tput = throughput(root, n_mlp, args.workload, rounds)
        print(f"empty trials: {n_empty} per executor, n_jobs=1", flush=True)
        empty = empty_trials(root, n_empty, forkserver_start, with_ray=not args.no_ray)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    left = [f"Throughput ({args.workload}, {os.cpu_count()} CPU cores; median of rounds)", "",
            f"{'setting':<30}{'trials/min':>11}{'range':>13}{'trial s':>9}"]
    left += [f"{r['setting']:<30}{r['per_min']:>11.1f}{r['range'][0]:>7.1f}-{r['range'][1]:<5.1f}"
             f"{r['median_trial_s']:>9.2f}" for r in tput[:3]]
    left += ["", f"n_jobs=2 vs n_jobs=1: {tput[2]['per_min'] / tput[0]['per_min']:.2f}x "
                 f"({tput[2]['per_min'] / tput[1]['per_min']:.2f}x vs 1 thread)",
             f"the machine itself: 2 processes do {tput[3]['ratio']:.2f}x the work of 1",
             f"  (rounds {tput[3]['range'][0]:.2f}-{tput[3]['range'][1]:.2f}; 2.00 with two free cores)",
             f"the same fits in 2 bare processes: {tput[4]['ratio']:.2f}x the work of 1",
             f"  (rounds {tput[4]['range'][0]:.2f}-{tput[4]['range'][1]:.2f})",
             "n_jobs=2's gain over 1 thread, as a share of each control",
             f"  round by round (median, range): machine {tput[5]['share']:.2f} "
             f"({tput[5]['range'][0]:.2f}-{tput[5]['range'][1]:.2f}),",
             f"  these fits {tput[6]['share']:.2f} ({tput[6]['range'][0]:.2f}-{tput[6]['range'][1]:.2f}); "
             f"{sum(x >= 0.9 for x in tput[5]['rounds'])}/{len(tput[5]['rounds'])} rounds >= 0.9 of the machine's"]
    right = ["Empty-trial cost (n_jobs=1)", "",
             f"{'executor':<30}{'median s':>9}{'first s':>8}{'overhead s':>11}{'start s':>8}"]
    right += [f"{r['executor']:<30}{r['median_trial_s']:>9.2f}{r['first_trial_s']:>8.2f}{r['overhead_s']:>11.2f}"
              f"{r['start_s']:>8.1f}" for r in empty]
    right += ["", "Cold starts (a fresh process, median of runs)", ""]
    right += [f"{k:<44}{v:>6.2f} s" for k, v in cold.items()]
    print()
    print(side_by_side(left, right))
    print(f"\nload average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after (the machine is shared)")
    if args.json is not None:
        args.json.write_text(json.dumps({"throughput": tput, "empty": empty, "load": [load_before, load_after]},
                                        indent=1))


if __name__ == "__main__":
    main()
