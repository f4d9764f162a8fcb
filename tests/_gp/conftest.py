"""Run every GP test with one torch and BLAS thread, as the sampler does (small matrices)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from frameworm_lightning._gp.gp import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield
