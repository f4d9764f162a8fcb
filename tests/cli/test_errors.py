"""Each mistake a user will meet: exit code 2, one ``error:`` line with the fix, no traceback."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from frameworm_lightning import Study, TrialState
from frameworm_lightning.cli import main
from frameworm_lightning.cli._errors import parse_error
from tests.cli.conftest import Started, search_config, start_cli, write_config


def _unknown_key(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["space"]["model.init_args.lrr"] = [0.1, 0.2]


def _bad_dimension(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["space"]["model.init_args.lr"] = {"type": "real", "low": 0.5, "high": 0.1}


def _unknown_sampler(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["sampler"] = {"class_path": "frameworm_lightning.NoSuchSampler"}


def _unknown_policy(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["stopping"] = [{"class_path": "frameworm_lightning.NoSuchPolicy"}]


def _unwritable_storage(c: dict[str, Any], tmp: Path) -> None:
    (tmp / "a_file").write_text("not a folder")
    c["search"]["storage"] = f"sqlite:///{tmp / 'a_file' / 'study.db'}"


def _metric_never_logged(c: dict[str, Any], tmp: Path) -> None:
    c["search"]["metric"] = "val_acc"


def _config_does_not_build(c: dict[str, Any], tmp: Path) -> None:
    c["optimizer"] = {"class_path": "torch.optim.SGD", "init_args": {"lr": -1.0}}


def _fit_checkpoint(c: dict[str, Any], tmp: Path) -> None:
    c["ckpt_path"] = "last.ckpt"  # fit's option (a config fit saved has ckpt_path: null, which is accepted)


def _every_trial_fails_in_setup(c: dict[str, Any], tmp: Path) -> None:
    c["optimizer"] = {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}
    c["search"]["space"] = {"optimizer.init_args.lr": [-1.0, -2.0]}


CASES: list[tuple[str, Callable[[dict[str, Any], Path], None], list[str]]] = [
    ("unknown space key", _unknown_key,
     ["unknown search.space key 'model.init_args.lrr'", "TinyModel has no argument 'lrr'",
      "Valid keys: model.init_args.hidden, model.init_args.lr, model.init_args.sleep, data.init_args.batch_size"]),
    ("bad dimension spec", _bad_dimension,
     ["bad search.space: model.init_args.lr: Real needs low < high", "{type: real, low:"]),
    ("unknown sampler", _unknown_sampler,
     ["unknown sampler 'frameworm_lightning.NoSuchSampler' in search.sampler",
      "known: frameworm_lightning.BayesianSampler, frameworm_lightning.GridSampler", "frameworm_lightning.SobolSampler"]),
    ("unknown policy", _unknown_policy,
     ["unknown stopping policy 'frameworm_lightning.NoSuchPolicy' in search.stopping", "stopping: [{class_path:"]),
    ("unwritable storage", _unwritable_storage,
     ["a_file", "Set search.storage to a writable sqlite:///"]),
    ("metric never logged", _metric_never_logged,
     ["search.metric: metric 'val_acc' was never logged; logged metrics: train_loss, val_loss"]),
    ("config does not build", _config_does_not_build,
     ["error: the config does not build: ValueError: Invalid learning rate: -1.0; fix it before searching."]),
    ("fit's checkpoint", _fit_checkpoint,
     ["error: ckpt_path='last.ckpt' is fit's option to resume a training; a search trains each trial from its "
      "start: remove it (to fine-tune from a checkpoint, load its weights in the module)."]),
    ("every trial fails in setup", _every_trial_fails_in_setup,
     ["error: trial 0 failed: ValueError: Invalid learning rate: -",
      "(before its first training step: every trial would fail the same way, so the search stopped)."]),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Started]]:
    """Every case started at once (each is mostly Python start-up), waited for by its test."""
    started = {}
    for name, mistake, _ in CASES:
        tmp = tmp_path_factory.mktemp(name.replace(" ", "_"))
        config = search_config(tmp)
        mistake(config, tmp)
        path = write_config(tmp / "search.yaml", config)
        started[name] = (tmp, start_cli("search", "-c", str(path), cwd=tmp))
    return started


@pytest.mark.parametrize(("name", "expected"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_clear_line(runs: dict[str, tuple[Path, Started]], name: str, expected: list[str]) -> None:
    tmp, started = runs[name]
    run = started.wait()
    assert run.returncode == 2, (run.stdout[-2000:], run.stderr[-3000:])
    assert "Traceback" not in run.stderr
    assert len(run.error_lines) == 1, run.stderr[-3000:]
    for fragment in expected:
        assert fragment in run.error_lines[0], run.error_lines[0]
    if name in ("metric never logged", "every trial fails in setup"):
        # One trial ran and is stored; the search stopped there instead of failing every trial.
        study = Study.load("TinyModel", f"sqlite:///{tmp / 'study.db'}")
        assert [t.state for t in study.trials] == [TrialState.FAILED]
    elif name != "unwritable storage":
        assert not (tmp / "runs").exists()  # rejected before any training


# Parse errors: jsonargparse's own message with ~70 lines of usage before it; ours is one line.
def _yaml_syntax(text: str) -> str:
    # A flow mapping left open: `init_args: {lr: 0.1` on line 3, the next key on line 4.
    return text.replace("init_args:\n    lr: 0.1\n", "init_args: {lr: 0.1\n", 1)


def _mode_typo(text: str) -> str:
    return text.replace("mode: min", "mode: minn", 1)


def _negative_trials(text: str) -> str:
    return text.replace("n_trials: 3", "n_trials: -3", 1)


def _replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


_SAMPLERS = ("known: frameworm_lightning.BayesianSampler, frameworm_lightning.GridSampler, "
             "frameworm_lightning.MultiFidelitySampler, frameworm_lightning.RandomSampler, frameworm_lightning.SobolSampler. "
             "Write e.g. sampler: {class_path: frameworm_lightning.RandomSampler}.")

PARSE_CASES: list[tuple[str, Callable[[str], str], tuple[str, ...], str]] = [
    ("yaml syntax", _yaml_syntax, (),
     "error: search.yaml is not valid YAML: did not find expected ',' or '}' at line 4, column 5 "
     "(while parsing a flow mapping that starts at line 3, column 14); fix the syntax there."),
    ("mode typo", _mode_typo, (),
     "error: search.mode is 'minn'; write one of: min, max."),
    ("negative n_trials", _negative_trials, (),
     "error: search.n_trials is -3; write an integer > 0, or null."),
    ("negative n_trials flag", lambda text: text, ("--search.n_trials", "-2"),
     "error: search.n_trials is -2; write an integer > 0, or null."),
    ("negative n_jobs flag", lambda text: text, ("--search.n_jobs=0",),
     "error: search.n_jobs is 0; write an integer > 0."),
    # A class that does not exist: the line lost the first letters of jsonargparse's message ("model: es not
    # validate against any of the Union subtypes ...", ~400 characters) for every key but the sampler's and
    # the policies'; a short name showed the whole mapping as the name.
    ("model class typo", _replace("class_path: tiny.TinyModel", "class_path: tiny.TinyModl"), (),
     "error: unknown class 'tiny.TinyModl' in model (module 'tiny' has no attribute 'TinyModl'); did you mean "
     "tiny.TinyModel? model takes the import path (module.ClassName) of a subclass of LightningModule."),
    ("optimizer class typo", lambda text: text, ("--optimizer", "torch.optim.SGDD", "--optimizer.lr", "0.1"),
     "error: unknown class 'torch.optim.SGDD' in optimizer (module 'torch.optim' has no attribute 'SGDD'); did you "
     "mean torch.optim.SGD? optimizer takes the import path (module.ClassName) of a subclass of Optimizer."),
    ("sampler class typo", _replace("frameworm_lightning.SobolSampler", "frameworm_lightning.RandomSamplr"), (),
     "error: unknown sampler 'frameworm_lightning.RandomSamplr' in search.sampler (module 'frameworm_lightning' has no "
     "attribute 'RandomSamplr'); did you mean frameworm_lightning.RandomSampler? " + _SAMPLERS),
    ("sampler short name typo", _replace("frameworm_lightning.SobolSampler", "RandomSamplr"), (),
     "error: unknown sampler 'RandomSamplr' in search.sampler (Expected a dot import path string: RandomSamplr); "
     "did you mean frameworm_lightning.RandomSampler? " + _SAMPLERS),
    ("callback short name typo", lambda text: text, ("--trainer.callbacks+=EarlyStoping",),
     "error: unknown callback 'EarlyStoping' in trainer.callbacks (Expected a dot import path string: EarlyStoping); "
     "did you mean lightning.pytorch.callbacks.EarlyStopping? known: frameworm_lightning.ASHA, frameworm_lightning.AllOf, "
     "frameworm_lightning.AnyOf, frameworm_lightning.BudgetStopping, frameworm_lightning.Hyperband, "
     "frameworm_lightning.ImprovementStopping, frameworm_lightning.MedianStopping, frameworm_lightning.SuccessiveHalving, "
     "frameworm_lightning.ThresholdStopping, or any Lightning callback by its import path. Write e.g. "
     "--trainer.callbacks+=frameworm_lightning.ImprovementStopping."),
    # A known class with a wrong argument was called an unknown sampler or policy; a model's named "model".
    ("sampler argument typo", _replace("seed: 1", "sed: 1"), (),
     "error: search.sampler: frameworm_lightning.SobolSampler takes no argument 'sed'; did you mean 'seed'? Its "
     "arguments: --search.sampler.help frameworm_lightning.SobolSampler."),
    ("sampler argument type", _replace("seed: 1", "seed: abc"), (),
     "error: search.sampler.init_args.seed is 'abc'; write an integer, or null."),
    ("model argument type", _replace("lr: 0.1", "hidden: abc"), (),
     "error: model.init_args.hidden is 'abc'; write an integer."),
    # A key no section has: the closest keys of its section (difflib over the parser's keys), or the
    # section that has it; search.callbacks is said where each kind of callback goes.
    ("search key typo", _replace("n_trials: 3", "n_trial: 3"), (),
     "error: Subcommand 'search' does not accept option 'search.n_trial'; did you mean search.n_trials?"),
    ("search key typo flag", lambda text: text, ("--search.n_trails", "3"),
     "error: unrecognized arguments: --search.n_trails 3; did you mean --search.n_trials?"),
    ("trainer key typo flag", lambda text: text, ("--trainer.max_epocs=2",),
     "error: unrecognized arguments: --trainer.max_epocs=2; did you mean --trainer.max_epochs?"),
    ("trainer key in search", _replace("  n_trials: 3\n", "  n_trials: 3\n  max_epochs: 2\n"), (),
     "error: Subcommand 'search' does not accept option 'search.max_epochs'; did you mean trainer.max_epochs?"),
    ("search callbacks", _replace("  n_trials: 3\n", "  n_trials: 3\n  callbacks: []\n"), (),
     "error: Subcommand 'search' does not accept option 'search.callbacks'; stopping policies go in "
     "search.stopping, Trainer callbacks in trainer.callbacks."),
    ("unknown key, nothing close", _replace("  n_trials: 3\n", "  n_trials: 3\n  zzz: 2\n"), (),
     "error: Subcommand 'search' does not accept option 'search.zzz'; see --help for the options."),
]


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("mistake", "flags", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_a_parse_error_is_one_line_and_touches_nothing(
    mistake: Callable[[str], str], flags: tuple[str, ...], expected: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    config = search_config(tmp_path)
    Study.create("TinyModel", config["search"]["space"], storage=config["search"]["storage"]).storage.close()
    text = yaml.safe_dump(config, sort_keys=False)
    assert mistake(text) != text or flags
    (tmp_path / "search.yaml").write_text(mistake(text))
    before = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # tiny.TinyModel, as the subprocess cases get it
    monkeypatch.setattr(sys, "argv", ["frameworm-search"])
    with pytest.raises(SystemExit) as exit_:
        main(["search", "-c", "search.yaml", *flags])  # parse errors come before anything is imported or built
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", expected + "\n")
    assert _tree(tmp_path) == before  # the stored study byte for byte, and no trial folder


def test_a_message_of_another_form_keeps_every_letter() -> None:
    message = 'Parser key "trainer.precision":\n  Does not validate against any of the Union subtypes\n  Given value: 99'
    assert parse_error(message) == ("trainer.precision: Does not validate against any of the Union subtypes Given value: "
                                     "99; see --help for the options.")
