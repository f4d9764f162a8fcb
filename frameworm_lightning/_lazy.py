"""Names a package loads on first use (PEP 562), so importing it stays cheap.

Worker processes, the CLI and storage tools import the package without paying for
Lightning, torch or GPyTorch until a name that needs them is used.

Example:
    >>> import types
    >>> demo = types.ModuleType("demo")
    >>> demo.__getattr__ = lazy_attributes("demo", {"sqrt": "math"})
    >>> demo.__getattr__("sqrt")(9.0)
    3.0
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each of ``names`` from its module (``name -> module``) on first use.

    The value is then kept in the package, so each name is imported once.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        owner = sys.modules.get(package)
        if owner is not None:
            setattr(owner, name, value)
        return value

    return __getattr__
