"""``frameworm_lightning.analysis.__all__`` is exactly its public API."""

from __future__ import annotations

import inspect

from frameworm_lightning import analysis


def test_all_is_exactly_the_public_names() -> None:
    public = {n for n, obj in vars(analysis).items() if not n.startswith("_") and not inspect.ismodule(obj)}
    assert set(analysis.__all__) == public
    assert analysis.__all__ == sorted(analysis.__all__, key=lambda n: (not n.isupper(), n))
