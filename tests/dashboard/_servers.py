"""A dashboard served in a background thread, and a small search run in another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn

from frameworm_lightning.dashboard import create_app

# A search over a function, as a separate process writes it: trial n reports five values
# (global steps 1..5) with a pause between reports, so a dashboard sees it run. After
# ``hold`` trials it waits for the file ``gate`` to exist, so a test sees the count grow
# however slowly its browser starts.
SEARCH = textwrap.dedent("""
    import os, sys, time
    from frameworm_lightning import Integer, Real, SobolSampler, Study
    study = Study.create("live", {"lr": Real(1e-4, 1e-1, log=True), "depth": Integer(1, 6)},
                         metric="val_loss", sampler=SobolSampler(seed=0), storage=sys.argv[1])
    pause, n, gate, hold = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    while (trial := study.ask(budget=n)) is not None:
        if trial.number == hold:
            deadline = time.monotonic() + 300
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.05)
        final = (__import__("math").log10(trial.params["lr"]) + 2.5) ** 2 + 0.1 * trial.params["depth"]
        for step in range(1, 6):
            trial.report(step, final + 1.0 / step)
            time.sleep(pause)
            if trial.number % 4 == 3 and step == 2:
                break
        if trial.number % 4 == 3:
            trial.prune("median rule: worse than the median of the earlier trials at step 2")
        else:
            trial.complete(final)
""")


def start_search(url: str, gate: Path, pause: float = 0.1, n: int = 12, hold: int = 3) -> subprocess.Popen[str]:
    """Start :data:`SEARCH` in the background; it writes study ``live`` to ``url`` and
    holds its trial ``hold`` until the file ``gate`` exists."""
    return subprocess.Popen([sys.executable, "-c", SEARCH, url, str(pause), str(n), str(gate), str(hold)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@contextmanager
def serving(storage: Any, refresh: float = 0.5) -> Iterator[str]:
    """Serve the dashboard of ``storage`` on a free port of 127.0.0.1; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(storage, refresh=refresh), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def dump_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the database at ``url``, in primary-key order, as stored."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
                    for name, table in sorted(meta.tables.items())}
    finally:
        engine.dispose()


def db_file(url: str) -> Path:
    return Path(url[len("sqlite:///"):])
