"""LightningCLI argument links (``parser.link_arguments``) in a search.

Each trial is the config ``fit`` would train with the trial's values set: a link's
target gets the trial's value of its source, whether jsonargparse applies the link when
it parses the config or when it instantiates the classes. A space key that is a link's
target (which the link would overwrite) is an error before anything trains.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import yaml

from frameworm_lightning import Study, TrialState
from frameworm_lightning.cli._errors import UsageError
from frameworm_lightning.cli._links import check_space_links, dumped_link_targets
from frameworm_lightning.cli._trial_config import CLICall
from frameworm_lightning.exceptions import ConfigKeyError
from tests.cli.conftest import Run, Started, start_cli, write_config

SCRIPT = "linked.py"  # tests/cli/linked.py: LinkedCLI, a SearchCLI with two links


def _config(tmp: Path, space: dict[str, Any], **search: Any) -> dict[str, Any]:
    return {
        "model": {"class_path": "linked.LinkedModel", "init_args": {"lr": 0.1}},
        "data": {"class_path": "linked.SizedData", "init_args": {"batch_size": 16, "n": 64}},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "limit_train_batches": 1, "log_every_n_steps": 1},
        "search": {"n_trials": None, "sampler": {"class_path": "frameworm_lightning.GridSampler"}, "space": space,
                   "storage": f"sqlite:///{tmp / 'study.db'}", "root_dir": str(tmp / "runs"), **search},
    }


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Started]]:
    """The search over the links' sources, and each search of a link's target, started at once."""
    runs: dict[str, tuple[Path, Started]] = {}
    cases = {
        # Two worker processes: what builds each trial travels to them. Two trials, each source its own value.
        "sources": _config(Path("."), {"data.init_args.batch_size": [4, 8], "data.init_args.n": [32, 64]}, n_jobs=2,
                           n_trials=2, enqueue=[{"data.init_args.batch_size": 4, "data.init_args.n": 64},
                                                {"data.init_args.batch_size": 8, "data.init_args.n": 32}]),
        "parse target": _config(Path("."), {"model.init_args.batch_size": [4, 8]}),
        "instantiate target": _config(Path("."), {"model.lr": [0.1], "model.train_size": [8, 16]}),
    }
    for name, config in cases.items():
        tmp = tmp_path_factory.mktemp(name.replace(" ", "_"))
        config["search"].update(storage=f"sqlite:///{tmp / 'study.db'}", root_dir=str(tmp / "runs"))
        write_config(tmp / "search.yaml", config)
        runs[name] = tmp, start_cli("search", "-c", "search.yaml", cwd=tmp, script=SCRIPT)
    return runs


def test_each_trial_model_gets_the_linked_values_of_its_own_params(started: dict[str, tuple[Path, Started]]) -> None:
    folder, proc = started["sources"]
    run: Run = proc.wait()
    assert run.returncode == 0, run.stderr[-3000:]
    trials = Study.load("LinkedModel", f"sqlite:///{folder / 'study.db'}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {(t.params["data.batch_size"], t.params["data.n"]) for t in trials} == {(4, 64), (8, 32)}
    for t in trials:
        ckpt = torch.load(t.system_attrs["checkpoint_path"], map_location="cpu", weights_only=True)
        # What the model's __init__ received: batch_size linked when the config is parsed, train_size
        # linked from the built datamodule.
        assert ckpt["state_dict"]["received"].tolist() == [t.params["data.batch_size"], t.params["data.n"] * 3 // 4]
        # The trial's config is what fit takes: the links' targets are left to the links, as fit's own config.yaml.
        written = yaml.safe_load((Path(t.system_attrs["trial_dir"]) / "config.yaml").read_text())
        assert written == t.system_attrs["cli_config"]
        assert written["model"]["init_args"] == {"lr": 0.1}
        assert written["data"]["init_args"] == {"batch_size": t.params["data.batch_size"], "n": t.params["data.n"]}


WHERE = "(parser.link_arguments in LinkedCLI.add_arguments_to_parser)"


@pytest.mark.parametrize(("case", "line"), [
    ("parse target", "search.space key 'model.init_args.batch_size' is the target of the link data.init_args.batch_size "
     f"--> model.init_args.batch_size {WHERE}, which sets it from the source in every trial; search "
     "'data.init_args.batch_size' instead, or drop the link."),
    ("instantiate target", "search.space key 'model.train_size' is the target of the link data.train_size --> "
     f"model.init_args.train_size {WHERE}, which sets it in every trial from the built classes; search the "
     "arguments that decide data.train_size instead, or drop the link."),
])
def test_searching_a_link_target_is_an_error_naming_the_link(started: dict[str, tuple[Path, Started]], case: str,
                                                             line: str) -> None:
    folder, proc = started[case]
    run = proc.wait()
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.error_lines == [f"error: {line}"]
    assert "Traceback" not in run.stderr and not (folder / "study.db").exists()


# The parts, without a search -------------------------------------------------------------
BASE = {"model": {"class_path": "linked.LinkedModel"}, "data": {"class_path": "linked.SizedData"},
        "trainer": {"logger": False, "enable_checkpointing": False}, "seed_everything": False}


@pytest.fixture(scope="module")
def built() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(Path(__file__).parent))  # linked.py imports tiny as the subprocesses do
        mp.setattr(sys, "argv", ["linked.py"])
        from linked import LinkedCLI  # noqa: PLC0415

        yield LinkedCLI(args=BASE, run=False)


def test_the_parser_notes_each_link_and_a_dump_without_targets_leaves_them_out(built: Any) -> None:
    assert built.parser.links == [
        (("data.init_args.batch_size",), "model.init_args.batch_size", "parse"),
        (("data.train_size",), "model.init_args.train_size", "instantiate"),
    ]
    assert dumped_link_targets(built.parser, built.config) == {"model.init_args.batch_size", "model.init_args.train_size"}


LINKS = [(("data.init_args.batch_size",), "model.init_args.batch_size", "parse"),
         (("optimizer",), "model.init_args.optimizer", "parse"),
         (("data.init_args.a", "data.init_args.b"), "model.init_args.ab", "parse")]


@pytest.mark.parametrize(("key", "message"), [
    ("data.init_args.batch_size", None),  # a source: searched as any key
    ("model.init_args.lr", None),
    ("model.init_args.batch_size", "search 'data.init_args.batch_size' instead"),
    ("model.init_args.optimizer.init_args.lr", "search 'optimizer.init_args.lr' instead"),  # below the target
    ("model.init_args.ab", "search 'data.init_args.a' or 'data.init_args.b' instead"),
    ("model.init_args.c", "is the target of an argument link (parser.link_arguments in MyCLI.add_arguments_to_parser),"
                          " which sets it from the link's source in every trial"),  # a target a dump found
])
def test_a_searched_link_target_is_refused_with_the_fix(key: str, message: str | None) -> None:
    check = lambda: check_space_links({key: key}, {"model.init_args.c"}, LINKS, "MyCLI")  # noqa: E731
    if message is None:
        check()
    else:
        with pytest.raises(ConfigKeyError, match=re.escape(message)):
            check()


def test_a_trial_build_calls_the_cli_class_again_with_its_config(built: Any) -> None:
    LinkedCLI = type(built)  # noqa: N806

    assert built.call == CLICall(LinkedCLI, (), {"args": BASE, "run": False})
    built.call.check()

    class Fixed(LinkedCLI):
        def __init__(self) -> None:
            super().__init__(args=BASE, run=False)

    with pytest.raises(UsageError, match=r"Fixed\(\.\.\.\) cannot be called again with args= and run= .*let "
                                         r"Fixed.__init__ take args and run"):
        Fixed().call.check()


def test_a_subclass_that_drops_the_search_section_is_told_to_call_super(built: Any, capsys: Any) -> None:
    # It was: "Subcommand 'search' does not accept option 'search.space.data.init_args.batch_size'".
    class NoSuper(type(built)):  # type: ignore[misc]
        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.link_arguments("data.init_args.batch_size", "model.init_args.batch_size")

    with pytest.raises(SystemExit) as exit_:
        NoSuper(args=["search", "--search.n_trials", "1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "error: NoSuper.add_arguments_to_parser does not call super().add_arguments_to_parser(parser), which adds "
        "the search: section; call it first there.\n")
