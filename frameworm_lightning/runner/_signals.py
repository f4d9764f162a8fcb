"""Preemption: SIGTERM stops a search cleanly, as Ctrl-C does.

SLURM and Kubernetes preempt a job with SIGTERM (then SIGKILL after a grace period).
While a search runs in this process (:func:`sigterm_stops_search`), a SIGTERM:

* during a Lightning ``fit``: reaches Lightning's own handler, which calls the one
  installed before it (ours) after setting ``trainer.received_sigterm``; ours only notes
  the signal, and Lightning raises ``SIGTERMException`` at the next batch boundary, agreed
  across DDP ranks. Lightning's handler is never replaced;
* anywhere else (building a trial, a function API ``train_fn``, between trials):
  raises ``SIGTERMException`` at once.

The trial code stores the running trial interrupted (its params are re-enqueued, so the
next run starts with them) and lets the exception go; no trial starts after it. The
search then ends with ``SIGTERMException(143)``, a ``SystemExit``: a script that does not
catch it exits with 143 (128 + SIGTERM), as a shell reports a process SIGTERM killed.
Ctrl-C stays Python's ``KeyboardInterrupt`` (exit status 130 when not caught).

Example:
    >>> with sigterm_stops_search() as stop:
    ...     stop.signum is None
    True
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["SIGTERM_EXIT", "STOP_SIGNALS", "StopRequest", "is_sigterm", "say_stopped", "sigterm_exception", "sigterm_stops_search",
           "stop_signals_handled_by", "stopped"]

SIGTERM_EXIT = 128 + int(signal.SIGTERM)  # 143
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_log = logging.getLogger("frameworm_lightning")


@dataclass
class StopRequest:
    """The signal that asked the search to stop (``None`` while none did)."""

    signum: int | None = None


def sigterm_exception(*args: Any) -> SystemExit:
    """Lightning's ``SIGTERMException(*args)``.

    Imported when first needed: ``lightning.pytorch`` takes seconds to import, and a
    function search's worker (``GridSearch(...).run(fn, n_jobs=2)``) never needs it otherwise.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException  # noqa: PLC0415 - see above

    return SIGTERMException(*args)


def is_sigterm(exc: BaseException) -> bool:
    """Whether ``exc`` is Lightning's ``SIGTERMException`` (never, while Lightning is not loaded)."""
    module = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return module is not None and isinstance(exc, module.SIGTERMException)


def say_stopped(signum: int, what: str = "search") -> None:
    """The one line that ends a search a signal stopped, the same for SIGINT and SIGTERM."""
    _log.warning("%s stopped by %s: running trials were stored interrupted and run first when the search "
                 "is resumed (run it again).", what, signal.Signals(signum).name)


def stopped(what: str = "search") -> SystemExit:
    """The exception that ends a search (or a trial's worker) stopped by SIGTERM: exit status 143."""
    say_stopped(signal.SIGTERM, what)
    return sigterm_exception(SIGTERM_EXIT)


@contextmanager
def sigterm_stops_search(what: str = "search") -> Iterator[StopRequest]:
    """Handle SIGTERM as described in the module docstring for the length of the block.

    A ``SIGTERMException`` leaving the block (from Lightning or from our handler) leaves it
    as ``SIGTERMException(143)``. Off the main thread, where Python cannot set signal
    handlers, the block changes nothing.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, _frame: Any) -> None:
        request.signum = signum
        # Called through Lightning's composed handler (it is installed, not us): Lightning
        # raises SIGTERMException itself, at a point every DDP rank agrees on.
        if signal.getsignal(signal.SIGTERM) is handler:
            raise sigterm_exception()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield request
    except SystemExit as exc:
        if not is_sigterm(exc):
            raise
        request.signum = request.signum or int(signal.SIGTERM)
        if exc.code == SIGTERM_EXIT:
            raise
        raise stopped(what) from exc
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def stop_signals_handled_by(handler: Any) -> Iterator[bool]:
    """SIGINT and SIGTERM go to ``handler`` (a function, ``SIG_IGN``...) in this block; the
    previous handlers come back after it. The block gets whether they were set: only the main
    thread may set handlers, and a previous handler Python did not install (``None``) could
    not be put back, so then nothing changes and it gets ``False``."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield False
        return
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    try:
        yield True
    finally:
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)
