"""Pull workers: any number of processes, on any machines, sharing one study through its storage.

A worker is the same program as the search — the same ``SearchRunner`` settings, module
and space — started by a scheduler (a SLURM job array, a Kubernetes ``Job`` with
``parallelism: N``, a shell loop) with a storage URL every worker can reach, usually
PostgreSQL. There is no coordinator: each worker claims trials atomically through the
database (``study.ask``), runs them (``n_jobs`` at a time, in worker processes when
needed) and stores their reports, so samplers and stopping policies decide with
everyone's history. Workers can join and leave at any time.

When nothing is left to claim but other workers' trials are still running, a worker
waits (``wait=True``) and re-enqueues trials whose worker died — same host: the
process is gone; other hosts: no heartbeat for ``heartbeat_timeout`` — so a lost
machine's trials are run again by the survivors.

Example (``search.py``, run by each task of a SLURM array)::

    runner = SearchRunner(metric="val_loss", n_trials=200, sampler=GridSampler(),
                          storage=os.environ["FRAMEWORM_STORAGE"], study_name="resnet-lr")
    if __name__ == "__main__":
        runner.worker(MyModule, space, datamodule=MyData)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from frameworm_lightning.result import SearchResult
from frameworm_lightning.runner._parallel import resolve_executor, run_parallel
from frameworm_lightning.runner._progress import TrialPrinter
from frameworm_lightning.runner._serial import run_serial
from frameworm_lightning.space import SearchSpace
from frameworm_lightning.storage import Storage

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from frameworm_lightning.runner._runner import SearchRunner

__all__ = ["run_worker"]


def _is_shared(storage: str | Storage) -> bool:
    if isinstance(storage, Storage):
        return not storage.is_memory
    return storage not in ("memory", ":memory:", "sqlite://", "sqlite:///:memory:")


def run_worker(
    runner: SearchRunner,
    module_cls: type[pl.LightningModule],
    space: Mapping[str, Any] | SearchSpace,
    datamodule: Any = None,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    datamodule_kwargs: Mapping[str, Any] | None = None,
    printer: Any = None,
    wait: bool = True,
) -> SearchResult:
    """Join ``runner``'s study as a pull worker and run trials until none is left to claim.

    Returns the study's :class:`SearchResult` (every worker's trials).

    Raises:
        ValueError: the storage is in memory, which no other process can join.
    """
    storage = runner._storage_url()  # noqa: SLF001 - the runner's own default storage
    if not _is_shared(storage):
        raise ValueError(
            "a pull worker joins a study other processes share, but storage is in memory; use "
            "storage='postgresql://user@host/db' (many machines) or 'sqlite:///path/study.db' (one machine)."
        )
    space = space if isinstance(space, SearchSpace) else SearchSpace(space)
    budget = runner._budget(space)  # noqa: SLF001 - before prepare: a grid too large to finish stores nothing
    study, spec = runner.prepare(module_cls, space, datamodule, model_kwargs, datamodule_kwargs)
    printer = printer if printer is not None else TrialPrinter(runner.metric, runner.mode, enabled=not runner.quiet)
    for t in study.trials:
        printer.observe(t)
    executor = resolve_executor(
        runner.executor, runner.n_jobs, trial_timeout=runner.trial_timeout, gpus_per_trial=runner.gpus_per_trial,
        trainer_kwargs=runner.trainer_kwargs, space=study.space,
    )
    if executor == "inline":
        run_serial(study, spec, budget, printer, stop_on_error=runner.stop_on_error, wait=wait)
    else:
        run_parallel(
            study, spec, budget, runner.n_jobs, printer=printer, stop_on_error=runner.stop_on_error,
            executor=executor, gpus_per_trial=runner.gpus_per_trial, trial_timeout=runner.trial_timeout,
            ray_address=runner.ray_address, linger=wait,
        )
    return SearchResult(study, module_cls=module_cls, datamodule=datamodule)
