"""The errors a user of ``frameworm-search`` meets, each as one line that says the fix.

Two sources:

* jsonargparse rejects a ``class_path`` that names no sampler or stopping policy; its
  message is rewritten by :class:`SearchArgumentParser` (LightningCLI's ``parser_class``
  hook), which keeps jsonargparse's own output for every other parse error;
* our own checks raise a :class:`~frameworm_lightning.FramewormError` (a bad space, an
  unknown key, a storage that cannot be written, a metric never logged) or a
  :class:`UsageError`; :func:`explain` turns either into the line ``main`` prints.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import NoReturn

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningArgumentParser

import frameworm_lightning
from frameworm_lightning.exceptions import (
    ConfigKeyError,
    FramewormError,
    SamplerError,
    SpaceError,
    StorageError,
    StudyMismatchError,
)
from frameworm_lightning.samplers import Sampler

__all__ = ["SearchArgumentParser", "UsageError", "explain", "known_policies", "known_samplers"]


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
_CLASS_PROBLEM = re.compile(r"Problem with given class_path '([^']+)':\s*(.+)")
_WHAT = {
    "search.sampler": ("sampler", known_samplers, "sampler: {class_path: frameworm_lightning.RandomSampler}"),
    "search.stopping": ("stopping policy", known_policies, "stopping: [{class_path: frameworm_lightning.ASHA}]"),
    "trainer.callbacks": ("callback", known_policies, "--trainer.callbacks+=frameworm_lightning.ImprovementStopping"),
}


def class_path_error(message: str) -> str | None:
    """Rewrite jsonargparse's message for an unknown sampler or policy; ``None`` for others."""
    keys = _KEY.findall(message)
    key = next((k for k in keys if any(k.startswith(w) for w in _WHAT)), None)
    if key is None:
        return None
    prefix = next(w for w in _WHAT if key.startswith(w))
    what, known, example = _WHAT[prefix]
    problem = _CLASS_PROBLEM.search(message)
    given = _GIVEN.search(message)
    if problem:
        name, why = problem.group(1), problem.group(2).strip().splitlines()[0]
    elif given:
        name = given.group(1).strip()
        why = next(
            (ln.strip(" -") for ln in message.splitlines() if "does not correspond" in ln or "Expected a dot import" in ln),
            "not a class of that kind",
        )
    else:
        return None
    names = known()
    listing = f"known: {', '.join(names)}" if names else "none is exported yet"
    if prefix != "search.sampler":
        listing += ", or any Lightning callback by its import path"
    return f"unknown {what} {name!r} in {prefix} ({why}); {listing}. Write e.g. {example}."


class SearchArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, with one-line messages for an unknown sampler or policy."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        line = class_path_error(message)
        if line is None or not self.exit_on_error:
            super().error(message, ex)
        self._logger.error(message)
        sys.stderr.write(f"error: {line}\n")
        self.exit(2)
