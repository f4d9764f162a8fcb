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
``worker`` joins it from another process or machine, ``trials`` shows the stored
trials, ``best`` writes the best trial as a config that ``fit`` accepts and ``plot``
writes the analysis report. ``fit``/``validate``/``test``/``predict`` are
LightningCLI's own and ignore the ``search:`` section.

LightningCLI is extended only through its hooks: ``subcommands()`` names the new
subcommands, whose options LightningCLI reads from the signatures of
:class:`SearchTrainer`'s methods; ``add_arguments_to_parser`` adds the ``search:``
section; ``parse_arguments`` leaves a search's own process unseeded;
``before_instantiate_classes`` validates the search (space keys, link targets) before
anything is built; ``instantiate_classes`` turns a config that does not build into one
line; ``instantiate_trainer`` keeps the never-used Trainer of a search subcommand quiet;
``parser_class`` gives the one-line errors and notes the links; ``init_parser`` keeps the
parsers. Each trial is built by calling the CLI class again on the trial's config
(``cli/_trial_config.py``), so it trains what ``fit`` would.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Optional

import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI

import frameworm_lightning.stopping  # noqa: F401 - imported so short names (--trainer.callbacks+=ASHA) resolve
from frameworm_lightning.cli._errors import SearchArgumentParser, UsageError, explain
from frameworm_lightning.cli._links import check_space_links, dumped_link_targets
from frameworm_lightning.cli._search_config import (
    SearchConfig,
    SearchPlan,
    build_plan,
    dotted_key,
    runner_key,
    trainer_overrides,
    trial_fit_config,
)
from frameworm_lightning.cli._trial_config import CONFIG_ATTR, CLICall, TrialBuild, TrialConfig
from frameworm_lightning.exceptions import FramewormError, MetricNotFoundError
from frameworm_lightning.storage import masked_url, open_storage
from frameworm_lightning.runner._progress import format_params
from frameworm_lightning.trial import TrialState

__all__ = ["SearchCLI", "SearchTrainer", "main"]

# The subcommands this CLI adds; LightningCLI passes none of them the built model or data.
_SEARCH_COMMANDS = ("search", "worker", "trials", "best", "plot")
_SKIP = {"model", "datamodule"}


class SearchTrainer(Trainer):
    """A ``Trainer`` that declares ``frameworm-search``'s subcommands.

    LightningCLI builds one subcommand per Trainer method named in ``subcommands()``,
    with the method's docstring as help and its arguments as options. A search needs
    the parsed config rather than built objects, so :class:`SearchCLI`'s methods of the
    same names do the work (LightningCLI calls the CLI's method when it has one); called
    on a Trainer directly, these raise.

    Each takes ``fit``'s own options, ``ckpt_path`` and ``weights_only``, so that a config
    ``fit`` saved (which has them, null) is a config of every subcommand; a search refuses a
    ``ckpt_path``.
    """

    def run_search(self, model: Any, datamodule: Any = None, ckpt_path: Optional[str] = None,
                   weights_only: Optional[bool] = None) -> None:
        """Run the search of the config's search: section, or resume its stored study.

        Args:
            ckpt_path: fit's option, accepted as null (a config fit saved has it).
            weights_only: fit's option, ignored (a config fit saved has it).
        """
        raise NotImplementedError("run a search with the frameworm-search command or SearchRunner")

    # jsonargparse names a method's option group after its __name__, and "search" is
    # taken by the search: section, so the subcommand's method is an alias.
    search = run_search

    def worker(self, model: Any, datamodule: Any = None, wait: bool = True, ckpt_path: Optional[str] = None,
               weights_only: Optional[bool] = None) -> None:
        """Join the stored study as one more worker (another process or machine sharing search.storage).

        Args:
            wait: when nothing is left to claim, wait for the other workers' trials (and
                run again those whose worker died) before exiting.
            ckpt_path: fit's option, accepted as null (a config fit saved has it).
            weights_only: fit's option, ignored (a config fit saved has it).
        """
        raise NotImplementedError("use the frameworm-search command or SearchRunner.worker")

    def trials(self, model: Any, datamodule: Any = None, ckpt_path: Optional[str] = None,
               weights_only: Optional[bool] = None) -> None:
        """Show the trials of the stored study as a table.

        Args:
            ckpt_path: fit's option, ignored (a config fit saved has it).
            weights_only: fit's option, ignored (a config fit saved has it).
        """
        raise NotImplementedError("use the frameworm-search command")

    def best(self, model: Any, datamodule: Any = None, output: Optional[str] = None,
             ckpt_path: Optional[str] = None, weights_only: Optional[bool] = None) -> None:
        """Write the best trial as a config that fit accepts.

        Args:
            output: the file to write; default: print the config.
            ckpt_path: fit's option, ignored (a config fit saved has it).
            weights_only: fit's option, ignored (a config fit saved has it).
        """
        raise NotImplementedError("use the frameworm-search command")

    def plot(self, model: Any, datamodule: Any = None, output: Optional[str] = None,
             kinds: Optional[list[str]] = None, ckpt_path: Optional[str] = None,
             weights_only: Optional[bool] = None) -> None:
        """Write the analysis report of the stored study: an interactive report.html and trials.csv.

        Args:
            output: the folder to write; default: <root_dir>/<study>/report.
            kinds: the plots to draw (history, curves, importance, parallel, slice, contour, edf);
                default: all.
            ckpt_path: fit's option, ignored (a config fit saved has it).
            weights_only: fit's option, ignored (a config fit saved has it).
        """
        raise NotImplementedError("use the frameworm-search command or frameworm_lightning.analysis")


class SearchCLI(LightningCLI):
    """LightningCLI plus a ``search:`` config section and the search subcommands.

    Every LightningCLI argument works as usual; by default the model and data are
    given by ``class_path`` in the config (``model_class=None``), as for a search
    over any LightningModule.

    Example:
        >>> SearchCLI(args=["search", "-c", "vae.yaml"])  # doctest: +SKIP
    """

    plan: SearchPlan
    call: CLICall  # how this CLI was called: each trial calls it again on its config

    def __new__(cls, *args: Any, **kwargs: Any) -> SearchCLI:
        cli = super().__new__(cls)
        cli.call = CLICall(cls, args, kwargs)  # as given to the class, whatever a subclass's __init__ takes
        return cli

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("trainer_class", SearchTrainer)
        kwargs.setdefault("parser_class", SearchArgumentParser)
        kwargs.setdefault("parser_kwargs", {"description": "Hyperparameter search for LightningModules."})
        self._parsers: list[Any] = []
        self._search_sections = 0  # parsers given the search: section by add_arguments_to_parser
        # Run as a command (by frameworm-search or a user's script), its errors are one line each;
        # built with run=False (each trial's build, a user's own code), they are raised.
        run = inspect.signature(LightningCLI).bind_partial(*args, **kwargs).arguments.get("run", True)
        with _as_command() if run else nullcontext():
            super().__init__(*args, **kwargs)

    # Hooks ------------------------------------------------------------------------------
    def init_parser(self, **kwargs: Any) -> Any:
        parser = super().init_parser(**kwargs)
        self._parsers.append(parser)  # the links made on it name the source of a searched link target
        return parser

    def parse_arguments(self, parser: Any, args: Any) -> None:
        if not self._search_sections:  # else jsonargparse: "Subcommand 'search' does not accept option 'search.space...'"
            name = type(self).__name__
            raise UsageError(f"{name}.add_arguments_to_parser does not call super().add_arguments_to_parser(parser), "
                             "which adds the search: section; call it first there.")
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand in _SEARCH_COMMANDS:
            # This process trains nothing (each trial is seeded search.seed + n): no seeding here,
            # nor LightningCLI's "No seed found, seed set to 0" and "Seed set to 0" at every start.
            self.config[subcommand]["seed_everything"] = False

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), **{name: set(_SKIP) for name in _SEARCH_COMMANDS}}

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--search", type=SearchConfig, help="The hyperparameter search (ignored by fit/validate/test/predict)."
        )
        self._search_sections += 1

    def before_instantiate_classes(self) -> None:
        if self.subcommand not in _SEARCH_COMMANDS:
            return
        fixed = {k: v for p in self._parsers for k, v in getattr(p, "section_classes", {}).items()}
        self.plan = build_plan(self.config[self.subcommand], self.model_class, self.datamodule_class,
                               reading=self.subcommand in ("trials", "plot"), section_classes=fixed)
        if self.subcommand in ("search", "worker"):
            ckpt_path = self.config[self.subcommand].get("ckpt_path")
            if ckpt_path is not None:
                raise UsageError(f"ckpt_path={ckpt_path!r} is fit's option to resume a training; a search trains each "
                                 "trial from its start: remove it (to fine-tune from a checkpoint, load its weights in "
                                 "the module).")
            self._check_links()
            self.call.check()
        # The Trainer LightningCLI builds for a search subcommand never trains: keep its
        # "GPU available..." lines off the screen.
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    def instantiate_classes(self) -> None:
        if self.subcommand not in _SEARCH_COMMANDS:
            super().instantiate_classes()
            return
        # Building the config's classes once (model, data, optimizer...) finds what every trial
        # would fail on before any trial is claimed: say it in one line.
        try:
            super().instantiate_classes()
        except (TypeError, ValueError, MisconfigurationException) as err:
            if isinstance(err, FramewormError):
                raise
            text = " ".join(str(err).split())
            raise UsageError(f"the config does not build: {type(err).__name__}: {text}; fix it before searching") from None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        if self.subcommand in _SEARCH_COMMANDS:
            # This Trainer never trains (each trial builds its own): no logger to set up, and
            # a list of its own, as the Trainer appends its default callbacks to the list given.
            kwargs = {"logger": False, "enable_checkpointing": False, "callbacks": [], **kwargs}
        return super().instantiate_trainer(**kwargs)

    # Subcommands ------------------------------------------------------------------------
    def search(self, **_: Any) -> None:
        """Run the search, or resume its study."""
        self._run("fit")

    def worker(self, wait: bool = True, **_: Any) -> None:
        """Join the study as a pull worker."""
        if not self.plan.storage.startswith(("sqlite:///", "postgresql")) or self.plan.storage == "sqlite:///:memory:":
            raise UsageError(f"a worker joins a study other processes share, but search.storage is {masked_url(self.plan.storage)!r}; "
                             "use a postgresql://user@host/db URL (many machines) or sqlite:///path/study.db (one machine).")
        self._run("worker", wait=wait)

    def trials(self, **_: Any) -> None:
        """Print the stored trials as a table."""
        from rich.console import Console  # noqa: PLC0415

        from frameworm_lightning.cli._table import trials_table  # noqa: PLC0415

        study = self._load_study()
        console = Console() if sys.stdout.isatty() else Console(width=200)
        console.print(trials_table(study))

    def best(self, output: Optional[str] = None, **_: Any) -> None:
        """Write the config the best trial trained, as recorded when it ran."""
        study = self._load_study()
        best = study.best_trial
        if best is None:
            raise UsageError(f"study {study.name!r} has no complete trial yet; run: {self._prog()} search {self._config_args()}")
        cfg = self.config[self.subcommand].search
        seed = None if cfg.seed is None else cfg.seed + best.number
        current = trial_fit_config(self._fit_dump(), study.space.canonical(best.params), seed)
        recorded = best.system_attrs.get(CONFIG_ATTR)
        if recorded is None:
            print(f"note: trial {best.number} recorded no config (it ran before frameworm-search recorded them); "
                  "wrote the current command line's config with its params.", file=sys.stderr, flush=True)
        elif (changes := _differences(recorded, current)):
            print(f"note: the current command line differs from what trial {best.number} trained ({changes}); "
                  "wrote what the trial trained.", file=sys.stderr, flush=True)
        config = current if recorded is None else recorded
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
              f"{self._prog()} fit -c {path}", flush=True)

    def plot(self, output: Optional[str] = None, kinds: Optional[list[str]] = None, **_: Any) -> None:
        """Write the report of frameworm_lightning.analysis for the stored study."""
        try:
            from frameworm_lightning import analysis  # noqa: PLC0415 - needs the analysis extra
        except ModuleNotFoundError as err:
            raise UsageError(str(err)) from None
        unknown = sorted(set(kinds or ()) - set(analysis.REPORT_KINDS))
        if unknown:
            raise UsageError(f"unknown plot kind(s) {', '.join(unknown)}; choose from {', '.join(analysis.REPORT_KINDS)}.")
        study = self._load_study()
        if not study.trials_in(TrialState.COMPLETE):
            raise UsageError(f"study {study.name!r} has no complete trial to plot yet.")
        cfg = self.config[self.subcommand].search
        folder = Path(output) if output else Path(cfg.root_dir) / study.name / "report"
        page = analysis.write_report(study, folder, kinds=tuple(kinds or analysis.REPORT_KINDS))
        print(f"wrote {page} (and trials.csv) for study {study.name!r}", flush=True)

    # Helpers ----------------------------------------------------------------------------
    def _check_links(self) -> None:
        """A space key that a ``parser.link_arguments`` link sets: an error naming the link."""
        dump = self._fit_dump()
        space = self.config[self.subcommand].search.space
        keys = space.as_dict() if hasattr(space, "as_dict") else dict(space or {})
        check_space_links({k: dotted_key(dump, runner_key(k)) for k in keys},
                          dumped_link_targets(self.parser, self.config, self.subcommand),
                          [link for p in self._parsers for link in getattr(p, "links", ())], type(self).__name__)

    def _added_callbacks(self) -> list[Any]:
        """The callbacks LightningCLI gives ``fit``'s Trainer besides ``trainer.callbacks``: those of the
        callback groups (``parser.add_lightning_class_args(EarlyStopping, "early_stopping")``, which the
        parser lists in ``callback_keys``) and ``trainer_defaults``' callbacks."""
        section = self.config_init[self.subcommand]
        keys = dict.fromkeys(k for p in self._parsers for k in getattr(p, "callback_keys", ()))
        groups = [section.get(k) for k in keys]
        return [cb for cb in groups if cb is not None] + _as_list(self.trainer_defaults.get("callbacks"))

    def _fit_dump(self) -> dict[str, Any]:
        """This subcommand's config as ``fit`` takes it: no ``search:`` section, no options of the subcommand,
        no link targets (the links set them, as in the config.yaml LightningCLI's ``fit`` saves)."""
        dump = yaml.safe_load(self.parser.dump(self.config, skip_none=False))[self.subcommand]
        method = getattr(SearchTrainer, self.subcommand)
        own = set(inspect.signature(method).parameters) - {"self", "model", "datamodule"}
        for key in ("search", "config", *own):
            dump.pop(key, None)
        return dump

    def _run(self, how: str, **kwargs: Any) -> None:
        """``SearchRunner.fit`` (``how="fit"``) or ``.worker`` under the live progress view."""
        from frameworm_lightning.cli._progress import SearchProgress  # noqa: PLC0415 - rich only here
        from frameworm_lightning.runner import SearchRunner  # noqa: PLC0415

        plan = self.plan
        section = self.config_init[self.subcommand]
        cfg: SearchConfig = section.search
        trainer = dict(section.trainer)
        callbacks = [*_as_list(trainer.pop("callbacks", None)), *self._added_callbacks()]  # bound to each trial
        base = self._fit_dump()
        try:
            runner = SearchRunner(
                metric=cfg.metric, mode=cfg.mode, sampler=cfg.sampler, n_trials=cfg.n_trials,
                trainer_kwargs=trainer_overrides(trainer), storage=plan.storage, study_name=plan.study_name,
                root_dir=cfg.root_dir, seed=cfg.seed, objective=cfg.objective,
                callbacks=[TrialConfig(plan.sections), *callbacks, *cfg.stopping],
                retry_failed=cfg.retry_failed, allow_sampler_change=cfg.allow_sampler_change,
                stop_on_error=cfg.stop_on_error, quiet=True, n_jobs=cfg.n_jobs,
                executor=cfg.executor, gpus_per_trial=cfg.gpus_per_trial, trial_timeout=cfg.trial_timeout,
                loggers=cfg.loggers, keep_checkpoints=cfg.keep_checkpoints,
            )
        except (ValueError, ModuleNotFoundError) as err:
            if isinstance(err, FramewormError):
                raise
            raise UsageError(f"search: {err}") from None
        total: int | None = None
        if how == "fit":
            bound = runner.sampler.max_trials(plan.space)
            total = bound if cfg.n_trials is None else (cfg.n_trials if bound is None else min(cfg.n_trials, bound))
        progress = SearchProgress(plan.study_name, cfg.metric, cfg.mode, total, n_jobs=cfg.n_jobs,
                                  storage=plan.storage, study_name=plan.study_name)
        args = (plan.module_cls, plan.space, plan.datamodule_cls)
        common = {"model_kwargs": plan.model_kwargs, "datamodule_kwargs": plan.data_kwargs,
                  "printer": progress, "build_trial": TrialBuild(self.call, base, cfg.seed)}
        try:
            with progress:
                if how == "fit":
                    result = runner.fit(*args, enqueue=plan.enqueue, **common)
                else:
                    result = runner.worker(*args, **common, **kwargs)
        except MetricNotFoundError as err:
            # The runner ends the search at the first trial that never logged the metric (runner/_rules.py).
            where = "search.metric" if err.metric == cfg.metric else "a callback's monitor"
            raise UsageError(f"{where}: {err}") from None
        except (KeyboardInterrupt, SystemExit) as exc:
            # Lightning turns Ctrl+C during fit into sys.exit(1), raised while handling the interrupt.
            if not isinstance(exc, KeyboardInterrupt) and not isinstance(exc.__context__, KeyboardInterrupt):
                raise
            reruns = _waiting_reruns(plan.storage, plan.study_name)
            cut = f", {reruns} interrupted (they run first when the search resumes)" if reruns else ""
            print(
                f"interrupted: {progress.finished} finished trial(s) stored in study {plan.study_name!r} "
                f"({masked_url(plan.storage)}){cut}; run the same command again to resume.", file=sys.stderr, flush=True,
            )
            raise KeyboardInterrupt from None
        self._summary(result, progress)

    def _summary(self, result: Any, progress: Any) -> None:
        plan, metric = self.plan, result.metric
        interrupted = sum(t.interrupted for t in result.trials)
        counts = {s: result.count(s) for s in TrialState}
        print(
            f"study {plan.study_name!r}: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
            f"{counts[TrialState.FAILED] - interrupted} failed"
            + (f", {interrupted} interrupted and run again" if interrupted else "")
            + (f"; resumed with {progress.stored} trials stored" if progress.stored else "")
            + f" ({masked_url(plan.storage)})", flush=True,
        )
        best = result.best_trial
        if best is None:
            print(f"no trial completed yet; see the trials with: {self._prog()} trials {self._config_args()}",
                  flush=True)
            if counts[TrialState.FAILED] > interrupted and not counts[TrialState.PRUNED]:
                sys.exit(1)  # every trial failed: a script running the search should notice
            return
        print(f"best {metric}={best.value:.6g} (trial {best.number}): {format_params(result.best_params or {})}",
              flush=True)
        print(f"write it as a fit config with: {self._prog()} best {self._config_args()} --output best.yaml", flush=True)

    @staticmethod
    def _prog() -> str:
        """How the user called this command, for the hints that name the next one."""
        called = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
        if called in ("", "__main__.py", "frameworm-search", "-c"):
            return "frameworm-search"
        return f"python {sys.argv[0]}" if called.endswith(".py") else called

    def _config_args(self) -> str:
        files = self.config[self.subcommand].get("config") or []
        return " ".join(f"-c {f}" for f in files) or "-c <config.yaml>"

    def _load_study(self) -> Any:
        from frameworm_lightning.study import Study  # noqa: PLC0415

        storage = self.plan.storage
        if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
            raise UsageError(
                f"no study stored yet: {storage[len('sqlite:///'):]} does not exist; run "
                f"{self._prog()} search {self._config_args()} first, or set search.storage to an earlier search's database."
            )
        store = open_storage(storage)
        if store.load_study(self.plan.study_name) is None:
            known = ", ".join(store.study_names()) or "none"
            raise UsageError(
                f"no study named {self.plan.study_name!r} in {masked_url(storage)!r}; stored studies: {known}. Set "
                f"search.study_name to one of them, or run {self._prog()} search {self._config_args()} first."
            )
        return Study.load(self.plan.study_name, store)


def _as_list(value: Any) -> list[Any]:
    """A ``callbacks`` value (``None``, one callback or a list) as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _waiting_reruns(storage: str, study_name: str) -> int:
    """How many interrupted trials of the study wait to run again (0 if it cannot be read)."""
    try:
        store = open_storage(storage)
        record = store.load_study(study_name)
        if record is None:
            return 0
        waiting = {t.number for t in store.get_trials(record.study_id, (TrialState.WAITING,))}
        cut = store.get_trials(record.study_id, (TrialState.FAILED,))
        return sum(1 for t in cut if t.interrupted and t.system_attrs.get("requeued_as") in waiting)
    except Exception:  # noqa: BLE001 - only the closing message's count: never hide the interrupt
        return 0


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _differences(recorded: Any, current: Any, key: str = "", limit: int = 4) -> str:
    """The keys where two configs differ, as ``key: current now, recorded in the trial``."""
    found: list[str] = []

    def walk(a: Any, b: Any, at: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in [*a, *(k for k in b if k not in a)]:
                walk(a.get(k), b.get(k), f"{at}.{k}" if at else str(k))
        elif a != b:
            found.append(f"{at}: {_short(b)} now, {_short(a)} in the trial")

    walk(recorded, current, key)
    more = f"; {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(found[:limit]) + more


def _dashboard(argv: list[str]) -> None:
    """``frameworm-search dashboard --storage URL``: the live web dashboard (the ``dashboard`` extra)."""
    try:
        from frameworm_lightning.dashboard._cli import main as dashboard_main  # noqa: PLC0415 - optional extra
    except ModuleNotFoundError as err:
        raise UsageError(str(err)) from None
    dashboard_main(argv)


def main(args: Optional[list[str]] = None) -> None:
    """The ``frameworm-search`` console script.

    Errors a user can fix print as one line (exit code 2); set ``FRAMEWORM_DEBUG=1``
    to see their traceback. An interrupted search exits with 130 and resumes when
    run again. ``dashboard`` needs no search config and has its own parser
    (``frameworm_lightning/dashboard/_cli.py``).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] == ["dashboard"]:
        with _as_command():
            _dashboard(argv[1:])
        return
    SearchCLI(args=args)


@contextmanager
def _as_command() -> Iterator[None]:
    """A command's ending: an error a user can fix as one line (exit code 2; its traceback with
    ``FRAMEWORM_DEBUG=1``), Ctrl+C as exit code 130."""
    try:
        yield
    except (FramewormError, UsageError) as err:
        if os.environ.get("FRAMEWORM_DEBUG"):
            raise
        print(f"error: {explain(err)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
