"""Shared fixtures: storages for every backend, including a real PostgreSQL server."""

from __future__ import annotations

import os

# Tiny test models run many times faster on one thread than fighting over two cores;
# set before torch loads so spawned trial processes inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL: ``FRAMEWORM_TEST_POSTGRES_URL``, else a server ``scripts/postgres.sh`` starts.

    Outside CI a machine without PostgreSQL skips these tests; in CI (``CI`` set) that is a failure.
    """
    url = os.environ.get("FRAMEWORM_TEST_POSTGRES_URL")
    if not url:
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start"], capture_output=True, text=True)
        if proc.returncode == 0 and "=" in proc.stdout:
            url = proc.stdout.strip().split("=", 1)[1]
            os.environ["FRAMEWORM_TEST_POSTGRES_URL"] = url
        elif os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but could not be started: {proc.stderr[-2000:]}")
        else:
            pytest.skip(f"no PostgreSQL server available: {proc.stderr.strip()[-300:]}")
    return url


@pytest.fixture
def study_name() -> str:
    """A study name no other test uses (PostgreSQL databases are shared across tests)."""
    return f"study-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path):
    """One storage per backend: an in-memory ``Storage`` (shared within the test), or a URL."""
    if request.param == "memory":
        from frameworm_lightning import Storage

        return Storage("memory")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")
