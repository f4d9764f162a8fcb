"""A learning-curve table: configurations of one search space, each trained for its full
budget of epochs, with the validation metric and the seconds of every epoch.

Stored as gzip'd JSON (``benchmarks/curves/data/<name>.json.gz``)::

    {"name": "digits-mlp", "metric": "val_error", "mode": "min", "max_epochs": 27,
     "seed": 0, "space": {"lr": "Real(0.0001, 0.1, log=True)", ...},
     "configs": [{"index": 0, "params": {...}, "values": [27 floats], "seconds": [27 floats]}, ...]}

``values[e]`` is the metric after epoch ``e + 1`` (a NaN or infinite value is stored as
``null``: the run diverged); ``seconds[e]`` the wall time of that epoch, training and
validation together.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DATA_DIR", "Curve", "Table", "load_table"]

#: Where the shipped tables live.
DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Curve:
    """One configuration's recorded learning curve."""

    index: int
    params: dict[str, Any]
    values: list[float]
    seconds: list[float]

    @property
    def final(self) -> float:
        """The metric after the full budget (``inf`` for a run that diverged)."""
        return self.values[-1]


@dataclass
class Table:
    """All curves of one model and data set (see the module docstring)."""

    name: str
    metric: str
    mode: str
    max_epochs: int
    seed: int
    space: dict[str, str]
    curves: list[Curve] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.curves)

    def quality(self, value: float) -> float:
        """``value`` as a quantity to minimise (``-value`` for a metric to maximise)."""
        return value if self.mode == "min" else -value

    @property
    def best_final(self) -> float:
        """The best fully trained value over the whole table (regret is measured from it)."""
        finals = [self.quality(c.final) for c in self.curves]
        return min(finals)

    def save(self, path: Path) -> None:
        def clean(xs: list[float]) -> list[float | None]:
            return [x if math.isfinite(x) else None for x in xs]

        doc = {
            "name": self.name, "metric": self.metric, "mode": self.mode, "max_epochs": self.max_epochs,
            "seed": self.seed, "space": self.space,
            "configs": [{"index": c.index, "params": c.params, "values": clean(c.values),
                         "seconds": [round(s, 5) for s in c.seconds]} for c in self.curves],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        # mtime=0: the same curves always give the same bytes.
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(json.dumps(doc, separators=(",", ":")).encode())
        tmp.replace(path)


def load_table(name_or_path: str | Path) -> Table:
    """A table by name (``"digits-mlp"``, from :data:`DATA_DIR`) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = DATA_DIR / f"{name_or_path}.json.gz"
    if not path.is_file():
        shipped = sorted(p.name.removesuffix(".json.gz") for p in DATA_DIR.glob("*.json.gz"))
        raise FileNotFoundError(f"no curve table {str(name_or_path)!r}; shipped tables: {', '.join(shipped) or 'none'}")
    with gzip.open(path, "rt") as f:
        doc = json.load(f)
    worst = math.inf if doc["mode"] == "min" else -math.inf
    curves = [Curve(c["index"], c["params"], [worst if v is None else float(v) for v in c["values"]],
                    [float(s) for s in c["seconds"]]) for c in doc["configs"]]
    return Table(doc["name"], doc["metric"], doc["mode"], int(doc["max_epochs"]), int(doc["seed"]),
                 dict(doc["space"]), curves)
