"""What a bad input must leave untouched: every stored row and every file, byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from frameworm_lightning.storage import Storage

# SQLite's shared-memory index changes when a reader merely opens the file; it holds no data.
_VOLATILE = ("-shm",)


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(_VOLATILE)}


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
