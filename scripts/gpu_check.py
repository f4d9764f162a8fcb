"""GPU check of the parallel executor, self-contained: ``python scripts/gpu_check.py [--out DIR]``.

Runs on one GPU in a few minutes and prints a summary:

1. **Two trials share one GPU at once** — ``n_jobs=2, gpus_per_trial=0.5``. Each trial
   trains a small MLP on the GPU for a few seconds (one of them under
   ``strategy="ddp"``, a one-rank NCCL process group) and records when it trained, what
   ``CUDA_VISIBLE_DEVICES`` it was given and which device it used; ``nvidia-smi`` is
   polled meanwhile for the processes on the GPU. Checked: both complete, both saw
   CUDA on GPU 0, their training intervals overlap, and two trial processes were on
   the GPU together.
2. **A two-rank DDP trial inside a parallel search** — with a single GPU, NCCL cannot
   put two ranks on one device, so this part runs DDP with gloo on CPU
   (``gpus_per_trial=0`` hides the GPU): two DDP trials at once, a
   ``ThresholdStopping`` prunes one; checked that both ranks of each trial stop at the
   same step and only the search's trials exist.

``--dry-run`` runs the same checks on CPU with a pretend GPU (``CUDA_VISIBLE_DEVICES=0``)
to test the script itself. Exit code 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from frameworm_lightning import GridSampler, SearchRunner  # noqa: E402
from frameworm_lightning.stopping import ThresholdStopping  # noqa: E402
from frameworm_lightning.trial import TrialState  # noqa: E402


class GpuMLP(pl.LightningModule):
    """An MLP on random data, trained for ``seconds``; writes what it saw to ``rank<r>.json``."""

    def __init__(self, offset: float = 0.0, width: int = 1024, seconds: float = 6.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))
        self.t0 = 0.0
        self.train_device = ""

    def _loader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(512, 64, generator=g)
        return DataLoader(TensorDataset(x, x[:, :1]), batch_size=64)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def on_fit_start(self) -> None:
        self.t0 = time.time()

    def training_step(self, batch, batch_idx):  # noqa: ANN001, D102
        x, y = batch
        self.train_device = str(x.device)  # read while training: teardown moves the model back to CPU
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if time.time() - self.t0 > self.hparams.seconds:
            self.trainer.should_stop = True
        return loss

    def validation_step(self, batch, batch_idx):  # noqa: ANN001, D102
        x, y = batch
        mse = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("val_loss", self.hparams.offset + 1e-3 * mse, sync_dist=True)

    def configure_optimizers(self):  # noqa: D102
        return torch.optim.Adam(self.parameters(), lr=1e-3)

    def on_fit_end(self) -> None:
        out = Path(self.trainer.default_root_dir) / f"rank{self.trainer.global_rank}.json"
        out.write_text(json.dumps({
            "start": self.t0, "end": time.time(), "global_step": self.trainer.global_step, "pid": os.getpid(),
            "world_size": self.trainer.world_size, "device": self.train_device,
            "max_memory_allocated_mib": torch.cuda.max_memory_allocated() // 2**20 if torch.cuda.is_available() else 0,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cuda_available": torch.cuda.is_available(),
            "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "strategy": type(self.trainer.strategy).__name__,
            "backend": getattr(self.trainer.strategy, "_process_group_backend", None),
        }))


def ranks(trial) -> dict[int, dict]:  # noqa: ANN001
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in Path(trial.system_attrs["trial_dir"]).glob("rank*.json")}


class GpuProcesses(threading.Thread):
    """Polls ``nvidia-smi`` for the compute processes on the GPU; keeps the most seen at once."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.most: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        if shutil.which("nvidia-smi") is None:
            return
        while not self.stop.wait(0.5):
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            rows = [r.strip() for r in out.splitlines() if r.strip()]
            if len(rows) > len(self.most):
                self.most = rows


def check(results: dict, name: str, ok: bool, detail: object = "") -> None:
    results["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
    print(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail != "" else ""), flush=True)


def shared_gpu(root: Path, results: dict, dry_run: bool) -> None:
    accelerator = "cpu" if dry_run else "gpu"
    runner = SearchRunner(
        metric="val_loss", sampler=GridSampler(), n_trials=None, n_jobs=2, gpus_per_trial=0.5, quiet=True,
        root_dir=root / "runs", storage=f"sqlite:///{root / 'shared.db'}", save_checkpoints=False,
        trainer_kwargs={"accelerator": accelerator, "devices": 1, "max_epochs": 1000, "logger": False,
                        "enable_progress_bar": False, "enable_model_summary": False},
    )
    poll = GpuProcesses()
    poll.start()
    t = time.time()
    result = runner.fit(GpuMLP, {"trainer.strategy": ["auto", "ddp"]}, model_kwargs={"seconds": 6.0})
    poll.stop.set()
    took = time.time() - t
    trials = result.trials
    check(results, "shared GPU: both trials COMPLETE", [x.state for x in trials] == [TrialState.COMPLETE] * 2,
          [(x.params, x.state.value, (x.error or "")[-800:]) for x in trials])
    reports = [ranks(x).get(0, {}) for x in trials]
    results["shared_gpu"] = {"seconds": round(took, 1), "trials": reports, "nvidia_smi_most_at_once": poll.most,
                             "workers": [x.system_attrs.get("worker") for x in trials]}
    if len(reports) == 2 and all(reports):
        a, b = reports
        check(results, "shared GPU: training intervals overlap", a["start"] < b["end"] and b["start"] < a["end"],
              [(round(r["start"] - t, 1), round(r["end"] - t, 1)) for r in reports])
        check(results, "shared GPU: each worker got CUDA_VISIBLE_DEVICES=0",
              [r["cuda_visible_devices"] for r in reports] == ["0", "0"], [r["cuda_visible_devices"] for r in reports])
        if not dry_run:
            check(results, "shared GPU: both trained on CUDA", all(r["cuda_available"] and r["device"].startswith("cuda")
                                                                   for r in reports),
                  [(r["device"], r["gpu_name"], r["strategy"], r["backend"], f"{r['max_memory_allocated_mib']} MiB")
                   for r in reports])
            check(results, "shared GPU: nvidia-smi saw two trial processes at once", len(poll.most) >= 2, poll.most)


def ddp_on_cpu(root: Path, results: dict) -> None:
    runner = SearchRunner(
        metric="val_loss", sampler=GridSampler(), n_trials=None, n_jobs=2, gpus_per_trial=0, quiet=True,
        root_dir=root / "runs", storage=f"sqlite:///{root / 'ddp.db'}", save_checkpoints=False,
        callbacks=[ThresholdStopping(threshold=1.0, grace_steps=6)],
        trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_steps": 16, "logger": False,
                        "enable_progress_bar": False, "enable_model_summary": False},
    )
    t = time.time()
    result = runner.fit(GpuMLP, {"offset": [5.0, 0.1]}, model_kwargs={"seconds": 600.0, "width": 64})
    took = time.time() - t
    by = {x.params["offset"]: x for x in result.trials}
    states = {k: v.state.value for k, v in by.items()}
    check(results, "DDP (gloo, CPU): offset 5.0 PRUNED, offset 0.1 COMPLETE, no extra trials",
          states == {5.0: "PRUNED", 0.1: "COMPLETE"}, {k: (v.state.value, (v.error or "")[-800:]) for k, v in by.items()})
    steps = {k: {r: rep["global_step"] for r, rep in ranks(v).items()} for k, v in by.items()}
    results["ddp_cpu"] = {"seconds": round(took, 1), "steps_by_rank": {str(k): v for k, v in steps.items()}}
    check(results, "DDP (gloo, CPU): both ranks of each trial stop at the same step",
          all(sorted(v) == [0, 1] and len(set(v.values())) == 1 for v in steps.values()), steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write summary.json there")
    parser.add_argument("--dry-run", action="store_true", help="CPU only, a pretend GPU: test this script")
    args = parser.parse_args()
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    results: dict = {"checks": [], "torch": torch.__version__, "lightning": pl.__version__,
                     "cuda_available": torch.cuda.is_available(), "dry_run": args.dry_run}
    if torch.cuda.is_available() and not args.dry_run:
        results["gpu"] = torch.cuda.get_device_name(0)
    print(json.dumps({k: v for k, v in results.items() if k != "checks"}), flush=True)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run to test the script on CPU", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fw-gpu-check-") as tmp:
        root = Path(tmp)
        t = time.time()
        shared_gpu(root, results, args.dry_run)
        ddp_on_cpu(root, results)
        results["seconds"] = round(time.time() - t, 1)
    passed = sum(c["ok"] for c in results["checks"])
    print(f"\nSUMMARY: {passed}/{len(results['checks'])} checks passed in {results['seconds']}s")
    print(json.dumps(results, indent=1, default=str))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(results, indent=1, default=str))
    return 0 if passed == len(results["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
