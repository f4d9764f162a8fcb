"""Storage URLs: which backends we support, the driver we use, and how a URL is shown.

A URL may carry a password (``postgresql://user:secret@host/db``). :func:`masked_url`
is the one way the project prints or writes a URL (messages, logs, reprs, CLI output):
SQLAlchemy renders it with the password replaced by ``***``.

Example:
    >>> masked_url("postgresql://alice:s3cret@db.example/studies")
    'postgresql://alice:***@db.example/studies'
    >>> masked_url("memory")
    'memory'
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

from frameworm_lightning.exceptions import StorageError

__all__ = ["MEMORY_URLS", "SUPPORTED", "masked_url", "normalise_url"]

MEMORY_URLS = ("memory", ":memory:", "sqlite://", "sqlite:///:memory:")
SUPPORTED = "sqlite:///path/to/study.db, postgresql://user@host/db or 'memory'"

# The ``user:password@`` part of a string SQLAlchemy cannot parse: mask it by hand.
_USERINFO = re.compile(r"([^/:@\s]*:)[^@/\s]*@")


def masked_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: safe to print, log or store."""
    if url in MEMORY_URLS:
        return url
    try:
        parsed = sa.engine.make_url(url)
    except (ArgumentError, ValueError):
        return _USERINFO.sub(r"\1***@", url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def normalise_url(url: str) -> str:
    """The SQLAlchemy URL for a storage URL we support (psycopg 3 for PostgreSQL).

    Raises:
        StorageError: not a URL, or a database other than SQLite and PostgreSQL.
    """
    if url in MEMORY_URLS:
        return "sqlite://"
    try:
        parsed = sa.engine.make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(f"storage {masked_url(url)!r} is not a database URL; use {SUPPORTED}.") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(
            f"storage {masked_url(url)!r} uses {backend!r}, which frameworm-lightning does not support; "
            f"the supported backends are SQLite and PostgreSQL: {SUPPORTED}."
        )
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg (v3) is our postgres driver; SQLAlchemy's default would be psycopg2.
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url
