"""What a bad input must leave untouched: every stored row and every file, byte for byte."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from frameworm_lightning.storage import Storage

# SQLite's shared-memory index changes when a reader merely opens the file; it holds no data.
_VOLATILE = ("-shm",)


def _kept(path: Path) -> bool:
    # After a TRUNCATE checkpoint the write-ahead log is empty; whether the empty file is
    # still there depends only on whether some connection is open.
    return path.is_file() and not path.name.endswith(_VOLATILE) and not (
        path.name.endswith("-wal") and path.stat().st_size == 0)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes, SQLite databases checkpointed first.

    A checkpoint moves what SQLite's write-ahead log holds into the database file, so
    the bytes compared are the data, not where the journal happens to keep it.
    """
    for db in root.rglob("*.db"):
        conn = sqlite3.connect(db)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass  # not a database (any more): its bytes are compared as they are
        finally:
            conn.close()
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if _kept(p)}


def state(url: str, root: Path) -> tuple[dict[str, list[tuple[Any, ...]]], dict[str, bytes]]:
    """Every stored row and every file: what a refused input must leave as it was."""
    return rows(url), files(root)


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every frameworm table of the database at ``url``, in primary-key order."""
    storage = Storage(url)
    try:
        meta = sa.MetaData()
        meta.reflect(storage.engine)
        with storage.engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
                    for name, table in sorted(meta.tables.items()) if name.startswith("fw_")}
    finally:
        storage.close()
