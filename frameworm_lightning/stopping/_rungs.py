"""Rung arithmetic of successive halving: brackets, rungs, and the records trials keep of them.

Pure functions and values, shared by the halving policies (which judge one trial) and
their scheduler (which promotes paused ones); nothing here reads storage or a Trainer.

Notations:
    r_min, r_max: the smallest and largest resource (epochs or global steps).
    eta: the reduction factor; ``K = floor(log_eta(r_max / r_min))``.
    rungs: ``r_min * eta**k`` for ``k < K``, then ``r_max``.
    bracket: a group of configurations that compete with each other on the same rungs.
    config: one configuration followed across the trials that trained it (a promoted
        trial continues its parent's checkpoint as a new trial of the study).

Bookkeeping lives in each trial's system attributes: ``fw_bracket``, ``fw_root`` (the
first trial of the config), ``fw_rungs`` (``{rung: [value, promoted]}``), and for a
paused trial ``fw_paused_at`` and ``fw_checkpoint``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from frameworm_lightning.stopping._base import sort_key
from frameworm_lightning.trial import FrozenTrial, TrialState

__all__ = ["Bracket", "Config", "Layout", "configs_of", "dump_records", "rung_key", "rung_resources"]

ACTIVE = (TrialState.RUNNING, TrialState.WAITING)
#: A trial's bookkeeping of its configuration, which a run resumed from its checkpoint continues.
CONFIG_ATTRS = ("fw_bracket", "fw_root", "fw_rungs")


def rung_resources(min_resource: float, max_resource: float, eta: int) -> tuple[float, ...]:
    """``r_min * eta**k`` for ``k < K``, then ``r_max``, with ``K = floor(log_eta(r_max / r_min))``.

    >>> rung_resources(1, 27, 3)
    (1, 3, 9, 27)
    >>> rung_resources(1, 10, 3)
    (1, 3, 10)
    """
    k = levels(min_resource, max_resource, eta)
    return tuple(tidy(min_resource * eta**i) for i in range(k)) + (tidy(max_resource),)


def levels(min_resource: float, max_resource: float, eta: int) -> int:
    """``K = floor(log_eta(r_max / r_min))``: the rungs below ``r_max``."""
    return int(math.floor(math.log(max_resource / min_resource, eta) + 1e-9))


def tidy(x: float) -> float:
    """``3.0`` as ``3``; other floats unchanged."""
    return int(x) if float(x).is_integer() else float(x)


def rung_key(resource: float) -> str:
    """How a rung's resource is written in the trials' attributes (``3``, ``0.5``)."""
    return f"{resource:g}"


@dataclass(frozen=True)
class Bracket:
    """A group of configurations competing on the same rungs.

    Attributes:
        index: the bracket's number in the search (brackets are filled in order).
        rungs: resources at which configs are compared; the last is ``max_resource``.
        size: how many configurations start in it (``None``: no limit, as in ASHA).
    """

    index: int
    rungs: tuple[float, ...]
    size: int | None


class Layout(Protocol):
    """What the rung arithmetic needs of a halving policy: its brackets and how they promote."""

    eta: int
    #: Promote only when a rung is complete (every config of the bracket is there).
    synchronous: bool

    def bracket(self, index: int) -> Bracket:
        """The ``index``-th bracket of the search."""


@dataclass
class Config:
    """One configuration across the trials that trained it."""

    root: int
    bracket: int
    rows: list[FrozenTrial] = field(default_factory=list)
    records: dict[str, tuple[float, bool]] = field(default_factory=dict)

    @property
    def latest(self) -> FrozenTrial:
        return self.rows[-1]

    @property
    def active(self) -> bool:
        return self.latest.state in ACTIVE

    @property
    def paused_at(self) -> str | None:
        """The rung this config waits at for a promotion, if it does."""
        row = self.latest
        if row.state is TrialState.PRUNED and "fw_paused_at" in row.system_attrs and "promoted_to" not in row.system_attrs:
            return str(row.system_attrs["fw_paused_at"])
        return None

    @property
    def ended(self) -> bool:
        return not self.active and self.paused_at is None

    def value(self, key: str) -> float | None:
        record = self.records.get(key)
        return None if record is None else record[0]

    def promoted(self, key: str) -> bool:
        record = self.records.get(key)
        return bool(record and record[1])


def records_of(attrs: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    """A trial's rung records (``fw_rungs``) as ``{rung: (value, promoted)}``."""
    out = {}
    for key, rec in (attrs.get("fw_rungs") or {}).items():
        value, promoted = (rec[0], rec[1]) if isinstance(rec, (list, tuple)) else (rec, False)
        out[str(key)] = (math.nan if value is None else float(value), bool(promoted))
    return out


def dump_records(records: dict[str, tuple[float, bool]]) -> dict[str, list[Any]]:
    """The inverse of :func:`records_of` (JSON: a NaN is stored as ``None``)."""
    return {k: [None if math.isnan(v) else v, p] for k, (v, p) in records.items()}


def configs_of(trials: Iterable[FrozenTrial]) -> dict[int, Config]:
    """Group the trials a halving policy manages (they have ``fw_bracket``) by configuration."""
    configs: dict[int, Config] = {}
    for row in sorted(trials, key=lambda t: t.number):
        attrs = row.system_attrs
        if "fw_bracket" not in attrs:
            continue
        root = int(attrs.get("fw_root", row.number))
        config = configs.setdefault(root, Config(root, int(attrs["fw_bracket"])))
        config.rows.append(row)
        config.records.update(records_of(attrs))
    return configs


def keep(layout: Layout, n: int, lenient: bool) -> int:
    """How many of ``n`` configs at a rung go up: ``floor(n / eta)``, at least 1 when lenient."""
    kept = n // layout.eta
    return max(1, kept) if lenient and n > 0 else kept


def ranked(configs: dict[int, Config], bracket: int, key: str, mode: str) -> list[Config]:
    """The configs of ``bracket`` with a value at rung ``key``, best first (earlier config among ties)."""
    peers = [c for c in configs.values() if c.bracket == bracket and key in c.records]
    return sorted(peers, key=lambda c: (sort_key(c.value(key), mode), c.root))


def complete(layout: Layout, configs: dict[int, Config], bracket: Bracket, level: int, mode: str) -> bool:
    """Whether every config of ``bracket`` that goes to rung ``level`` is there (or ended).

    At the first rung that is every member of the bracket (once it is full); higher up,
    the configs promoted from the rung below, and, once that rung is complete, its best
    ``keep`` whether or not the scheduler has promoted them yet: a config that goes up
    first must not find the rung complete without the others going up with it.
    """
    members = [c for c in configs.values() if c.bracket == bracket.index]
    key = rung_key(bracket.rungs[level])
    if level == 0:
        if bracket.size is None or len(members) < bracket.size:
            return False
        expected = members
    else:
        below = rung_key(bracket.rungs[level - 1])
        expected = [c for c in members if c.promoted(below)]
        if complete(layout, configs, bracket, level - 1, mode):
            peers = ranked(configs, bracket.index, below, mode)
            going = {c.root for c in expected}
            expected += [c for c in peers[: keep(layout, len(peers), lenient=True)] if c.root not in going]
    return all(key in c.records or c.ended for c in expected)
