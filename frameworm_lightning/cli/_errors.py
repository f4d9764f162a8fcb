"""The errors a user of ``frameworm-search`` meets, each as one line that says the fix.

Two sources:

* jsonargparse rejects the command line or a config file (a YAML syntax error, a value of
  the wrong type, a ``class_path`` that names no sampler or stopping policy):
  :class:`SearchArgumentParser` (LightningCLI's ``parser_class`` hook) prints its message
  as one line that names the key, the value and what to write instead, in place of
  jsonargparse's usage text (~70 lines) followed by the message;
* our own checks raise a :class:`~frameworm_lightning.FramewormError` (a bad space, an
  unknown key, a storage that cannot be written, a metric never logged) or a
  :class:`UsageError`; :func:`explain` turns either into the line ``main`` prints.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import os
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any, NoReturn

import yaml

from lightning.pytorch import callbacks as lightning_callbacks
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningArgumentParser, LRSchedulerTypeTuple
from torch.optim import Optimizer

import frameworm_lightning
from frameworm_lightning.exceptions import (
    ConfigKeyError,
    FramewormError,
    SamplerError,
    SpaceError,
    StorageError,
    StudyMismatchError,
)
from frameworm_lightning.runner._routing import init_arguments
from frameworm_lightning.samplers import Sampler

__all__ = ["SearchArgumentParser", "UsageError", "explain", "known_policies", "known_samplers", "parse_error"]


class UsageError(Exception):
    """A mistake in how the command was called; ``main`` prints it as one line (exit code 2)."""


def _exported(base: type) -> list[str]:
    return [
        f"frameworm_lightning.{name}" for name in frameworm_lightning.__all__
        if inspect.isclass(obj := getattr(frameworm_lightning, name)) and issubclass(obj, base)
        and obj is not base and not inspect.isabstract(obj)
    ]


def known_samplers() -> list[str]:
    """The samplers frameworm_lightning exports, as ``class_path`` values."""
    return _exported(Sampler)


def known_policies() -> list[str]:
    """The stopping policies (Lightning callbacks) frameworm_lightning exports, as ``class_path`` values."""
    return _exported(Callback)


_DIMENSION_FORMS = (
    "a dimension is {type: real, low: 1.0e-4, high: 1.0e-2, log: true}, {type: integer, low: 1, high: 8}, "
    "{type: categorical, choices: [a, b]} or a list of choices"
)


def explain(err: BaseException) -> str:
    """One line for an error we raise on purpose: what is wrong, then how to fix it."""
    text = str(err).strip()
    if text and not text.endswith((".", "!", "?")):
        text += "."
    if isinstance(err, UsageError):
        return text
    if isinstance(err, SpaceError):
        return f"bad search.space: {text} ({_DIMENSION_FORMS})."
    if isinstance(err, ConfigKeyError):
        return text
    if isinstance(err, StudyMismatchError):
        return f"{text} Set another search.study_name (or search.storage) to start a new study."
    if isinstance(err, StorageError):
        return f"{text} Set search.storage to a writable sqlite:///path/to/study.db or a postgresql:// URL."
    if isinstance(err, SamplerError):
        return f"{text} Known samplers: {', '.join(known_samplers())}."
    if isinstance(err, FramewormError):
        return text
    return f"{type(err).__name__}: {text}"


# Parse errors ------------------------------------------------------------------------
_KEY = re.compile(r'Parser key "([^"]+)"')
_GIVEN = re.compile(r"Given value: (.*)")
_CLASS_PROBLEM = re.compile(r"(\s*)(?:- )?Problem with given class_path '([^']+)':\s*$")
# What jsonargparse says when a class_path names no class of the expected kind (else the class
# exists and one of its init_args is wrong).
_NO_CLASS = ("has no attribute", "No module named", "Expected a dot import path", "Unexpected import path format",
             "does not correspond to a subclass", "does not implement protocol", "Multiple subclasses with name")
_WHAT = {
    "search.sampler": ("sampler", known_samplers, "sampler: {class_path: frameworm_lightning.RandomSampler}"),
    "search.stopping": ("stopping policy", known_policies, "stopping: [{class_path: frameworm_lightning.ASHA}]"),
    "trainer.callbacks": ("callback", known_policies, "--trainer.callbacks+=frameworm_lightning.ImprovementStopping"),
}


def _class_problem(message: str) -> tuple[str, str] | None:
    """``(class_path, what is wrong)`` from jsonargparse's "Problem with given class_path" block
    (the lines indented under it, dedented), or ``None``."""
    lines = message.splitlines()
    for i, line in enumerate(lines):
        if match := _CLASS_PROBLEM.match(line):
            depth, body = len(match.group(1)), []
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= depth:
                    break
                body.append(nxt)
            return match.group(2), textwrap.dedent("\n".join(body)).strip()
    return None


def _closest(word: str, names: list[str]) -> str | None:
    """The name closest to ``word``, case aside (``Asha`` is ``ASHA``), or ``None``."""
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1)
    return lowered[close[0]] if close else None


def _did_you_mean(name: str, prefix: str | None) -> str:
    """``"did you mean module.Class? "`` for the exported name of the module closest to ``name``."""
    if "." in name:
        module_name, attr = name.rsplit(".", 1)
        module = sys.modules.get(module_name)
        if module is None:
            return ""
        names = list(getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")])
        close = _closest(attr, names)
        return f"did you mean {module_name}.{close}? " if close else ""
    paths = _WHAT[prefix][1]() if prefix else []
    if prefix is not None and prefix != "search.sampler":  # Lightning's own callbacks, by their short names too
        paths += [f"lightning.pytorch.callbacks.{n}" for n in lightning_callbacks.__all__]
    known = {path.rsplit(".", 1)[1]: path for path in paths}
    close = _closest(name, list(known))
    return f"did you mean {known[close]}? " if close else ""


def _unknown_class(key: str, name: str, why: str, message: str) -> str:
    prefix = next((w for w in _WHAT if key.startswith(w)), None)
    did = _did_you_mean(name, prefix)
    if prefix is not None:
        what, known, example = _WHAT[prefix]
        names = known()
        listing = f"known: {', '.join(names)}" if names else "none is exported yet"
        if prefix != "search.sampler":
            listing += ", or any Lightning callback by its import path"
        return f"unknown {what} {name!r} in {prefix} ({why}); {did}{listing}. Write e.g. {example}."
    subtypes = _SUBTYPES.search(message)
    bases = [n for n in _TYPE_NAME.findall(subtypes.group(1)) if n != "NoneType"] if subtypes else []
    kind = f"a subclass of {bases[0]}" if bases else "a class"
    return f"unknown class {name!r} in {key} ({why}); {did}{key} takes the import path (module.ClassName) of {kind}."


def _argument_error(key: str, name: str, problem: str) -> str:
    """A class that exists, given an argument it does not take or a value of the wrong type."""
    if inner := _KEY_LINE.match(problem):  # an init_arg's own error: said with the whole key
        arg = inner.group(1)
        return parse_error(problem.replace(f'Parser key "{arg}"', f'Parser key "{key}.init_args.{arg}"', 1))
    first = problem.splitlines()[0].strip() if problem else "not accepted"
    see = f"Its arguments: --{key}.help {name}."
    if option := re.match(r"Option '([^']+)' is not accepted", first):
        module_name, _, attr = name.rpartition(".")
        target = getattr(sys.modules.get(module_name), attr, None)
        close = _closest(option.group(1), sorted(init_arguments(target)[0])) if target else None
        did = f"did you mean {close!r}? " if close else ""
        return f"{key}: {name} takes no argument {option.group(1)!r}; {did}{see}"
    return f"{key}: {name}: {' '.join(ln.strip() for ln in problem.splitlines() if ln.strip()).rstrip('.')}. {see}"


def class_path_error(message: str) -> str | None:
    """Rewrite jsonargparse's message about a ``class_path`` (a class that does not exist, or a wrong
    argument of one that does); ``None`` for other messages."""
    key = _KEY.search(message)
    if key is None:
        return None
    problem = _class_problem(message)
    if problem is not None:
        name, text = problem
        first = text.splitlines()[0].strip() if text else ""
        if not any(marker in first for marker in _NO_CLASS):
            return _argument_error(key.group(1), name, text)
        return _unknown_class(key.group(1), name, first, message)
    # a short name that names no class of the kind: jsonargparse never tried to import it
    why = next((ln.strip(" -") for ln in message.splitlines() if any(m in ln for m in _NO_CLASS)), None)
    if why is None:
        return None
    return _unknown_class(key.group(1), _given_class_path(message) or why.rsplit(" ", 1)[-1], why, message)


def _given_class_path(message: str) -> str | None:
    """The ``class_path`` of the value jsonargparse was given (a mapping, or a list of one)."""
    given = _GIVEN.search(message)
    if given is None:
        return None
    try:
        value = ast.literal_eval(given.group(1).strip())
    except (ValueError, SyntaxError):
        return given.group(1).strip()
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        return str(value.get("class_path")) if value.get("class_path") else None
    return str(value)


# jsonargparse's messages for a value of the wrong type: 'Parser key "k":' then one of
#   Expected a typing.Literal['min', 'max']. Got value: minn
#   Not of type PositiveInt: 0 does not conform to restriction v>0
#   Expected a <class 'bool'>. Got value: maybe
#   Does not validate against any of the Union subtypes / Subtypes: [...] / ... / Given value: -3
_KEY_LINE = re.compile(r'^Parser key "([^"]+)":\s*')
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)")
_RESTRICTED = re.compile(r"Not of type (\w+): (.*) does not conform to restriction")
_EXPECTED = re.compile(r"Expected a <class '(\w+)'>\. Got value: (.*)")
_SUBTYPES = re.compile(r"Subtypes: \[(.*)\]")
_TYPE_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_WORDS = {
    "PositiveInt": "an integer > 0", "NonNegativeInt": "an integer >= 0",
    "PositiveFloat": "a number > 0", "NonNegativeFloat": "a number >= 0",
    "ClosedUnitInterval": "a number in [0, 1]", "OpenUnitInterval": "a number in (0, 1)",
    "int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "NoneType": "null",
}

# The config file jsonargparse is reading, for a YAML error (whose message says "<unicode string>").
_CONFIG_FILE: ContextVar[str | None] = ContextVar("frameworm_config_file", default=None)


def _causes(ex: BaseException | None) -> Iterator[BaseException]:
    while ex is not None:
        yield ex
        ex = ex.__cause__ or ex.__context__


def _shown(value: str) -> str:
    """A value as the user wrote it: numbers plain, anything else quoted."""
    value = value.strip()
    try:
        float(value)
    except ValueError:
        return repr(value)
    return value


def _expected(detail: str) -> tuple[str, str] | None:
    """``(what to write, the given value)`` from jsonargparse's type error; ``None`` if not one of its known forms."""
    if match := _LITERAL.search(detail):
        choices = ast.literal_eval(f"[{match.group(1)}]")
        return "one of: " + ", ".join(str(c) for c in choices), match.group(2)
    if match := _RESTRICTED.search(detail):
        name, value = match.groups()
        return (_WORDS[name], value) if name in _WORDS else None
    if match := _EXPECTED.search(detail):
        name, value = match.groups()
        return (_WORDS[name], value) if name in _WORDS else None
    subtypes, given = _SUBTYPES.search(detail), _GIVEN.search(detail)
    if subtypes and given:
        names = _TYPE_NAME.findall(subtypes.group(1))
        if not names or len(names) != subtypes.group(1).count("<class") or any(n not in _WORDS for n in names):
            return None
        words = [_WORDS[n] for n in names if n != "NoneType"] + (["null"] if "NoneType" in names else [])
        return ", or ".join(words), given.group(1)
    return None


def _yaml_error(err: yaml.MarkedYAMLError) -> str:
    where = _CONFIG_FILE.get()
    what = f"{where} is not valid YAML" if where else "a config is not valid YAML"
    text = f"{what}: {err.problem}"
    if err.problem_mark is not None:
        text += f" at line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}"
    if err.context and err.context_mark is not None:
        text += f" ({err.context} that starts at line {err.context_mark.line + 1}, column {err.context_mark.column + 1})"
    return f"{text}; fix the syntax there."


# A key no section of the parser has: in a config file, or on the command line.
_NOT_ACCEPTED = re.compile(r"^Subcommand '[^']+' does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (.*)")


def _key_hint(key: str, keys: Sequence[str]) -> str | None:
    """The valid key(s) closest to an unknown ``key``: of its own section (``search.n_trial`` ->
    ``search.n_trials``), else the same name in another section (``search.max_epochs`` ->
    ``trainer.max_epochs``), else of any section (a misspelt section name)."""
    if key == "search.callbacks":  # both kinds of callback have a home, neither is this one
        return "stopping policies go in search.stopping, Trainer callbacks in trainer.callbacks."
    section, _, name = key.rpartition(".")
    names = [k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == section]
    if names:
        close = [f"{section}.{n}" if section else n for n in _closest_few(name, names)]
        close = close or [k for k in keys if k.rpartition(".")[2] == name]
    else:
        close = _closest_few(key, keys)
    return f"did you mean {' or '.join(close)}?" if close else None


def _closest_few(word: str, names: Sequence[str]) -> list[str]:
    """The names closest to ``word`` (difflib), the runners-up only when nearly as close as the best."""
    close = difflib.get_close_matches(word, names)
    ratios = [difflib.SequenceMatcher(None, word, n).ratio() for n in close]
    return [n for n, r in zip(close, ratios) if r >= ratios[0] - 0.05]


def _unknown_key(message: str, keys: Sequence[str]) -> str | None:
    """jsonargparse's message about a key no section has, with the closest valid key(s); ``None``
    for another message or when no key is close."""
    if match := _NOT_ACCEPTED.match(message):
        hint = _key_hint(match.group(1), keys)
        return f"{message.strip().rstrip('.')}; {hint}" if hint else None
    if match := _UNRECOGNIZED.match(message):
        hints = {}
        for token in match.group(1).split():
            option = token.split("=", 1)[0].rstrip("+")
            if option.startswith("--") and (hint := _key_hint(option[2:], keys)):
                hints[option] = hint.replace("did you mean ", "did you mean --").replace(" or ", " or --")
        if len(hints) > 1:  # say which is which
            return f"{message.strip()}; " + "; ".join(f"{option}: {hint}" for option, hint in hints.items())
        return f"{message.strip()}; {next(iter(hints.values()))}" if hints else None
    return None


def parse_error(message: str, ex: BaseException | None = None, keys: Sequence[str] = ()) -> str:
    """jsonargparse's error message (and its exception) as one line that says the fix.

    ``keys``: the config keys of the parser that failed (``search.n_trials``, ...), for the
    closest valid key to an unknown one.
    """
    if (line := _unknown_key(message, keys)) is not None:
        return line
    line = class_path_error(message)
    if line is not None:
        return line
    bad_yaml = next((e for e in _causes(ex) if isinstance(e, yaml.MarkedYAMLError)), None)
    if bad_yaml is not None:
        return _yaml_error(bad_yaml)
    if (key := _KEY_LINE.match(message)) and (expected := _expected(message[key.end():])):
        return f"{key.group(1)} is {_shown(expected[1])}; write {expected[0]}."
    rest = message[key.end():] if key else message
    text = " ".join(ln.strip() for ln in rest.splitlines() if ln.strip())
    if key:
        text = f"{key.group(1)}: {text}"
    return f"{text.rstrip('.')}; see --help for the options."


class SearchArgumentParser(LightningArgumentParser):
    """LightningCLI's parser; a parse error is one line (:func:`parse_error`) instead of the usage text.

    It also notes the links made on it (``links``: ``(sources, target, apply_on)``), for
    the error that names the link of a searched link target (``cli/_links.py``), and the
    class of an optimizer or LR scheduler group given one class
    (``parser.add_optimizer_args(torch.optim.Adam)``), whose config section has no
    ``class_path`` to tell it (``section_classes``: nested key to class).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.links: list[tuple[tuple[str, ...], str, str]] = []
        self.section_classes: dict[str, type] = {}
        super().__init__(*args, **kwargs)

    def add_optimizer_args(self, optimizer_class: Any = (Optimizer,), nested_key: str = "optimizer",
                           link_to: str = "AUTOMATIC") -> None:
        if isinstance(optimizer_class, type):
            self.section_classes[nested_key] = optimizer_class
        super().add_optimizer_args(optimizer_class, nested_key, link_to)

    def add_lr_scheduler_args(self, lr_scheduler_class: Any = LRSchedulerTypeTuple, nested_key: str = "lr_scheduler",
                              link_to: str = "AUTOMATIC") -> None:
        if isinstance(lr_scheduler_class, type):
            self.section_classes[nested_key] = lr_scheduler_class
        super().add_lr_scheduler_args(lr_scheduler_class, nested_key, link_to)

    def link_arguments(self, source: str | tuple[str, ...], target: str, *args: Any, **kwargs: Any) -> None:
        apply_on = kwargs.get("apply_on", args[1] if len(args) > 1 else "parse")
        self.links.append(((source,) if isinstance(source, str) else tuple(source), target, apply_on))
        super().link_arguments(source, target, *args, **kwargs)

    def parse_path(self, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        token = _CONFIG_FILE.set(os.fspath(path))  # for a YAML error's message
        try:
            return super().parse_path(path, *args, **kwargs)
        finally:
            _CONFIG_FILE.reset(token)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse trying one alternative of several: not the user's error yet
            super().error(message, ex)
        self._logger.error(message)
        # A config file's unknown key is found by the parent parser, which names the subcommand's.
        parser = next((p for e in _causes(ex) if (p := getattr(e, "subcommand_parser", None)) is not None), self)
        sys.stderr.write(f"error: {parse_error(message, ex, _config_keys(parser))}\n")
        self.exit(2)


def _config_keys(parser: LightningArgumentParser) -> list[str]:
    """The parser's config keys (``search.n_trials``, ``trainer.max_epochs``, ...); none when its
    defaults do not load (then that is raised, not printed: this runs inside ``error``)."""
    exit_on_error, parser.exit_on_error = parser.exit_on_error, False
    try:
        return list(parser.get_defaults(skip_validation=True).keys())
    except argparse.ArgumentError:
        return []
    finally:
        parser.exit_on_error = exit_on_error
