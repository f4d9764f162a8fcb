"""``frameworm_lightning.storage.__all__`` is exactly its public API."""

from __future__ import annotations

import inspect

from frameworm_lightning import storage


def test_all_is_exactly_the_public_names() -> None:
    public = {n for n, obj in vars(storage).items() if not n.startswith("_") and not inspect.ismodule(obj)}
    assert set(storage.__all__) == public
    assert storage.__all__ == sorted(storage.__all__, key=lambda n: (not n.isupper(), n))
