"""``frameworm-search``: LightningCLI with a ``search:`` section and search subcommands.

A search is the model's usual LightningCLI config plus one section::

    model: {class_path: models.VAE, init_args: {latent_dim: 16}}
    data: {class_path: models.DigitsDataModule}
    trainer: {max_epochs: 10}
    search:
      metric: val_loss
      n_trials: 20
      space:
        model.init_args.lr: {type: real, low: 1.0e-4, high: 1.0e-2, log: true}

``frameworm-search search -c vae.yaml`` runs it (or resumes its stored study),
``trials`` shows the stored trials, ``best`` writes the best trial as a config that
``fit`` accepts; ``fit``/``validate``/``test``/``predict`` are LightningCLI's own and
ignore the ``search:`` section.

LightningCLI is extended only through its hooks: ``subcommands()`` names the new
subcommands, whose options LightningCLI reads from the signatures of
:class:`SearchTrainer`'s methods; ``add_arguments_to_parser`` adds the ``search:``
section; ``before_instantiate_classes`` validates the search before anything is built;
``parser_class`` gives the one-line errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from frameworm_lightning.cli._errors import SearchArgumentParser, UsageError, explain
from frameworm_lightning.cli._search_config import SearchConfig, SearchPlan, best_fit_config, build_plan, trainer_overrides
from frameworm_lightning.exceptions import FramewormError, MetricNotFoundError
from frameworm_lightning.runner._progress import format_params
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["SearchCLI", "SearchTrainer", "main"]

_SKIP = {"model", "datamodule"}
# The subcommands this CLI adds, and the options each takes besides the config.
_SEARCH_COMMANDS = ("search", "trials", "best")
_BEST_OPTIONS = ("output",)


class SearchTrainer(Trainer):
    """A ``Trainer`` that declares ``frameworm-search``'s subcommands.

    LightningCLI builds one subcommand per Trainer method named in ``subcommands()``,
    with the method's docstring as help and its arguments as options. A search needs
    the parsed config rather than built objects, so :class:`SearchCLI`'s methods of the
    same names do the work (LightningCLI calls the CLI's method when it has one); called
    on a Trainer directly, these raise.
    """

    def run_search(self, model: Any, datamodule: Any = None) -> None:
        """Run the search of the config's search: section, or resume its stored study."""
        raise NotImplementedError("run a search with the frameworm-search command or SearchRunner")

    # jsonargparse names a method's option group after its __name__, and "search" is
    # taken by the search: section, so the subcommand's method is an alias.
    search = run_search

    def trials(self, model: Any, datamodule: Any = None) -> None:
        """Show the trials of the stored study as a table."""
        raise NotImplementedError("use the frameworm-search command")

    def best(self, model: Any, datamodule: Any = None, output: Optional[str] = None) -> None:
        """Write the best trial as a config that fit accepts.

        Args:
            output: the file to write; default: print the config.
        """
        raise NotImplementedError("use the frameworm-search command")


class SearchCLI(LightningCLI):
    """LightningCLI plus a ``search:`` config section and the ``search``, ``trials``, ``best`` subcommands.

    Every LightningCLI argument works as usual; by default the model and data are
    given by ``class_path`` in the config (``model_class=None``), as for a search
    over any LightningModule.

    Example:
        >>> SearchCLI(args=["search", "-c", "vae.yaml"])  # doctest: +SKIP
    """

    plan: SearchPlan

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("trainer_class", SearchTrainer)
        kwargs.setdefault("parser_class", SearchArgumentParser)
        kwargs.setdefault("parser_kwargs", {"description": "Hyperparameter search for LightningModules."})
        super().__init__(*args, **kwargs)

    # Hooks ------------------------------------------------------------------------------
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), **{name: set(_SKIP) for name in _SEARCH_COMMANDS}}

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--search", type=SearchConfig, help="The hyperparameter search (ignored by fit/validate/test/predict).")

    def before_instantiate_classes(self) -> None:
        if self.subcommand not in _SEARCH_COMMANDS:
            return
        self.plan = build_plan(self.config[self.subcommand])
        # The Trainer LightningCLI builds for a search subcommand never trains: keep its
        # "GPU available..." lines off the screen.
        import logging  # noqa: PLC0415

        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if self.subcommand in _SEARCH_COMMANDS:
            # This Trainer never trains (each trial builds its own): no logger to set up.
            kwargs = {"logger": False, "enable_checkpointing": False, **kwargs}
        return super().instantiate_trainer(**kwargs)

    # Subcommands ------------------------------------------------------------------------
    def search(self, **_: Any) -> None:
        """Run the search, or resume its study; a metric never logged ends it at once."""
        from frameworm_lightning.cli._progress import SearchProgress  # noqa: PLC0415 - rich only here
        from frameworm_lightning.runner import SearchRunner  # noqa: PLC0415

        plan = self.plan
        section = self.config_init[self.subcommand]
        cfg: SearchConfig = section.search
        trainer = dict(section.trainer)
        callbacks = [cb for cb in (trainer.pop("callbacks", None) or []) if not isinstance(cb, SaveConfigCallback)]
        runner = SearchRunner(
            metric=cfg.metric, mode=cfg.mode, sampler=cfg.sampler, n_trials=cfg.n_trials,
            trainer_kwargs=trainer_overrides(trainer), storage=plan.storage, study_name=plan.study_name,
            root_dir=cfg.root_dir, seed=cfg.seed, objective=cfg.objective, callbacks=[*callbacks, *cfg.stopping],
            retry_failed=cfg.retry_failed, quiet=True, n_jobs=cfg.n_jobs,
        )
        bound = runner.sampler.max_trials(plan.space)
        total = bound if cfg.n_trials is None else (cfg.n_trials if bound is None else min(cfg.n_trials, bound))
        progress = SearchProgress(plan.study_name, cfg.metric, cfg.mode, total, n_jobs=cfg.n_jobs)
        try:
            with progress:
                result = runner.fit(
                    plan.module_cls, plan.space, plan.datamodule_cls, model_kwargs=plan.model_kwargs,
                    datamodule_kwargs=plan.data_kwargs, enqueue=plan.enqueue, printer=_MetricGuard(progress, cfg.metric),
                )
        except (KeyboardInterrupt, SystemExit) as exc:
            # Lightning turns Ctrl+C during fit into sys.exit(1), raised while handling the interrupt.
            if not isinstance(exc, KeyboardInterrupt) and not isinstance(exc.__context__, KeyboardInterrupt):
                raise
            print(
                f"interrupted: {progress.finished} finished trial(s) stored in study {plan.study_name!r} ({plan.storage}); "
                "run the same command again to resume.", file=sys.stderr, flush=True,
            )
            raise KeyboardInterrupt from None
        interrupted = sum(t.interrupted for t in result.trials)
        counts = {s: result.count(s) for s in TrialState}
        print(
            f"study {plan.study_name!r}: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.FAILED] - interrupted} failed"
            + (f", {interrupted} interrupted and run again" if interrupted else "")
            + (f"; resumed with {progress.stored} trials stored" if progress.stored else "")
            + f" ({plan.storage})", flush=True,
        )
        if result.best_trial is None:
            raise UsageError(f"no trial of study {plan.study_name!r} completed; see the failures with: "
                             f"frameworm-search trials {self._config_args()}")
        best = result.best_trial
        print(f"best {cfg.metric}={best.value:.6g} (trial {best.number}): {format_params(result.best_params or {})}",
              flush=True)
        print(f"write it as a fit config with: frameworm-search best {self._config_args()} --output best.yaml", flush=True)

    def trials(self, **_: Any) -> None:
        """Print the stored trials as a table."""
        from rich.console import Console  # noqa: PLC0415

        from frameworm_lightning.cli._table import trials_table  # noqa: PLC0415

        study = self._load_study()
        console = Console() if sys.stdout.isatty() else Console(width=200)
        console.print(trials_table(study))

    def best(self, output: Optional[str] = None, **_: Any) -> None:
        """Write the best trial's config (the search's config with the best params set)."""
        study = self._load_study()
        best = study.best_trial
        if best is None:
            raise UsageError(f"study {study.name!r} has no complete trial yet; run: frameworm-search search {self._config_args()}")
        dump = yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_link_targets=False))[self.subcommand]
        for key in ("search", "config", "subcommand", *_BEST_OPTIONS):
            dump.pop(key, None)
        cfg = self.config[self.subcommand].search
        seed = None if cfg.seed is None else cfg.seed + best.number
        config = best_fit_config(dump, study.space.canonical(best.params), seed)
        header = [f"# best trial {best.number} of study {study.name!r}: {study.metric}={best.value:.6g}"]
        if best.system_attrs.get("checkpoint_path"):
            header.append(f"# its checkpoint: {best.system_attrs['checkpoint_path']}")
        text = "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False)
        if output is None:
            sys.stdout.write(text)
            return
        path = Path(output)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as err:
            raise UsageError(f"cannot write {output!r}: {err.strerror or err}; pass --output a writable path.") from None
        print(f"wrote {path} (trial {best.number}, {study.metric}={best.value:.6g}); train it with: "
              f"frameworm-search fit -c {path}", flush=True)

    # Helpers ----------------------------------------------------------------------------
    def _config_args(self) -> str:
        files = self.config[self.subcommand].get("config") or []
        return " ".join(f"-c {f}" for f in files) or "-c <config.yaml>"

    def _load_study(self) -> Any:
        from frameworm_lightning.study import Study  # noqa: PLC0415

        storage = self.plan.storage
        if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
            raise UsageError(
                f"no study stored yet: {storage[len('sqlite:///'):]} does not exist; run "
                f"frameworm-search search {self._config_args()} first, or set search.storage to an earlier search's database."
            )
        return Study.load(self.plan.study_name, storage)


class _MetricGuard:
    """Passes trials on to the progress view; ends the search when the metric was never logged.

    Every trial would fail the same way, so the first such failure stops the search
    (the trial is already stored: running the command again resumes).
    """

    _MARK = f"{MetricNotFoundError.__module__}.{MetricNotFoundError.__qualname__}: "

    def __init__(self, printer: Any, metric: str) -> None:
        self.printer = printer
        self.metric = metric

    def observe(self, trial: FrozenTrial) -> None:
        self.printer.observe(trial)

    def __call__(self, trial: FrozenTrial) -> None:
        self.printer(trial)
        reason = trial.reason or ""
        if trial.state is TrialState.FAILED and reason.startswith(self._MARK):
            raise UsageError(f"search.metric: {reason[len(self._MARK):]}")


def main(args: Optional[list[str]] = None) -> None:
    """The ``frameworm-search`` console script.

    Errors a user can fix print as one line (exit code 2); set ``FRAMEWORM_DEBUG=1``
    to see their traceback. An interrupted search exits with 130 and resumes when
    run again.
    """
    try:
        SearchCLI(args=args)
    except (FramewormError, UsageError) as err:
        if os.environ.get("FRAMEWORM_DEBUG"):
            raise
        print(f"error: {explain(err)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
