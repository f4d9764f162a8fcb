"""What a trial's worker process is given: the pickled evaluation, a payload file, its environment.

The search process pickles the trial's evaluation once (``evaluate(trial)``: a
Lightning trial or a function trial), writes it readable by this user only, and gives
each trial a small payload file (which trial, which study, where to import from). The
storage URL travels in the environment, never in a file: it may hold a password
(``docs/trust.md``). Lightning's DDP launcher re-runs
``python -m frameworm_lightning.runner._trial_entry <trial.pkl>`` for ranks 1..n-1, so
the payload is all a fresh interpreter needs.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from frameworm_lightning.exceptions import FramewormError
from frameworm_lightning.study import Study

__all__ = [
    "ENTRY_MODULE",
    "PAYLOAD_FILE",
    "PAYLOAD_VERSION",
    "SEARCH_ARGV_ENV",
    "STORAGE_URL_ENV",
    "base_payload",
    "dump_evaluate",
    "importing_search_script",
    "portable_url",
    "refuse_nested_search",
    "worker_env",
    "write_private",
]

# The trial entry point (and the command Lightning's DDP launcher re-runs per rank).
ENTRY_MODULE = "frameworm_lightning.runner._trial_entry"
PAYLOAD_VERSION = 2
PAYLOAD_FILE = "trial.pkl"
STORAGE_URL_ENV = "FRAMEWORM_STORAGE_URL"
# The search's command line, which a trial's process restores while it imports the search
# script (as multiprocessing's spawn does): a script may parse it at import.
SEARCH_ARGV_ENV = "FRAMEWORM_SEARCH_ARGV"
# Variables of an enclosing distributed launch: a trial's worker must start its own.
_LAUNCH_ENV = (
    "LOCAL_RANK", "RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
    "MASTER_PORT", "TORCHELASTIC_RUN_ID", "FRAMEWORM_TRIAL_PGID", STORAGE_URL_ENV,
)


_IMPORTING_SCRIPT: list[str] = []  # the search script a trial's process is importing, while it does


@contextmanager
def importing_search_script(path: str) -> Iterator[None]:
    """A trial's process imports the search script (for classes its evaluation refers to)."""
    _IMPORTING_SCRIPT.append(path)
    try:
        yield
    finally:
        _IMPORTING_SCRIPT.pop()


def refuse_nested_search() -> None:
    """Raise if a search starts while a trial's process imports the search script.

    A script without an ``if __name__ == "__main__":`` guard runs its search again when a
    trial's process imports it: that search would run inside the trial. Every front end
    (``SearchRunner``, ``GridSearch.run`` and friends) calls this first.
    """
    if _IMPORTING_SCRIPT:
        raise FramewormError(
            f"the search script {_IMPORTING_SCRIPT[-1]} starts a search when a trial's process imports it (to load "
            "the classes defined there): put the search under if __name__ == \"__main__\":, or move those classes "
            "into a module."
        )


class _MainNotingPickler(pickle.Pickler):
    """Notes whether the pickle refers to ``__main__`` (a class or function of the search script)."""

    uses_main = False

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__":
            self.uses_main = True
        return NotImplemented


def _main_reference() -> tuple[str, str]:
    main = sys.modules["__main__"]
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name and name != "__main__" and not name.endswith(".__main__"):
        return ("module", name)
    path = getattr(main, "__file__", None)
    if path and not (path.startswith("<") and path.endswith(">")):  # "<stdin>": python - reads the script
        return ("path", os.path.abspath(path))
    raise ValueError(
        "worker processes cannot import classes or functions defined in an interactive session "
        f"({f'python - reads {path}, ' if path else ''}a notebook or the REPL has no file to re-import). Move the "
        "LightningModule, datamodule and train_fn into a .py module and import them from there, or use n_jobs=1."
    )


def dump_evaluate(evaluate: Any, what: str) -> tuple[bytes, tuple[str, str] | None]:
    """Pickle what each worker runs; return the bytes and how to re-import ``__main__`` if needed.

    Raises:
        ValueError: something does not pickle (a lambda, a nested function or class),
            or it lives in an interactive session; the message says what to change.
    """
    buf = io.BytesIO()
    pickler = _MainNotingPickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        pickler.dump(evaluate)
    except Exception as err:  # noqa: BLE001 - pickling errors come in many types
        raise ValueError(
            f"worker processes run each trial in a process of its own, so {what} must be picklable, "
            f"but pickling failed: {err}. Define classes and functions at module level (not a lambda, "
            "a nested function or a class inside a function)."
        ) from None
    return buf.getvalue(), (_main_reference() if pickler.uses_main else None)


def write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` readable and writable by this user only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file of that name keeps its mode through O_CREAT
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
    finally:
        os.close(fd)
    return path


def portable_url(url: str) -> str:
    """The storage URL with a relative SQLite path made absolute (workers may start elsewhere)."""
    if not url.startswith("sqlite:"):
        return url
    parsed = sa.engine.make_url(url)
    if not parsed.database or parsed.database == ":memory:" or os.path.isabs(parsed.database):
        return url
    return parsed.set(database=os.path.abspath(parsed.database)).render_as_string(hide_password=False)


def base_payload(study: Study, evaluate_path: str, main: tuple[str, str] | None, executor: str) -> dict[str, Any]:
    """What every trial's payload of a search holds (each adds ``trial_id``, ``number``, ``directory``)."""
    return {
        "version": PAYLOAD_VERSION, "heartbeat_timeout": study.storage.heartbeat_timeout, "study_name": study.name,
        "evaluate_path": evaluate_path, "main": main, "sys_path": [p for p in sys.path if p], "cwd": os.getcwd(),
        "executor": executor, "lightning": "lightning.pytorch" in sys.modules,
    }


def worker_env(extra: Mapping[str, str] | None = None, n_jobs: int = 1) -> dict[str, str]:
    """The environment of a trial's worker: ours, minus any enclosing DDP launch, plus ``extra``.

    Each worker gets ``cpu_count // n_jobs`` intra-op threads unless ``OMP_NUM_THREADS``
    is already set, so k trials do not fight over the same cores.
    """
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env[SEARCH_ARGV_ENV] = json.dumps(sys.argv)  # in the environment, as the storage URL: it may hold a password
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, n_jobs))))
    env.update(extra or {})
    return env
