"""The seed's function API: ``GridSearch``, ``RandomSearch``, ``BayesianSearch``.

Thin front ends over :class:`~frameworm_lightning.Study` and the samplers: a
``train_fn(config)`` is called with ``base_config`` updated at the space's dotted keys
and returns a float or a dict of metrics holding ``metric``.
"""

from __future__ import annotations

import functools
import inspect
import traceback
import types
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from frameworm_lightning.exceptions import FramewormError, MetricNotFoundError
from frameworm_lightning.result import SearchResult
from frameworm_lightning.runner._progress import TrialPrinter
from frameworm_lightning.runner._loop import recover_trials, run_search
from frameworm_lightning.runner._payload import refuse_nested_search
from frameworm_lightning.runner._forkserver import start_forkserver
from frameworm_lightning.runner._rules import FATAL_ATTR
from frameworm_lightning.runner._signals import is_sigterm
from frameworm_lightning.samplers import GridSampler, RandomSampler, Sampler
from frameworm_lightning.space import SearchSpace
from frameworm_lightning.storage import Storage
from frameworm_lightning.study import Study, Trial, validate_mode

__all__ = ["BayesianSearch", "FunctionSearch", "GridSearch", "RandomSearch", "evaluate_function"]

TrainFn = Callable[..., Any]


def _objective_value(out: Any, metric: str) -> float:
    if isinstance(out, Mapping):
        if metric not in out:
            raise MetricNotFoundError(metric, out.keys(), f"Return it in train_fn's dict ({{{metric!r}: ...}}), "
                                      "or pick one of those as metric=.")
        out = out[metric]
    if hasattr(out, "item"):
        out = out.item()
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise TypeError(f"train_fn must return a number or a dict of metrics holding {metric!r}, but got {out!r}.")
    return float(out)


def _warn_new_leaves(base_config: Mapping[str, Any], keys: Iterable[str]) -> None:
    """Warn about a key that adds a setting to a non-empty section of the base config (a typo?)."""
    for key in keys:
        *parents, leaf = key.split(".")
        node: Any = base_config
        for part in parents:
            node = node[part]  # the path exists: SearchSpace.apply checked it
        if node and leaf not in node:
            where = f"its {'.'.join(parents)!r}" if parents else "it"
            warnings.warn(f"search key {key!r} is not in base_config ({where} has {', '.join(sorted(map(str, node)))}): "
                          "train_fn gets it as a new key; a typo?", UserWarning, stacklevel=3)


def _wants_trial(train_fn: TrainFn) -> bool:
    """Whether ``train_fn(config, trial)`` takes a second argument (to report intermediate values)."""
    try:
        params = [p for p in inspect.signature(train_fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2


def evaluate_function(train_fn: TrainFn, trial: Trial, base_config: Mapping[str, Any] | None, metric: str) -> None:
    """Run ``train_fn`` on the trial's config and store the outcome (never raises for user errors).

    A missing metric, or a result that is not a number, is marked as a failure every trial
    would share (``runner/_rules.py``);
    Ctrl-C and SIGTERM store the trial interrupted and are re-raised.
    """
    returned = False  # whether train_fn returned: a TypeError after it is about what it returned
    try:
        config = trial.study.space.apply(base_config, trial.params)
        out = train_fn(config, trial) if _wants_trial(train_fn) else train_fn(config)
        returned = True
        if trial.should_prune():
            trial.prune(trial.prune_reason)
            return
        trial.complete(_objective_value(out, metric))
    except KeyboardInterrupt:
        trial.interrupt("the search was stopped by SIGINT")
        raise
    except SystemExit as exit_:
        if is_sigterm(exit_):
            trial.interrupt("the search was stopped by SIGTERM")
            raise
        # sys.exit() in train_fn ends this trial, not the search (as in a Lightning trial).
        trial.fail(traceback.format_exc(), reason=f"the trial called sys.exit({exit_.code!r})")
    except Exception as err:  # noqa: BLE001 - a failing configuration fails its trial only
        if isinstance(err, MetricNotFoundError):
            trial.set_system_attr(FATAL_ATTR, {"kind": "metric", "metric": err.metric, "available": err.available,
                                                 "fix": err.fix})
        elif returned and isinstance(err, TypeError):  # no number in what train_fn returns: nor in any trial's
            trial.set_system_attr(FATAL_ATTR, {"kind": "config", "error": f"TypeError: {err}",
                                                 "when": "its first result"})
        trial.fail(traceback.format_exc())


class FunctionSearch:
    """A search that calls ``train_fn(config)`` for each trial. Subclasses pick the sampler.

    Args:
        base_config: the configuration each trial starts from (never mutated).
        search_space: dotted keys to dimensions or lists of values.
        metric: the key of ``train_fn``'s returned dict to optimise (a plain float is taken as is).
        mode: ``"min"`` or ``"max"``.
        n_trials: the trial budget (counting trials already stored in the study).
        sampler: the sampler.
        storage: a database URL or :class:`Storage`; by default trials live in memory.
        study_name: the study's name (a fresh one by default).
        retry_failed: re-run stored trials that failed by their own error.
        allow_sampler_change: resume a study another sampler (or grid resolution) searched.
        stop_on_error: raise at the first failing trial instead of going on.
        verbose: print one line per finished trial.
    """

    def __init__(
        self,
        base_config: Mapping[str, Any] | None,
        search_space: Mapping[str, Any] | SearchSpace,
        metric: str = "val_loss",
        mode: str = "min",
        n_trials: int | None = None,
        sampler: Sampler | None = None,
        storage: str | Storage | None = None,
        study_name: str | None = None,
        retry_failed: bool = False,
        allow_sampler_change: bool = False,
        stop_on_error: bool = False,
        verbose: bool = True,
    ) -> None:
        validate_mode(mode)
        if n_trials is not None and (not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1):
            raise ValueError(f"n_trials must be a positive integer, but got n_trials={n_trials!r}.")
        self.base_config = dict(base_config or {})
        self.space = search_space if isinstance(search_space, SearchSpace) else SearchSpace(search_space)
        # Fail now, before any training, if a key has no place in the base config.
        self.space.apply(self.base_config, self.space.decode([0.5] * self.space.dim))
        _warn_new_leaves(self.base_config, self.space.keys())
        self.metric = metric
        self.mode = mode
        self.sampler = sampler or RandomSampler()
        self.n_trials = n_trials
        self.storage = storage
        self.study_name = study_name or f"search-{uuid.uuid4().hex[:8]}"
        self.retry_failed = retry_failed
        self.allow_sampler_change = allow_sampler_change
        self.stop_on_error = stop_on_error
        self.verbose = verbose
        self.study: Study | None = None
        self.result: SearchResult | None = None

    def _budget(self) -> int:
        return self.sampler.budget(self.space, self.n_trials)

    def open_study(self) -> Study:
        """Create or resume the study (done by :meth:`run`; useful to ``enqueue`` first)."""
        if self.study is None:
            self.study = Study.create(self.study_name, self.space, metric=self.metric, mode=self.mode,
                                      sampler=self.sampler, storage=self.storage,
                                      allow_sampler_change=self.allow_sampler_change)
        return self.study

    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Evaluate ``params`` before any sampled configuration."""
        self.open_study().enqueue(params)

    def run(self, train_fn: TrainFn, n_jobs: int = 1) -> tuple[dict[str, Any], float]:
        """Run the search; return ``(best_config, best_score)``.

        ``train_fn(config)`` (or ``train_fn(config, trial)`` to report intermediate
        values with ``trial.report(step, value)``) returns a float or a dict of metrics.
        A raising ``train_fn`` or a NaN result fails that trial and the search goes on;
        a result without ``metric`` while no trial has completed stops the search with
        :class:`MetricNotFoundError`. SIGTERM and Ctrl-C store the running trial
        interrupted (run first on resume) and start nothing new.

        Raises:
            FramewormError: no trial completed (the message holds the last error).
            SIGTERMException: (exit status 143) SIGTERM stopped the search.
        """
        refuse_nested_search()
        if not isinstance(n_jobs, int) or n_jobs < 1:
            raise ValueError(f"n_jobs must be a positive integer, but got n_jobs={n_jobs!r}.")
        if n_jobs > 1 and isinstance(train_fn, types.FunctionType) and (
                "<locals>" in train_fn.__qualname__ or train_fn.__name__ == "<lambda>"):
            raise ValueError(
                "n_jobs > 1 runs train_fn in worker processes, which import it by name, so it must be a "
                f"function defined at module level; {train_fn.__qualname__!r} is a lambda or a nested function."
            )
        budget = self._budget()  # a grid too large to finish fails here, before the study is stored
        if n_jobs > 1:
            start_forkserver()  # its imports overlap the set-up below
        study = self.open_study()
        printer = TrialPrinter(self.metric, self.mode, enabled=self.verbose)
        for t in study.trials:
            printer.observe(t)
        recover_trials(study, printer, retry_failed=self.retry_failed)  # shows the interrupted ones
        run_search(
            study, functools.partial(evaluate_function, train_fn, base_config=self.base_config, metric=self.metric),
            executor="process" if n_jobs > 1 else "inline", budget=budget, what="train_fn and base_config",
            n_jobs=n_jobs, printer=printer,
            stop_on_error=self.stop_on_error,
        )
        self.result = SearchResult(study)
        if self.result.best_trial is None:
            failed = [t for t in self.result.trials if t.error]
            last = failed[-1].error.strip().splitlines()[-1] if failed and failed[-1].error else "none ran"
            raise FramewormError(f"no trial completed in study {study.name!r}; last error: {last}")
        return self.best_config, self.result.best_score  # type: ignore[return-value]

    @property
    def best_config(self) -> dict[str, Any]:
        """``base_config`` with the best trial's params applied."""
        if self.result is None or self.result.best_params is None:
            raise FramewormError("no best configuration yet: call run() first.")
        return self.space.apply(self.base_config, self.result.best_params)

    @property
    def best_score(self) -> float | None:
        return None if self.result is None else self.result.best_score


class GridSearch(FunctionSearch):
    """Exhaustive search over every combination of the listed values.

    Example:
        >>> search = GridSearch(base_config={"training": {"lr": 0.1, "batch_size": 32}},
        ...                     search_space={"training.lr": [0.001, 0.0001], "training.batch_size": [64, 128]},
        ...                     metric="val_loss", mode="min", verbose=False)
        >>> best_config, best_score = search.run(lambda c: c["training"]["lr"] * c["training"]["batch_size"])
        >>> best_config["training"], best_score
        ({'lr': 0.0001, 'batch_size': 64}, 0.0064)
    """

    def __init__(
        self,
        base_config: Mapping[str, Any] | None,
        search_space: Mapping[str, Any] | SearchSpace,
        metric: str = "val_loss",
        mode: str = "min",
        n_trials: int | None = None,
        grid_points: int | None = None,
        shuffle: bool = False,
        random_state: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_config, search_space, metric, mode, n_trials,
                         sampler=GridSampler(grid_points=grid_points, shuffle=shuffle, seed=random_state), **kwargs)


class RandomSearch(FunctionSearch):
    """Independent random draws (log-uniform for ``log=True`` dimensions).

    Example:
        >>> from frameworm_lightning.search.space import Real
        >>> search = RandomSearch(base_config={}, search_space={"x": Real(-1, 1)}, metric="loss",
        ...                       n_trials=20, random_state=0, verbose=False)
        >>> _, score = search.run(lambda c: c["x"] ** 2)
        >>> score < 0.05
        True
    """

    def __init__(
        self,
        base_config: Mapping[str, Any] | None,
        search_space: Mapping[str, Any] | SearchSpace,
        metric: str = "val_loss",
        mode: str = "min",
        n_trials: int = 20,
        random_state: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_config, search_space, metric, mode, n_trials,
                         sampler=RandomSampler(seed=random_state), **kwargs)


class BayesianSearch(FunctionSearch):
    """Gaussian-process Bayesian optimisation (:class:`~frameworm_lightning.BayesianSampler`).

    The first ``n_initial_points`` trials come from a scrambled Sobol sequence, then each
    trial maximises the acquisition function (``"logei"``, ``"ei"``, ``"pi"``, ``"ucb"``,
    ``"lcb"`` or the ``"hedge"`` portfolio) on the GP fitted to every stored trial.

    Example:
        >>> from frameworm_lightning.search.space import Real
        >>> search = BayesianSearch(base_config={}, search_space={"x": Real(-2, 2)}, metric="loss",
        ...                         n_trials=12, n_initial_points=4, acquisition="ei", random_state=0,
        ...                         verbose=False)
        >>> _, score = search.run(lambda c: (c["x"] - 0.5) ** 2)
        >>> score < 0.01
        True
    """

    def __init__(
        self,
        base_config: Mapping[str, Any] | None,
        search_space: Mapping[str, Any] | SearchSpace,
        metric: str = "val_loss",
        mode: str = "min",
        n_trials: int = 50,
        n_initial_points: int = 10,
        acquisition: str = "logei",
        random_state: int | None = None,
        sampler_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from frameworm_lightning.samplers._bayes import BayesianSampler  # noqa: PLC0415 - imports GPyTorch

        sampler = BayesianSampler(seed=random_state, n_initial_points=n_initial_points, acquisition=acquisition,
                                  **dict(sampler_kwargs or {}))
        super().__init__(base_config, search_space, metric, mode, n_trials, sampler=sampler, **kwargs)
