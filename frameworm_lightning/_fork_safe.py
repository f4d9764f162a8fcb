"""Background threads a process may fork beside: each works under one lock that a forking thread holds.

A trial forked from the search process (``runner/_processes.py``) inherits every lock
in the state it had at the fork, though none of the threads that held them. A thread of
ours that does its work in short units (a heartbeat's write, a live view's refresh) runs
each unit inside :func:`working`; the thread that forks does it inside :func:`paused`,
which waits for the unit in flight and holds the next one back. The child then starts
with none of those threads halfway through a database call (whose driver's and
SQLite's locks it would inherit held) or a terminal write. :func:`threads` lists them
for ``can_fork_trial_here``, which refuses any other thread.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused", "register", "threads", "working"]

_lock = threading.Lock()
_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def _new_lock() -> None:
    global _lock
    _lock = threading.Lock()  # the child's copy is held (by the fork): its own threads start afresh


os.register_at_fork(after_in_child=_new_lock)


def register(thread: threading.Thread) -> threading.Thread:
    """Count ``thread`` as one that does all its work inside :func:`working` (call before starting it)."""
    _threads.add(thread)
    return thread


def threads() -> set[threading.Thread]:
    """The registered threads alive in this process (idle while :func:`paused`)."""
    return {t for t in _threads if t.is_alive()}


@contextmanager
def paused() -> Iterator[None]:
    """No registered thread works while this block runs (it waits for the unit in flight)."""
    with _lock:
        yield


# One unit of a registered thread's work, never under way while a fork is: the same lock,
# named for the side that takes it.
working = paused
