"""``SearchRunner``: a search over a LightningModule's hyperparameters, one Trainer per trial."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from frameworm_lightning.exceptions import ConfigKeyError, SamplerError
from frameworm_lightning.result import SearchResult
from frameworm_lightning.runner._artifacts import RUNNER_ATTR, claim_trial_folders, remove_checkpoints, runner_record
from frameworm_lightning.runner._execute import (
    TrialSpec, checkpointing, execute_trial, trainer_limits, trial_callbacks, trial_dir,
)
from frameworm_lightning.runner._gpus import validate_gpus_per_trial
from frameworm_lightning.runner._launcher import resolve_executor, validate_executor
from frameworm_lightning.runner._loggers import check_loggers
from frameworm_lightning.runner._loop import recover_trials, run_search, schedulers_in
from frameworm_lightning.runner._payload import refuse_nested_search
from frameworm_lightning.runner._forkserver import start_forkserver
from frameworm_lightning.runner._progress import TrialPrinter
from frameworm_lightning.runner._routing import (
    check_given, check_keys, check_paths, check_required, check_types, search_targets,
)
from frameworm_lightning.samplers import RandomSampler, Sampler
from frameworm_lightning.space import SearchSpace
from frameworm_lightning.storage import Storage, masked_url
from frameworm_lightning.study import Study, Trial, validate_mode

__all__ = ["SearchRunner"]

_log = logging.getLogger("frameworm_lightning")


class SearchRunner:
    """Searches a LightningModule's hyperparameters, building one ``Trainer`` per trial.

    Space keys route to their target: plain or ``model.`` keys to the module's
    ``__init__``, ``data.`` keys to the datamodule class, ``trainer.`` keys to the
    ``Trainer``. Trials are stored in ``storage`` (by default the SQLite file
    ``<root_dir>/frameworm.db``), so running the same search again resumes it.

    Args:
        metric: the logged metric to optimise (read from ``trainer.callback_metrics``).
        mode: ``"min"`` or ``"max"``.
        sampler: any :class:`~frameworm_lightning.Sampler` (default: ``RandomSampler(seed)``).
        n_trials: the study's trial budget, counting stored trials. ``None`` runs a
            bounded sampler (a grid) to its end.
        trainer_kwargs: base arguments of every trial's ``Trainer``.
        storage: a database URL (``sqlite:///...``, ``postgresql://...``, ``"memory"``)
            or a :class:`~frameworm_lightning.Storage`.
        study_name: the study's name in storage (default: the module class's name).
        root_dir: trials write to ``root_dir/<study>/trial_<n>/``.
        seed: trial ``n`` runs under ``seed_everything(seed + n)``.
        objective: ``"last"`` (value at the end of training) or ``"best"`` (best reported).
        callbacks: extra Lightning callbacks for every trial (deep-copied per trial).
        retry_failed: re-run trials that failed by their own error.
        allow_sampler_change: resume a study that another sampler (or grid resolution)
            searched; without it that is a :class:`StudyMismatchError`, since their
            points would mix (a grid would skip or repeat points).
        stop_on_error: end the search (raising :class:`TrialFailed`) at the first failure.
        quiet: no per-trial lines, progress bars or Lightning info logs.
        n_jobs: trials run at once, each in its own worker process.
        executor: where trials run (``docs/parallel.md``): ``"auto"`` (default) runs them
            in this process when ``n_jobs=1`` and nothing below needs a worker process,
            else ``"process"``; ``"inline"``: always in this process; ``"process"``: each
            trial in a fresh worker process (crashes, timeouts and DDP relaunches stay
            inside it); ``"ray"``: each trial as a Ray task (``pip install
            'frameworm-lightning[ray]'``).
        gpus_per_trial: GPUs each trial gets through ``CUDA_VISIBLE_DEVICES``: a fraction
            such as ``0.5`` (two small trials per GPU), or a whole number for a DDP trial
            (``trainer.devices=2``); ``0`` hides the GPUs; ``None`` (default) leaves them alone.
        trial_timeout: seconds after which a trial's worker is killed and the trial stored
            ``FAILED``; ``None`` for no limit.
        ray_address: the Ray cluster to join (``ray.init(address=...)``) with
            ``executor="ray"``; ``None`` joins ``RAY_ADDRESS`` or starts a local one.
        loggers: each trial's Lightning loggers: ``"csv"`` (default), ``"tensorboard"``,
            ``"mlflow"``, ``"wandb"``, a Logger class, ``functools.partial`` of one, a
            factory ``f(context) -> Logger``, or a list; trial ``n`` is named
            ``<study>/trial_<n>``. ``False`` for none.
        keep_checkpoints: ``"all"``, or ``"best"`` to delete every trial's checkpoint
            but the best trial's as the search goes.

    Example:
        >>> from lightning.pytorch.demos.boring_classes import BoringModel  # doctest: +SKIP
        >>> runner = SearchRunner(metric="val_loss", n_trials=4, trainer_kwargs={"max_epochs": 1})  # doctest: +SKIP
        >>> result = runner.fit(MyModule, {"lr": Real(1e-4, 1e-1, log=True)}, datamodule=MyData)  # doctest: +SKIP
        >>> result.best_params  # doctest: +SKIP
    """

    def __init__(
        self,
        metric: str = "val_loss",
        mode: str = "min",
        sampler: Sampler | None = None,
        n_trials: int | None = 20,
        trainer_kwargs: Mapping[str, Any] | None = None,
        storage: str | Storage | None = None,
        study_name: str | None = None,
        root_dir: str | Path = "runs",
        seed: int | None = 0,
        objective: str = "last",
        callbacks: Sequence[Callback] = (),
        retry_failed: bool = False,
        allow_sampler_change: bool = False,
        stop_on_error: bool = False,
        quiet: bool = False,
        n_jobs: int = 1,
        executor: str = "auto",
        gpus_per_trial: float | None = None,
        trial_timeout: float | None = None,
        ray_address: str | None = None,
        save_checkpoints: bool = True,
        loggers: Any = None,
        keep_checkpoints: str = "all",
    ) -> None:
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty string, but got metric={metric!r}.")
        validate_mode(mode)
        if sampler is not None and not isinstance(sampler, Sampler):
            raise SamplerError(f"sampler must be a frameworm_lightning Sampler, but got sampler={sampler!r}.")
        if n_trials is not None and (not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1):
            raise ValueError(f"n_trials must be a positive integer or None, but got n_trials={n_trials!r}.")
        if objective not in ("last", "best"):
            raise ValueError(f"objective must be 'last' or 'best', but got objective={objective!r}.")
        if not isinstance(n_jobs, int) or n_jobs < 1:
            raise ValueError(f"n_jobs must be a positive integer, but got n_jobs={n_jobs!r}.")
        self.executor = validate_executor(executor, n_jobs)
        self.gpus_per_trial = validate_gpus_per_trial(gpus_per_trial)
        if trial_timeout is not None and (isinstance(trial_timeout, bool) or not isinstance(trial_timeout, (int, float))
                                          or not trial_timeout > 0):
            raise ValueError(f"trial_timeout must be a positive number of seconds or None, but got {trial_timeout=!r}.")
        if ray_address is not None and executor != "ray":
            raise ValueError(f"ray_address is only used with executor='ray', but got executor={executor!r}.")
        self.trial_timeout = trial_timeout
        self.ray_address = ray_address
        self.metric = metric
        self.mode = mode
        self.sampler = sampler if sampler is not None else RandomSampler(seed=seed)
        self.n_trials = n_trials
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.storage = storage
        self.study_name = study_name
        self.root_dir = str(root_dir)
        self.seed = seed
        self.objective = objective
        self.callbacks = list(callbacks)
        self.retry_failed = retry_failed
        self.allow_sampler_change = allow_sampler_change
        self.stop_on_error = stop_on_error
        self.quiet = quiet
        self.n_jobs = n_jobs
        self.save_checkpoints = save_checkpoints
        check_loggers(loggers)
        if keep_checkpoints not in ("all", "best"):
            raise ValueError(f"keep_checkpoints must be 'all' or 'best', but got keep_checkpoints={keep_checkpoints!r}.")
        self.loggers = loggers
        self.keep_checkpoints = keep_checkpoints
        self._check_checkpointing()
        for cb in trial_callbacks(self.callbacks, self.trainer_kwargs):
            check = getattr(cb, "check_search", None)  # a stopping policy: its monitor and mode against the search's
            if callable(check):
                check(metric, mode)

    # Set-up -----------------------------------------------------------------------------
    def _storage_url(self) -> str | Storage:
        if self.storage is not None:
            return self.storage
        return f"sqlite:///{Path(self.root_dir).resolve() / 'frameworm.db'}"

    def _budget(self, space: SearchSpace) -> int:
        return self.sampler.budget(space, self.n_trials)

    def prepare(
        self,
        module_cls: type[pl.LightningModule],
        space: Mapping[str, Any] | SearchSpace,
        datamodule: Any = None,
        model_kwargs: Mapping[str, Any] | None = None,
        datamodule_kwargs: Mapping[str, Any] | None = None,
        enqueue: Iterable[Mapping[str, Any]] = (),
        build_trial: Callable[[Trial], tuple[pl.LightningModule, Any]] | None = None,
    ) -> tuple[Study, TrialSpec]:
        """Validate everything, open (or resume) the study and describe its trials.

        All user errors (bad space, unknown key, mismatched stored study) are raised
        here, before any training starts. Trials an earlier run left are recovered by
        the caller (:func:`~frameworm_lightning.runner._loop.recover_trials`), which shows them.
        """
        if not (inspect.isclass(module_cls) and issubclass(module_cls, pl.LightningModule)):
            raise TypeError(f"module_cls must be a LightningModule class, but got {module_cls!r}.")
        if datamodule is not None and not (isinstance(datamodule, pl.LightningDataModule) or (
                inspect.isclass(datamodule) and issubclass(datamodule, pl.LightningDataModule))):
            raise TypeError(
                f"datamodule must be a LightningDataModule class or instance (or None), but got {datamodule!r}; "
                "wrap DataLoaders with LightningDataModule.from_datasets(train_dataset=..., val_dataset=...), or "
                "give the module train_dataloader/val_dataloader methods."
            )
        space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        dm_target = datamodule if inspect.isclass(datamodule) else None
        targets = {"model": module_cls, "data": dm_target, "trainer": pl.Trainer}
        given = {"model": model_kwargs or {}, "data": datamodule_kwargs or {}, "trainer": self.trainer_kwargs}
        check_keys(space.keys(), {**targets, **search_targets(self.callbacks)})
        check_types(space, targets)
        if build_trial is None:  # a builder completes the model's and datamodule's arguments itself
            check_given(targets, given)
            check_required(space.keys(), targets, given)
        else:
            check_given(targets, {"trainer": self.trainer_kwargs})
        check_paths(space.keys(), targets, given)
        self._check_limits_not_searched(space)
        storage, root_dir = self._storage_url(), self.root_dir
        if self.trainer_kwargs.get("fast_dev_run"):
            # A debug run (a batch or a few per trial) is never stored: its scores would pollute the study.
            shown = masked_url(storage) if isinstance(storage, str) else storage
            storage, root_dir = "memory", str(Path(self.root_dir) / "fast_dev_run")
            _log.warning("fast_dev_run: a debug run of the search; its trials are kept in memory, not in %s, "
                         "and write to %s.", shown, root_dir)
        study = Study.create(
            self.study_name or module_cls.__name__, space, metric=self.metric, mode=self.mode,
            sampler=self.sampler, storage=storage, allow_sampler_change=self.allow_sampler_change,
        )
        claim_trial_folders(root_dir, study)  # another study of that name elsewhere: an error
        for params in enqueue:
            study.enqueue(params)
        spec = TrialSpec(
            module_cls=module_cls, datamodule=datamodule, model_kwargs=dict(model_kwargs or {}),
            data_kwargs=dict(datamodule_kwargs or {}), trainer_kwargs=dict(self.trainer_kwargs),
            objective=self.objective, root_dir=root_dir,
            study_name=study.name, seed=self.seed, callbacks=list(self.callbacks),
            save_checkpoint=self.save_checkpoints, quiet=self.quiet, loggers=self.loggers, build_trial=build_trial,
        )
        limits = trainer_limits(trial_callbacks(spec.callbacks, spec.trainer_kwargs))  # as each trial's Trainer gets
        study.storage.set_study_attr(study.study_id, RUNNER_ATTR, runner_record(spec, study, limits))
        return study, spec

    def _check_limits_not_searched(self, space: SearchSpace) -> None:
        """Refuse a ``trainer.*`` key that a scheduler's ``trainer_limits()`` would overwrite in every trial,
        and a ``max_steps`` (given or searched) that would end trials before a budget in epochs."""
        for cb in trial_callbacks(self.callbacks, self.trainer_kwargs):
            limits = trainer_limits([cb])
            for name, value in limits.items():
                if f"trainer.{name}" in space.keys():
                    raise ConfigKeyError(
                        f"trainer.{name} cannot be searched: {type(cb).__name__} sets it to {value} (from its max_resource) "
                        "in every trial; remove it from the space (the policy gives each trial its budget)."
                    )
            steps = "trainer.max_steps" in space.keys() or self.trainer_kwargs.get("max_steps") not in (None, -1)
            if "max_epochs" in limits and "max_steps" not in limits and steps:
                name = type(cb).__name__
                raise ConfigKeyError(
                    f"max_steps may end trials before {name}'s max_resource ({limits['max_epochs']} epochs): Lightning stops "
                    "at whichever comes first; remove it (the policy gives each trial its budget), or use "
                    f"{name}(resource='steps') to budget in steps."
                )

    def _check_checkpointing(self) -> None:
        """Refuse a halving scheduler that pauses and resumes trials when checkpoints are off."""
        if checkpointing(self.trainer_kwargs):
            return
        for cb in trial_callbacks(self.callbacks, self.trainer_kwargs):
            if getattr(cb, "pauses_trials", False) is True:  # halving resumes promoted trials from a checkpoint
                name = type(cb).__name__
                raise ValueError(
                    f"{name} pauses trials (halving with promotion=True) and resumes the promoted ones from a "
                    "checkpoint, but trainer_kwargs has enable_checkpointing=False; pass promotion=False to the "
                    "halving policy to prune at the rungs instead, or remove enable_checkpointing=False."
                )

    # Running ----------------------------------------------------------------------------
    def fit(
        self,
        module_cls: type[pl.LightningModule],
        space: Mapping[str, Any] | SearchSpace,
        datamodule: Any = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        datamodule_kwargs: Mapping[str, Any] | None = None,
        enqueue: Iterable[Mapping[str, Any]] = (),
        printer: TrialPrinter | None = None,
        build_trial: Callable[[Trial], tuple[pl.LightningModule, Any]] | None = None,
    ) -> SearchResult:
        """Run (or resume) the search and return its :class:`SearchResult`.

        Args:
            module_cls: the LightningModule class to search.
            space: dotted keys to dimensions (``Real``, ``Integer``, ``Categorical``, lists).
            datamodule: a LightningDataModule class (configurable by ``data.*`` keys) or
                instance; ``None`` if the module has its own dataloaders.
            model_kwargs / datamodule_kwargs: fixed arguments the trial params complete.
            enqueue: configurations to evaluate first (warm start); skipped if already stored.
            printer: shown each finished trial (``printer(frozen)``) and each stored one
                (``printer.observe(frozen)``); default a :class:`TrialPrinter` (none if ``quiet``).
            build_trial: ``f(trial) -> (module, datamodule)``, called in the trial's process after
                seeding, builds each trial's module and datamodule in place of ``module_cls(**model
                args)`` and ``datamodule(**data args)`` (``frameworm-search`` lets LightningCLI build
                them, argument links included); ``module_cls`` and ``datamodule`` still name the
                classes the space's keys configure. It must pickle when trials run in processes.
        """
        return self._run(module_cls, space, datamodule, model_kwargs, datamodule_kwargs, enqueue, printer,
                         linger=False, build_trial=build_trial)

    def _run(self, module_cls: type[pl.LightningModule], space: Mapping[str, Any] | SearchSpace, datamodule: Any,
             model_kwargs: Mapping[str, Any] | None, datamodule_kwargs: Mapping[str, Any] | None,
             enqueue: Iterable[Mapping[str, Any]], printer: TrialPrinter | None, *, linger: bool,
             build_trial: Callable[[Trial], tuple[pl.LightningModule, Any]] | None = None) -> SearchResult:
        refuse_nested_search()
        space = space if isinstance(space, SearchSpace) else SearchSpace(space)
        budget = self._budget(space)  # a grid too large to finish fails here, before the study is stored
        executor = resolve_executor(self.executor, self.n_jobs, trial_timeout=self.trial_timeout,
                                    gpus_per_trial=self.gpus_per_trial, trainer_kwargs=self.trainer_kwargs, space=space)
        if executor == "process":
            start_forkserver()  # its imports overlap the set-up below
        study, spec = self.prepare(module_cls, space, datamodule, model_kwargs, datamodule_kwargs, enqueue, build_trial)
        printer = printer if printer is not None else TrialPrinter(self.metric, self.mode, enabled=not self.quiet)
        for t in study.trials:
            printer.observe(t)
        recover_trials(study, printer, retry_failed=self.retry_failed)  # shows the interrupted ones
        root = Path(spec.root_dir)
        if executor != "inline":  # workers may start in another folder
            root = root.resolve()
            spec = dataclasses.replace(spec, root_dir=str(root))
        keep_best = self.keep_checkpoints == "best"
        run_search(
            study, functools.partial(execute_trial, spec), executor=executor, budget=budget,
            what="the LightningModule, datamodule and callbacks",
            directory_of=lambda n: trial_dir(root, spec.study_name, n), run_dir=root / spec.study_name / ".frameworm",
            n_jobs=self.n_jobs, schedulers=schedulers_in(trial_callbacks(spec.callbacks, spec.trainer_kwargs)),
            printer=printer,
            stop_on_error=self.stop_on_error, trial_timeout=self.trial_timeout, gpus_per_trial=self.gpus_per_trial,
            ray_address=self.ray_address, linger=linger, after_trial=remove_checkpoints if keep_best else None,
        )
        if keep_best:
            remove_checkpoints(study)
        return SearchResult(study, module_cls=module_cls, datamodule=datamodule)

    def worker(
        self,
        module_cls: type[pl.LightningModule],
        space: Mapping[str, Any] | SearchSpace,
        datamodule: Any = None,
        *,
        model_kwargs: Mapping[str, Any] | None = None,
        datamodule_kwargs: Mapping[str, Any] | None = None,
        printer: TrialPrinter | None = None,
        wait: bool = True,
        build_trial: Callable[[Trial], tuple[pl.LightningModule, Any]] | None = None,
    ) -> SearchResult:
        """Join this search as one of many pull workers (SLURM, Kubernetes...) sharing its storage.

        A worker is the same program as the search (the same settings, module and space),
        started any number of times by a scheduler with a storage every worker can reach,
        usually PostgreSQL. There is no coordinator: each worker claims trials atomically
        through the database, runs them (``n_jobs`` at a time) and stores their reports,
        so samplers and stopping policies decide with everyone's history. Workers can join
        and leave at any time. With ``wait``, a worker with nothing left to claim waits for
        the others' trials and re-runs those whose worker died (same host: the process is
        gone; other hosts: no heartbeat for ``heartbeat_timeout``). Arguments are those of
        :meth:`fit`; returns the study's :class:`SearchResult` (every worker's trials).
        See ``docs/parallel.md``.

        Raises:
            ValueError: the storage is in memory, which no other process can join.
        """
        storage = self._storage_url()
        memory = storage.is_memory if isinstance(storage, Storage) else storage in (
            "memory", ":memory:", "sqlite://", "sqlite:///:memory:")
        if memory:
            raise ValueError(
                "a pull worker joins a study other processes share, but storage is in memory; use "
                "storage='postgresql://user@host/db' (many machines) or 'sqlite:///path/study.db' (one machine)."
            )
        return self._run(module_cls, space, datamodule, model_kwargs, datamodule_kwargs, (), printer, linger=wait,
                         build_trial=build_trial)
