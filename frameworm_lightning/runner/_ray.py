"""Trials as Ray tasks: ``executor="ray"`` (``pip install 'frameworm-lightning[ray]'``).

The search process is the Ray driver. It claims each trial through storage exactly as
the local executor does, then submits one Ray task for it with ``num_cpus`` /
``num_gpus`` resources (fractions allowed), on an existing cluster
(``ray.init(address=...)``) or a local one. The task writes the trial's payload into the
trial folder on its node and runs the trial in a process of its own (forked by the node's
forkserver, as locally), so:

* a crash (segfault, OOM kill) takes the subprocess, not the Ray worker, and comes back
  as an exit code the search process stores like any other;
* a multi-GPU trial runs Lightning's DDP over the GPUs Ray gave the task (Ray sets
  ``CUDA_VISIBLE_DEVICES``), and the DDP launcher re-runs the entry point, never Ray's
  worker script;
* reports and the outcome go from the trial straight to the study's storage
  (SQLite on one machine, PostgreSQL across nodes), so stopping policies see them as
  they do locally.

Timeouts and Ctrl-C cancel the task with ``force=True``; the trial subprocess notices
its parent is gone and kills its process group.
"""

from __future__ import annotations

import select
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frameworm_lightning.runner._launcher import WorkerExit
from frameworm_lightning.runner._payload import STORAGE_URL_ENV, base_payload, portable_url, write_private
from frameworm_lightning.runner._processes import ProcessLauncher
from frameworm_lightning.study import Study, Trial

__all__ = ["RayLauncher", "import_ray", "run_trial_task"]

_CANCEL_WAIT_S = 10.0
_POLL_S = 0.05


def import_ray() -> Any:
    """``import ray``, or an error naming the extra to install."""
    try:
        import ray  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ImportError(
            "executor='ray' needs Ray: install it with pip install 'frameworm-lightning[ray]'."
        ) from None
    return ray


def run_trial_task(payload: dict[str, Any], evaluate_bytes: bytes, env: Mapping[str, str]) -> dict[str, Any]:
    """The body of a trial's Ray task: run the trial in a process of its own on this node.

    The process comes from this node's forkserver (Ray reuses its workers, so the
    imports are paid once per worker); a crash stays in it.
    """
    directory = Path(payload["directory"])
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:  # the search's root_dir is not on this node: keep the trial's files locally
        directory = Path(tempfile.mkdtemp(prefix=f"frameworm-trial_{payload['number']}-"))
    evaluate_path = write_private(directory / "evaluate.pkl", evaluate_bytes)
    payload = {**payload, "directory": str(directory), "evaluate_path": str(evaluate_path)}
    launcher = ProcessLauncher(payload, env[STORAGE_URL_ENV], lambda n: directory, n_jobs=1)
    handle = launcher.launch(payload, directory, env)  # env: Ray's CUDA_VISIBLE_DEVICES is in os.environ
    try:
        while (exit := launcher.poll(handle)) is None:
            handle.process.join(_POLL_S * 20)
    except BaseException:  # cancelled: take the trial's process group down with us
        launcher.kill([handle])
        raise
    finally:
        evaluate_path.unlink(missing_ok=True)
    return {"returncode": exit.returncode, "log_tail": exit.log_tail, "extra": exit.extra,
            "log_path": f"{socket.gethostname()}:{exit.log_path}"}


@dataclass
class _RayHandle:
    ref: Any


class RayLauncher:
    """Starts each trial's worker as a Ray task.

    Args:
        study: the study (its storage must be reachable from the Ray nodes).
        evaluate_bytes: the pickled evaluation (put in Ray's object store once).
        main: how the worker re-imports the search script, or ``None``.
        directory_of: the folder of trial ``n``.
        address: the cluster to join; ``None`` joins ``RAY_ADDRESS`` or starts a local
            one (shut down again at the end of the search). An already initialised
            Ray is used as it is.
        num_cpus / num_gpus: each task's resources.
        n_jobs: trials in flight at once (Ray queues tasks the cluster cannot place yet).
    """

    blocking = False

    def __init__(self, study: Study, evaluate_bytes: bytes, main: tuple[str, str] | None,
                 directory_of: Callable[[int], Path], *, address: str | None = None, num_cpus: float = 1,
                 num_gpus: float = 0, n_jobs: int = 1) -> None:
        ray = import_ray()
        self.ray = ray
        self._owns = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": address, "log_to_driver": False}
            if address is None:
                kwargs["include_dashboard"] = False
            ray.init(**kwargs)
            self._owns = True
        self.payload = base_payload(study, "", main, "ray")
        self.storage_url = portable_url(study.storage.secret_url)
        self.directory_of = directory_of
        self._evaluate = ray.put(evaluate_bytes)
        self._task = ray.remote(run_trial_task).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)

    def start(self, trial: Trial, env: Mapping[str, str]) -> _RayHandle:
        payload = {**self.payload, "trial_id": trial.trial_id, "number": trial.number,
                   "directory": str(self.directory_of(trial.number))}
        return _RayHandle(self._task.remote(payload, self._evaluate, {**env, STORAGE_URL_ENV: self.storage_url}))

    def poll(self, handle: _RayHandle) -> WorkerExit | None:
        done, _ = self.ray.wait([handle.ref], timeout=0)
        if not done:
            return None
        try:
            out = self.ray.get(handle.ref)
        except Exception as err:  # noqa: BLE001 - any Ray failure (lost node, cancelled task)
            return WorkerExit(None, detail=f"the trial's Ray task failed: {type(err).__name__}: {err}"[:4000])
        return WorkerExit(out["returncode"], out["log_tail"], extra=out["extra"], log_path=out["log_path"])

    def wait(self, handles: Sequence[_RayHandle], timeout: float, wake_fd: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ray.wait([h.ref for h in handles], num_returns=1, timeout=0)[0]:
                return
            if select.select([wake_fd], [], [], _POLL_S)[0]:
                return

    def kill(self, handles: Sequence[_RayHandle]) -> None:
        refs = [h.ref for h in handles]
        for ref in refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished
                pass
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=_CANCEL_WAIT_S)

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()
