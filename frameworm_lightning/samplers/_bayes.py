"""Bayesian optimisation with a Gaussian-process surrogate (GPyTorch).

The GP mathematics lives in :mod:`frameworm_lightning._gp`; this module turns a study's
history into training data and runs one suggestion. Everything a suggestion carries over
to the next (the fitted hyperparameters, the hedge portfolio's proposals) is stored with
the trial in ``system_attrs``, so the sampler object holds no state beyond caches: any
worker, or a resumed search, makes the same suggestion from the same history.

``system_attrs`` written on each trial:
    ``bo``: ``"initial"`` (Sobol design), ``"gp"``, ``"fallback"`` (numerical failure) or
    ``"exhausted"``; ``bo_acquisition``: the acquisition that chose the point; ``bo_gp``:
    the hyperparameters (``lengthscale``, ``outputscale``, ``noise``, and ``n``, the
    number of observations they were fitted on); ``bo_hedge``: each arm's proposal in the
    unit cube (``acquisition="hedge"`` only); ``bo_cost``: with a ``cost``, the costs the
    cost model was fitted on (``n``) and its predicted cost of the suggested point
    (``predicted``, in the cost's unit; absent while fewer than two costs differ).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from frameworm_lightning._gp.acquisition import (
    COST_AWARE,
    HEDGE_ARMS,
    CostWeighted,
    FixedColumns,
    TrustRegion,
    build_acquisition,
    hedge_probabilities,
    validate_acquisition,
)
from frameworm_lightning._gp.encoding import ModelEncoding, sobol_points
from frameworm_lightning._gp.gp import (
    DTYPE,
    HIGH_DIM,
    NOISE_FLOOR,
    GPModel,
    GPNumericalError,
    GPPosterior,
    fit_gp,
    standardize,
    torch_threads,
    warp_targets,
)
from frameworm_lightning._gp.optim import optimize_acquisition
from frameworm_lightning.exceptions import SpaceError
from frameworm_lightning.samplers._base import AskContext, Sampler, Suggestion
from frameworm_lightning.space import SearchSpace
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["BayesianSampler"]

PENDING_STRATEGIES = ("believer", "liar_best", "liar_mean", "liar_worst")
PRUNED_RULES = ("worst", "exclude")

# Salts of Sampler.rng, one per use, so no two uses share a stream.
_SALT_SOBOL_INIT = 11
_SALT_RAW = 12
_SALT_FIT = 13
_SALT_HEDGE = 14
_SALT_FALLBACK = 15

# Hyperparameters are reused without a fit from this many observations on, until the
# data have grown by this fraction since they were fitted. From the size of the default
# initial design: a fit on 10 points serves the 11th (measured: a third less time a
# suggestion at 20 trials, the same rank on the public suite; docs/bayesian.md).
_REUSE_FROM = 10
_REUSE_GROWTH = 0.05
_REUSE_MIN_GROWTH = 2  # so at least every other suggestion skips the fit
# Hyperparameters are fitted on a random subset of at most this many observations.
_FIT_SUBSET = 300

# Two points whose discrete columns agree and whose continuous columns differ by less
# than this (in the unit cube) are the same point.
_DUPLICATE_TOL = 1e-6
# A suggestion keeps at least this far (max-norm over continuous columns of the unit cube,
# with equal discrete columns) from every pending trial, so that parallel workers never
# evaluate the same point twice, whatever the acquisition's landscape.
_PENDING_GAP = 1e-3
# Past this many ordered columns, a perturbation of an incumbent moves a random subset of
# about this many of them (see _perturbations).
_PERTURB_DIMS = HIGH_DIM
# While trials are pending, a suggestion stays in a box around the best evaluated point
# whose side in column i is this times lengthscale_i / (the geometric mean of the
# lengthscales), in the unit cube: the pending workers already explore, the one asking
# refines (measured on the public suite with four asynchronous workers against sides 0.2
# and 0.8 and against no box, docs/bayesian.md). With no pending trial there is no box.
_PENDING_BOX_SIDE = 0.4


class BayesianSampler(Sampler):
    """GP Bayesian optimisation: a Sobol initial design, then one acquisition maximiser per trial.

    The surrogate is an exact GP (Matérn-5/2, one lengthscale per dimension, a
    dimension-scaled lengthscale prior, learned noise above a floor) on the space's
    unit-cube encoding, with log dimensions in log space, integers searched over their
    values and categoricals compared by equality. See ``docs/bayesian.md``.

    Args:
        seed: makes the suggestions reproducible (with the same history, the same points).
        n_initial_points: the size of the initial design: until this many trials have
            values or are running (and at least half of them have values), trial ``n``
            takes the ``n``-th point of a seeded scrambled Sobol sequence. Enqueued and
            previously stored trials count.
        acquisition: ``"logei"`` (default), ``"ei"``, ``"pi"``, ``"ucb"``/``"lcb"``
            (the optimistic bound, weighted by ``beta``) or ``"hedge"`` (a GP-Hedge
            portfolio of ``logei``, ``pi`` and ``ucb``).
        beta: the exploration weight of ``ucb``/``lcb``: ``mean + sqrt(beta) * std``.
        pending_strategy: how running and enqueued trials enter the GP, so that
            parallel workers spread out: ``"believer"`` (kriging believer: the posterior
            mean as a fantasy value, the default), or a constant liar with the best, mean
            or worst observed value (``"liar_best"``, ``"liar_mean"``, ``"liar_worst"``).
        pruned: ``"worst"`` (default): a pruned trial enters the GP with the worst value
            among complete trials (a known-bad region, never an invented good value);
            ``"exclude"``: pruned trials are ignored. Failed trials are always ignored.
        hedge_eta: the learning rate of the ``hedge`` portfolio.
        n_candidates: the raw Sobol candidates scored per suggestion.
        n_starts: the local searches (L-BFGS-B + exact discrete search) per suggestion.
        refit_every: a hyperparameter fit with a random restart every this many
            observations; in between, the fit warm-starts from the previous one (or, from
            10 observations on, reuses it until the data grow by 5% and by two points).
        warp_outputs: fit the GP to a Yeo-Johnson transform of the values (monotone, so
            the best trial stays the best), which tames heavy-tailed objectives.
        n_threads: torch intra-op threads during a suggestion (``None``: leave as is).
        cost: make the acquisition cost-aware: ``None`` (default: cost-blind),
            ``"duration"`` (a trial's cost is its stored duration, ``completed_at -
            started_at``) or a function of a :class:`FrozenTrial` returning its cost (a
            positive number, or ``None`` when unknown). A second GP is fitted on the log
            costs of the trials that have one (running trials with a known cost too), and
            the acquisition becomes ``EI(x) / c(x) ** cost_exponent`` with ``c`` that GP's
            prediction (expected improvement per second, Snoek et al., 2012), so cheap
            points win ties and slow ones must promise more. Needs an improvement
            acquisition (``logei``, ``ei``, ``pi``). Under a
            :class:`~frameworm_lightning.samplers.MultiFidelitySampler`, ``"duration"`` is
            each configuration's seconds per unit of resource.
        cost_exponent: the weight of the cost, ``> 0`` (1: improvement per unit of cost;
            smaller values weigh the cost less).

    Example:
        >>> from frameworm_lightning import BayesianSampler, Real, Study
        >>> study = Study.create("bo-demo", {"x": Real(-2.0, 2.0)}, metric="loss", mode="min",
        ...                      sampler=BayesianSampler(seed=0, n_initial_points=4))
        >>> while (trial := study.ask(budget=12)) is not None:
        ...     _ = trial.complete((trial.params["x"] - 0.5) ** 2)
        >>> abs(study.best_trial.params["x"] - 0.5) < 0.1
        True
    """

    def __init__(
        self,
        seed: int | None = None,
        n_initial_points: int = 10,
        acquisition: str = "logei",
        beta: float = 2.0,
        pending_strategy: str = "believer",
        pruned: str = "worst",
        hedge_eta: float = 1.0,
        n_candidates: int = 1024,
        n_starts: int = 4,
        refit_every: int = 10,
        warp_outputs: bool = True,
        n_threads: int | None = 1,
        cost: str | Callable[[FrozenTrial], float | None] | None = None,
        cost_exponent: float = 1.0,
    ) -> None:
        super().__init__(seed=seed)
        if isinstance(n_initial_points, bool) or not isinstance(n_initial_points, int) or n_initial_points < 0:
            raise ValueError(
                f"n_initial_points must be an integer >= 0, but got n_initial_points={n_initial_points!r}."
            )
        self.acquisition = validate_acquisition(acquisition)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be a finite number >= 0, but got beta={beta!r}.")
        if pending_strategy not in PENDING_STRATEGIES:
            raise ValueError(
                f"pending_strategy must be one of {', '.join(map(repr, PENDING_STRATEGIES))}, "
                f"but got pending_strategy={pending_strategy!r}."
            )
        if pruned not in PRUNED_RULES:
            raise ValueError(f"pruned must be one of {', '.join(map(repr, PRUNED_RULES))}, but got pruned={pruned!r}.")
        if isinstance(hedge_eta, bool) or not isinstance(hedge_eta, (int, float)) or not hedge_eta > 0:
            raise ValueError(f"hedge_eta must be a positive number, but got hedge_eta={hedge_eta!r}.")
        for name, value in (("n_candidates", n_candidates), ("n_starts", n_starts), ("refit_every", refit_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, but got {name}={value!r}.")
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive integer or None, but got n_threads={n_threads!r}.")
        if cost is not None and cost != "duration" and not callable(cost):
            raise ValueError(f"cost must be None, 'duration' or a function of a trial, but got cost={cost!r}.")
        if cost is not None and self.acquisition not in COST_AWARE:
            raise ValueError(f"a cost needs an improvement acquisition ({', '.join(map(repr, COST_AWARE))}), "
                             f"but got acquisition={acquisition!r}; pass one of those or cost=None.")
        if (isinstance(cost_exponent, bool) or not isinstance(cost_exponent, (int, float))
                or not math.isfinite(cost_exponent) or cost_exponent <= 0):
            raise ValueError(f"cost_exponent must be a finite number > 0, but got cost_exponent={cost_exponent!r}.")
        self.cost = cost
        self.cost_exponent = float(cost_exponent)
        self.n_initial_points = n_initial_points
        self.beta = float(beta)
        self.pending_strategy = pending_strategy
        self.pruned = pruned
        self.hedge_eta = float(hedge_eta)
        self.n_candidates = n_candidates
        self.n_starts = n_starts
        self.refit_every = refit_every
        self.warp_outputs = bool(warp_outputs)
        self.n_threads = n_threads
        self._encodings: dict[str, ModelEncoding] = {}

    def __repr__(self) -> str:
        cost = "" if self.cost is None else f", cost={self.cost!r}, cost_exponent={self.cost_exponent!r}"
        return (f"BayesianSampler(seed={self.seed!r}, n_initial_points={self.n_initial_points!r}, "
                f"acquisition={self.acquisition!r}{cost})")

    def max_trials(self, space: SearchSpace) -> int | None:
        return self._encoding(space).n_configurations

    # The history --------------------------------------------------------------------------
    def _encoding(self, space: SearchSpace) -> ModelEncoding:
        key = json.dumps(space.to_spec(), sort_keys=True, default=str)
        if key not in self._encodings:
            self._encodings[key] = ModelEncoding(space)
        return self._encodings[key]

    @staticmethod
    def _encode(encoding: ModelEncoding, trial: FrozenTrial) -> np.ndarray | None:
        try:
            return encoding.encode(trial.params)
        except (SpaceError, TypeError, ValueError):
            return None  # params from another space version: not data for this one

    def _observations(self, context: AskContext, encoding: ModelEncoding) -> tuple[np.ndarray, np.ndarray]:
        """Model points ``(n, d)`` and targets to maximise ``(n,)`` of the usable trials."""
        sign = -1.0 if context.mode == "min" else 1.0
        X, y = [], []
        for t in context.complete:
            if t.value is None or not math.isfinite(t.value):
                continue  # a non-finite value never reaches the GP
            x = self._encode(encoding, t)
            if x is not None:
                X.append(x)
                y.append(sign * t.value)
        if self.pruned == "worst" and y:
            worst = min(y)
            for t in context.trials_in(TrialState.PRUNED):
                x = self._encode(encoding, t)
                if x is not None:
                    X.append(x)
                    y.append(worst)
        d = encoding.dim
        return np.array(X, dtype=float).reshape(-1, d), np.array(y, dtype=float)

    def _points(self, encoding: ModelEncoding, trials: list[FrozenTrial]) -> np.ndarray:
        rows = [x for x in (self._encode(encoding, t) for t in trials) if x is not None]
        return np.array(rows, dtype=float).reshape(-1, encoding.dim)

    # Ask ----------------------------------------------------------------------------------
    def ask(self, context: AskContext) -> Suggestion | None:
        return self.ask_at(context, {})

    def ask_at(self, context: AskContext, fixed: Mapping[str, Any]) -> Suggestion | None:
        """A suggestion for the dimensions of ``context.space`` other than ``fixed``, which are held.

        The GP is fitted on every dimension of the trials; the acquisition is maximised
        over the others with ``fixed`` held at their values (:class:`FixedColumns`), the
        incumbent is the best posterior mean at those values over the evaluated and
        pending points, and the suggestion's params leave them out. ``fixed`` names the
        last dimensions of the space, in order. :class:`MultiFidelitySampler`'s
        ``model="fidelity"`` uses it for one GP over configuration x resource that
        proposes at the largest resource. With no ``fixed`` it is :meth:`ask`.
        """
        model_encoding = encoding = self._encoding(context.space)
        tail: np.ndarray | None = None
        free_context = context
        if fixed:
            names = list(context.space)
            free = names[: len(names) - len(fixed)]
            if not free or list(fixed) != names[len(free):]:
                raise ValueError(f"fixed must name the last dimensions of the space, in order, and leave at least one "
                                 f"free, but got fixed={list(fixed)!r} for the dimensions {names!r}.")
            encoding = self._encoding(SearchSpace({k: context.space[k] for k in free}))
            tail = model_encoding.encode({**encoding.decode(np.zeros(encoding.dim)), **fixed})[len(free):]
            trials = [dataclasses.replace(t, params={k: v for k, v in t.params.items() if k in free})
                      for t in context.trials]
            free_context = dataclasses.replace(context, space=encoding.space, trials=trials)
        tried = self._points(encoding, [t for t in free_context.trials if t.has_params])
        X, y = self._observations(context, model_encoding)
        X_pending = self._points(model_encoding, context.pending)
        if self._in_initial_design(len(y), len(X_pending)):
            return self._sobol(free_context, encoding, tried, reason="initial")
        try:
            with torch_threads(self.n_threads):
                return self._ask_gp(free_context, encoding, X, y, X_pending, tried, model_encoding, tail)
        except (RuntimeError, ValueError, FloatingPointError, ArithmeticError) as err:
            warnings.warn(
                f"BayesianSampler: the GP step failed for trial {context.number} ({type(err).__name__}: {err}); "
                "suggesting a Sobol point instead.",
                RuntimeWarning,
                stacklevel=2,
            )
            return self._sobol(free_context, encoding, tried, reason="fallback", salt=_SALT_FALLBACK)

    def _in_initial_design(self, n_values: int, n_pending: int) -> bool:
        """Whether the next trial is a Sobol design point, given the usable values and the running trials.

        The design is the first ``n_initial_points`` trials asked, running ones included:
        waiting for that many *values* would make ``k`` parallel workers run ``k - 1``
        design points more than one worker does (13 instead of 10 with four workers, a
        fifth of a short search spent unguided). The GP still waits for half of the
        design to have values, so that eight or more workers do not start it on three
        points. With one worker the two rules are the same.
        """
        if n_values == 0:
            return True
        return n_values + n_pending < self.n_initial_points or 2 * n_values < self.n_initial_points

    def _sobol(
        self, context: AskContext, encoding: ModelEncoding, tried: np.ndarray, reason: str, salt: int = _SALT_SOBOL_INIT
    ) -> Suggestion | None:
        """Point ``number`` of the seeded Sobol sequence (the next unseen one in a discrete space)."""
        n_configs = encoding.n_configurations
        if n_configs is not None and len(_unique_rows(encoding, tried)) >= n_configs:
            return None  # every configuration of a finite space is tried or running
        for k in range(256):
            U = sobol_points(1, encoding.dim, self.rng(0, salt=salt), skip=context.number + 97 * k)
            x = encoding.to_model(U)[0]
            if n_configs is None or not _is_duplicate(encoding, x[None, :], tried)[0]:
                return Suggestion(params=encoding.decode(x), system_attrs={"bo": reason})
        free = _first_free(encoding, tried)
        return None if free is None else Suggestion(params=encoding.decode(free), system_attrs={"bo": reason})

    @staticmethod
    def _stored_hyperparameters(context: AskContext, d: int) -> dict[str, Any] | None:
        """The GP hyperparameters stored with the latest trial that has them (a warm start).

        Keeping them in storage rather than on the sampler makes a warm start depend on the
        history only: a resumed search or another worker makes the same fit.
        """
        for t in sorted(context.trials, key=lambda t: t.number, reverse=True):
            hp = t.system_attrs.get("bo_gp") if t.system_attrs else None
            if isinstance(hp, dict) and isinstance(hp.get("lengthscale"), list) and len(hp["lengthscale"]) == d:
                return hp
        return None

    def _reusable(self, stored: dict[str, Any] | None, n: int) -> bool:
        """Whether the stored hyperparameters serve as they are (no fit) for ``n`` observations.

        From ``_REUSE_FROM`` observations on, one more point moves the maximum of the
        marginal likelihood little: the fit is skipped until the data have grown by
        ``_REUSE_GROWTH`` (and by at least ``_REUSE_MIN_GROWTH`` observations) since the
        stored fit (and a periodic full fit is never skipped).
        """
        if stored is None or n < _REUSE_FROM or n % self.refit_every == 0:
            return False
        n_fit = stored.get("n")
        if isinstance(n_fit, bool) or not isinstance(n_fit, int) or not 0 < n_fit <= n:
            return False
        values = [*stored["lengthscale"], stored.get("outputscale"), stored.get("noise")]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
            return False
        return n - n_fit < max(_REUSE_MIN_GROWTH, math.ceil(_REUSE_GROWTH * n_fit))

    def _fit(
        self, context: AskContext, encoding: ModelEncoding, X: np.ndarray, y_std: np.ndarray
    ) -> tuple[GPPosterior, dict[str, Any]]:
        """The posterior to optimise over and the hyperparameter record to store with the trial."""
        X_t, y_t = torch.as_tensor(X, dtype=DTYPE), torch.as_tensor(y_std, dtype=DTYPE)
        mask = torch.as_tensor(encoding.categorical_mask)
        stored = self._stored_hyperparameters(context, encoding.dim)
        model = GPModel(X_t, y_t, mask)
        if self._reusable(stored, len(y_std)):
            assert stored is not None
            model.set_hyperparameters(np.asarray(stored["lengthscale"], dtype=float),
                                      float(stored["outputscale"]), float(stored["noise"]))
            try:
                return GPPosterior.from_model(model), dict(stored)
            except GPNumericalError:
                model.reset_hyperparameters()  # the old hyperparameters do not fit the new data: fit afresh

        # Past _FIT_SUBSET observations the hyperparameters are fitted on a random subset of
        # that size (the posterior still uses every observation): the cost of a fit stops
        # growing with the history, and a few hundred points pin the hyperparameters down.
        rng = self.rng(context.number, salt=_SALT_FIT)
        fit_model = model
        if len(y_std) > _FIT_SUBSET:
            keep = np.sort(rng.choice(len(y_std), _FIT_SUBSET, replace=False))
            fit_model = GPModel(X_t[keep], y_t[keep], mask)
        warm: np.ndarray | None = None
        if stored is not None:
            try:
                fit_model.set_hyperparameters(np.asarray(stored["lengthscale"], dtype=float),
                                              float(stored["outputscale"]), float(stored["noise"]))
                warm = fit_model.raw_vector()
            except (KeyError, TypeError, ValueError, RuntimeError):
                warm = None  # a malformed record: fit from scratch
            fit_model.reset_hyperparameters()
        if warm is None:  # the first fit of a study: the default start and two random ones
            starts: list[np.ndarray | None] = [None, *_random_starts(fit_model, rng, 2)]
            maxiter = 200
        elif len(y_std) % self.refit_every == 0:  # a periodic full fit: can leave a stale optimum
            starts, maxiter = [warm, *_random_starts(fit_model, rng, 1)], 100
        else:  # warm start: a few iterations from the last optimum
            starts, maxiter = [warm], 50
        try:
            fit_gp(fit_model, starts, maxiter=maxiter)
        except GPNumericalError:
            if warm is None:
                raise
            # The warm start failed: one full fit before giving up.
            fit_model.reset_hyperparameters()
            fit_gp(fit_model, [None, *_random_starts(fit_model, rng, 2)], maxiter=200)
        model.load_raw_vector(fit_model.raw_vector())
        record = {
            "lengthscale": model.lengthscale.tolist(),
            "outputscale": float(model.outputscale),
            "noise": float(model.noise),
            "n": len(y_std),
        }
        return GPPosterior.from_model(model), record

    def _ask_gp(
        self,
        context: AskContext,
        encoding: ModelEncoding,
        X: np.ndarray,
        y: np.ndarray,
        X_pending: np.ndarray,
        tried: np.ndarray,
        model_encoding: ModelEncoding | None = None,
        tail: np.ndarray | None = None,
    ) -> Suggestion | None:
        """One GP suggestion. ``X``, ``X_pending``: points of ``model_encoding`` (default:
        ``encoding``); with a ``tail`` (:meth:`ask_at`), their last columns are held at it
        and the acquisition searches the first ``encoding.dim``."""
        y_std, _, _ = standardize(warp_targets(y) if self.warp_outputs else y)
        posterior, record = self._fit(context, model_encoding or encoding, X, y_std)

        if len(X_pending):
            lies = self._lies(posterior, X_pending, y_std)
            # Fantasies are noise-free observations: the uncertainty at a pending point collapses
            # even when the fitted noise is large, so the acquisition there drops to (almost) nothing.
            fantasy = posterior.condition_on(torch.as_tensor(X_pending, dtype=DTYPE), lies, noise=NOISE_FLOOR)
        else:
            fantasy = posterior
        X_known = np.concatenate([X, X_pending])
        d = encoding.dim
        if tail is not None:  # every known configuration, at the held values
            X_known = _with_tail(np.unique(X_known[:, :d], axis=0), tail)
            X_pending = X_pending[:, :d]
        known_mean = fantasy.mean(torch.as_tensor(X_known, dtype=DTYPE))
        best_f = float(known_mean.max())

        # Raw candidates also include small perturbations of the best evaluated points, so a
        # local search can refine the incumbent (the points themselves score no improvement).
        seed = self.rng(context.number, salt=_SALT_RAW)
        if tail is None:
            best = X[np.argsort(-y_std, kind="stable")[:5]]
        else:  # the best predicted at the held values: values at other ones do not compare
            best = X_known[np.argsort(-known_mean.detach().numpy(), kind="stable")[:5], :d]
        extra = _perturbations(encoding, best, seed, per_point=20)
        arms = HEDGE_ARMS if self.acquisition == "hedge" else (self.acquisition,)
        cost = self._cost_model(context, encoding) if self.cost is not None else None
        box = _pending_box(encoding, posterior, X, record) if len(X_pending) and tail is None else None
        proposals: dict[str, np.ndarray] = {}
        for arm in arms:
            acqf = build_acquisition(arm, fantasy, best_f, self.beta)
            if tail is not None:
                acqf = FixedColumns(acqf, tail)
            if cost is not None:
                acqf = CostWeighted(acqf, cost[0], cost[2], self.cost_exponent, log_scale=arm != "ei")
            if box is not None:
                acqf = TrustRegion(acqf, *box)
            result = optimize_acquisition(acqf, encoding, seed, n_raw=self.n_candidates, n_starts=self.n_starts,
                                          extra_starts=extra)
            first = _first_fresh(encoding, result.X, tried, X_pending)
            if first is not None:
                proposals[arm] = result.X[first]
        if not proposals:
            return self._sobol(context, encoding, tried, reason="exhausted", salt=_SALT_FALLBACK)

        attrs: dict[str, Any] = {"bo": "gp", "bo_gp": record}
        if self.acquisition == "hedge":
            chosen = self._hedge_choice(context, encoding, posterior, proposals, tail)
            attrs["bo_hedge"] = {arm: encoding.to_unit(x[None, :])[0].tolist() for arm, x in proposals.items()}
        else:
            chosen = self.acquisition
        attrs["bo_acquisition"] = chosen
        if cost is not None:
            posterior_c, mu, scale, n = cost
            log_c = float(posterior_c.mean(torch.as_tensor(proposals[chosen][None, :], dtype=DTYPE))[0]) * scale + mu
            attrs["bo_cost"] = {"n": n, "predicted": math.exp(log_c)}
        return Suggestion(params=encoding.decode(proposals[chosen]), system_attrs=attrs)

    def _trial_cost(self, trial: FrozenTrial) -> float | None:
        if self.cost == "duration":
            cost = trial.duration
        else:
            assert callable(self.cost)
            cost = self.cost(trial)
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost <= 0:
            return None  # data, not code: an unknown or unusable cost is no observation
        return float(cost)

    def _cost_model(self, context: AskContext, encoding: ModelEncoding) -> tuple[GPPosterior, float, float, int] | None:
        """A GP on the standardised log costs of the trials with one: ``(posterior, mean, std, n)``.

        ``None`` while fewer than two costs differ: every point is then as cheap as any
        other, and the acquisition is left as it is.
        """
        X, y = [], []
        for t in context.trials:
            if not t.has_params:
                continue
            cost = self._trial_cost(t)
            x = self._encode(encoding, t) if cost is not None else None
            if x is not None:
                X.append(x)
                y.append(math.log(cost))  # type: ignore[arg-type]
        if len(y) < 2 or float(np.ptp(y)) < 1e-12:
            return None
        y_std, mu, scale = standardize(np.array(y, dtype=float))
        model = GPModel(torch.as_tensor(np.array(X), dtype=DTYPE), torch.as_tensor(y_std, dtype=DTYPE),
                        torch.as_tensor(encoding.categorical_mask))
        try:
            fit_gp(model, [None], maxiter=100)
            return GPPosterior.from_model(model), mu, scale, len(y)
        except GPNumericalError:
            return None  # no cost model this time: the suggestion is the cost-blind one

    def _lies(self, posterior: GPPosterior, X_pending: np.ndarray, y_std: np.ndarray) -> torch.Tensor:
        """Fantasy values of the pending points, standardised, shape ``(k,)``."""
        k = len(X_pending)
        if self.pending_strategy == "believer":
            with torch.no_grad():
                return posterior.mean(torch.as_tensor(X_pending, dtype=DTYPE))
        value = {"liar_best": y_std.max(), "liar_mean": y_std.mean(), "liar_worst": y_std.min()}[self.pending_strategy]
        return torch.full((k,), float(value), dtype=DTYPE)

    def _hedge_choice(
        self, context: AskContext, encoding: ModelEncoding, posterior: GPPosterior, proposals: dict[str, np.ndarray],
        tail: np.ndarray | None = None,
    ) -> str:
        """GP-Hedge: each arm's gain is the current posterior mean summed over its past proposals."""
        past: dict[str, list[list[float]]] = {arm: [] for arm in HEDGE_ARMS}
        for t in context.trials:
            record = t.system_attrs.get("bo_hedge") if t.system_attrs else None
            if isinstance(record, dict):
                for arm in HEDGE_ARMS:
                    u = record.get(arm)
                    if isinstance(u, list) and len(u) == encoding.dim:
                        past[arm].append(u)
        gains = np.zeros(len(HEDGE_ARMS))
        for i, arm in enumerate(HEDGE_ARMS):
            if past[arm]:
                X_arm = encoding.to_model(np.array(past[arm], dtype=float))
                if tail is not None:
                    X_arm = _with_tail(X_arm, tail)
                gains[i] = float(posterior.mean(torch.as_tensor(X_arm, dtype=DTYPE)).sum())
        available = [i for i, arm in enumerate(HEDGE_ARMS) if arm in proposals]
        p = hedge_probabilities(gains[available], self.hedge_eta)
        pick = int(self.rng(context.number, salt=_SALT_HEDGE).choice(len(available), p=p))
        return HEDGE_ARMS[available[pick]]


def _with_tail(X: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """Points ``(n, d)`` completed with the held columns ``tail`` ``(c,)``: ``(n, d + c)``."""
    return np.concatenate([X, np.broadcast_to(tail, (len(X), len(tail)))], axis=1)


def _pending_box(
    encoding: ModelEncoding, posterior: GPPosterior, X: np.ndarray, record: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The box suggestions stay in while trials are pending: centre, half sides, confined columns.

    Centred on the evaluated point with the best posterior mean, with sides
    ``_PENDING_BOX_SIDE * lengthscale / geometric mean of the lengthscales`` (a long
    lengthscale, a flat direction, gets a wide side), over the continuous columns.
    """
    centre = X[int(np.argmax(posterior.mean(torch.as_tensor(X, dtype=DTYPE)).numpy()))]
    lengthscale = np.asarray(record["lengthscale"], dtype=float)
    relative = lengthscale / np.exp(np.mean(np.log(lengthscale)))
    return centre, np.clip(_PENDING_BOX_SIDE * relative, 0.0, 2.0) / 2, encoding.continuous_mask


def _random_starts(model: GPModel, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """``n`` raw hyperparameter vectors around the default start (log-normal perturbations)."""
    current = model.raw_vector()
    base_ls = model.lengthscale.numpy().copy()
    starts = []
    for _ in range(n):
        model.set_hyperparameters(base_ls * np.exp(rng.normal(0.0, 1.0, base_ls.shape)),
                                  float(np.exp(rng.normal(0.0, 0.5))), float(10 ** rng.uniform(-5, -1)))
        starts.append(model.raw_vector())
    model.load_raw_vector(current)
    return starts


def _perturbations(encoding: ModelEncoding, X: np.ndarray, rng: np.random.Generator, per_point: int) -> np.ndarray:
    """``per_point`` Gaussian perturbations (std 0.05 in the unit cube) of each model point ``(m, d)``.

    Categorical columns keep their choice; integer columns move to a nearby admissible value.
    With more than ``_PERTURB_DIMS`` ordered columns, each perturbation moves a random
    subset of them (each column with probability ``_PERTURB_DIMS / d``, at least one), as
    BoTorch's ``sample_perturbed_subset_dims`` does: a move of every one of 50 coordinates
    leaves the incumbent's neighbourhood (its length grows like ``sqrt(d)``), while a move
    of a few coordinates stays where the model predicts well.
    """
    if len(X) == 0:
        return X
    U = np.repeat(encoding.to_unit(X), per_point, axis=0)
    ordered = ~encoding.categorical_mask
    step = rng.normal(0.0, 0.05, size=(len(U), int(ordered.sum())))
    if step.shape[1] > _PERTURB_DIMS:
        moved = rng.random(step.shape) < _PERTURB_DIMS / step.shape[1]
        moved[np.arange(len(U)), rng.integers(step.shape[1], size=len(U))] = True
        step = np.where(moved, step, 0.0)
    U[:, ordered] += step
    return encoding.to_model(np.clip(U, 0.0, 1.0))


def _is_duplicate(encoding: ModelEncoding, X: np.ndarray, tried: np.ndarray, tol: float = _DUPLICATE_TOL) -> np.ndarray:
    """Whether each row of ``X`` (m, d) is within ``tol`` of a row of ``tried`` (t, d); shape ``(m,)``.

    Continuous columns (unit-cube scale) are compared with ``tol``, discrete ones for equality.
    """
    if len(tried) == 0 or len(X) == 0:
        return np.zeros(len(X), dtype=bool)
    cont = encoding.continuous_mask
    diff = np.abs(X[:, None, :] - tried[None, :, :])  # (m, t, d)
    same = np.all(np.where(cont, diff < tol, diff < 1e-9), axis=-1)
    return same.any(axis=1)


def _first_fresh(
    encoding: ModelEncoding, X: np.ndarray, tried: np.ndarray, pending: np.ndarray, chunk: int = 16
) -> int | None:
    """The index of the first row of ``X`` (m, d) that is neither a tried point nor next to a pending one."""
    for start in range(0, len(X), chunk):
        block = X[start : start + chunk]
        fresh = ~_is_duplicate(encoding, block, tried) & ~_is_duplicate(encoding, block, pending, _PENDING_GAP)
        if fresh.any():
            return start + int(np.argmax(fresh))
    return None


def _unique_rows(encoding: ModelEncoding, X: np.ndarray) -> set[tuple[float, ...]]:
    return set(encoding.key(X))


def _first_free(encoding: ModelEncoding, tried: np.ndarray) -> np.ndarray | None:
    """The first untried configuration of an all-discrete space, or ``None``."""
    n_configs = encoding.n_configurations
    if n_configs is None or n_configs > 1_000_000:
        return None
    X_all = encoding.all_configurations()
    free = ~_is_duplicate(encoding, X_all, tried)
    return X_all[int(np.argmax(free))] if free.any() else None
