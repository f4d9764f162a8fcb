"""``frameworm_lightning.dashboard.__all__`` is exactly its public API."""

from __future__ import annotations

import inspect

from frameworm_lightning import dashboard


def test_all_is_exactly_the_public_names() -> None:
    public = {n for n, obj in vars(dashboard).items() if not n.startswith("_") and not inspect.ismodule(obj)}
    assert set(dashboard.__all__) == public
    assert dashboard.__all__ == sorted(dashboard.__all__)
