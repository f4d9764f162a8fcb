"""Routing search-space keys to the object they configure.

``model.x`` (or a plain ``x``) goes to the LightningModule's ``__init__``, ``data.x`` to the
datamodule class, ``trainer.x`` to :class:`lightning.pytorch.Trainer`. Deeper keys
(``model.optimizer.lr``) set an entry inside the mapping (or a field of the dataclass)
passed as that argument.
``optimizer.x`` and ``lr_scheduler.x`` (LightningCLI's sections of those names) are routed
to none of these: a trial's callback that declares them in ``search_targets`` reads them
from the trial's params (``frameworm-search`` does). Every key is checked against the
target's signature before any training starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from frameworm_lightning.exceptions import ConfigKeyError
from frameworm_lightning.space import Real, SearchSpace, apply_params

__all__ = [
    "CALLBACK_TARGETS",
    "Routed",
    "TARGETS",
    "check_given",
    "check_keys",
    "check_paths",
    "check_required",
    "check_types",
    "init_arguments",
    "route_params",
    "search_targets",
]

TARGETS = ("model", "data", "trainer")
# The SearchRunner argument holding each target's base arguments.
_BASE_KWARGS = {"model": "model_kwargs", "data": "datamodule_kwargs", "trainer": "trainer_kwargs"}
# Keys under these heads configure what a trial's callback builds (``search_targets``).
CALLBACK_TARGETS = ("optimizer", "lr_scheduler")


@dataclass
class Routed:
    """Keyword arguments for each target, after a trial's params were applied."""

    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)


def _split(key: str) -> tuple[str, str]:
    head, _, rest = key.partition(".")
    if head in (*TARGETS, *CALLBACK_TARGETS) and rest:
        return head, rest
    return "model", key


def search_targets(callbacks: Iterable[Any]) -> dict[str, Any]:
    """The :data:`CALLBACK_TARGETS` the callbacks configure: ``{"optimizer": torch.optim.SGD, ...}``."""
    found: dict[str, Any] = {}
    for cb in callbacks:
        found.update({k: v for k, v in (getattr(cb, "search_targets", None) or {}).items() if k in CALLBACK_TARGETS})
    return found


def init_arguments(target: Any) -> tuple[set[str], bool]:
    """The names ``target(...)`` accepts, and whether it also takes ``**kwargs``."""
    try:
        sig = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    except (TypeError, ValueError):
        return set(), True
    names = {
        n for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def check_keys(keys: Iterable[str], targets: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigKeyError` for a key no target accepts (listing the valid ones), or
    two keys that set one argument (``lr`` and ``model.lr``).

    ``targets`` maps ``"model"``/``"data"``/``"trainer"`` to a class (or ``None`` when
    there is no such target, e.g. a datamodule passed as an instance).
    """
    keys = list(keys)
    routed = {key: _split(key) for key in keys}
    for i, key in enumerate(keys):  # "lr" and "model.lr" (or "model.opt" and "opt.lr") set one argument
        for other in keys[i + 1:]:
            (t1, r1), (t2, r2) = routed[key], routed[other]
            if t1 == t2 and (r1 == r2 or r1.startswith(r2 + ".") or r2.startswith(r1 + ".")):
                owner = getattr(targets.get(t1), "__name__", t1)
                raise ConfigKeyError(f"search-space keys {key!r} and {other!r} both set {owner}'s "
                                     f"{r1.split('.', 1)[0]}; keep one.")
    problems = []
    for key in keys:
        target_name, rest = routed[key]
        arg = rest.split(".", 1)[0]
        target = targets.get(target_name)
        if target is None:
            hint = (
                "pass the datamodule as a class (datamodule=MyDataModule) so data.* keys can configure it"
                if target_name == "data" else f"there is no {target_name} to configure"
            )
            problems.append(f"{key!r}: {hint}")
            continue
        names, var_kw = init_arguments(target)
        if arg not in names and not var_kw:
            valid = ", ".join(f"{target_name}.{n}" for n in sorted(names)) or "none"
            problems.append(f"{key!r} is not an argument of {getattr(target, '__name__', target)}; valid: {valid}")
    if problems:
        raise ConfigKeyError("unknown search-space key(s): " + "; ".join(problems) + ".")


def check_given(targets: Mapping[str, Any], given: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`ConfigKeyError` for a base argument its target does not take (a misspelt
    ``trainer_kwargs={"max_epoch": 2}``), naming the closest argument; ``given`` maps
    ``"model"``/``"data"``/``"trainer"`` to ``model_kwargs``/``datamodule_kwargs``/``trainer_kwargs``."""
    for target_name, kwargs in given.items():
        target = targets.get(target_name)
        if target is None or not kwargs:
            continue
        names, var_kw = init_arguments(target)
        for arg in kwargs:
            if var_kw or arg in names:
                continue
            where = _BASE_KWARGS[target_name]
            close = difflib.get_close_matches(arg, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(sorted(names)) or 'none'}"
            raise ConfigKeyError(f"{where} has {arg!r}, which is not an argument of "
                                 f"{getattr(target, '__name__', target)}{hint}.")


def check_paths(keys: Iterable[str], targets: Mapping[str, Any], given: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`ConfigKeyError` for a key inside an argument (``optim.lr``) whose base kwargs
    (``given[target]``: ``model_kwargs``...) do not give that argument as a mapping to set it in."""
    for key in keys:
        target_name, rest = _split(key)
        if target_name not in given or "." not in rest:
            continue
        head = rest.split(".", 1)[0]
        if head in given[target_name]:
            apply_params(given[target_name], {rest: None})  # what each trial's routing does; says what is wrong
            continue
        where = _BASE_KWARGS[target_name]
        target = targets.get(target_name)
        owner = getattr(target, "__name__", target_name)
        default = _default(target, head)
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            shown, how = f"{type(default).__name__}(...)", ""
        else:
            shown, how = "{...}", " as a mapping"
        raise ConfigKeyError(
            f"search-space key {key!r} sets an entry of {owner}'s {head}, which {where} does not give{how}: "
            f"pass {where}={{{head!r}: {shown}}} (the argument's default is not used)."
        )


def _default(target: Any, name: str) -> Any:
    """The default of ``target``'s argument ``name`` (``None`` when it has none or cannot be read)."""
    try:
        param = inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if param is None or param.default is param.empty else param.default


def check_types(space: SearchSpace, targets: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigKeyError` for a ``Real`` searched for an argument annotated ``int``
    (``Trainer(max_epochs=1.64)`` fails every trial, deep inside Lightning)."""
    for key in space.keys():
        dim = space[key]
        target_name, rest = _split(key)
        target = targets.get(target_name)
        if not isinstance(dim, Real) or target is None or "." in rest:
            continue
        try:
            hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
        except Exception:  # noqa: BLE001 - annotations that do not resolve are not checked
            continue
        if hints.get(rest) not in (int, Optional[int]):
            continue
        low, high = math.ceil(dim.low), math.floor(dim.high)
        use = f"Integer({low}, {high}{', log=True' if dim.log else ''})" if low < high else "an Integer"
        raise ConfigKeyError(f"{key!r} is a Real (floats), but {getattr(target, '__name__', target)}'s {rest} takes "
                             f"an int; use {use}.")


def check_required(keys: Iterable[str], targets: Mapping[str, Any], given: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`ConfigKeyError` for a required argument of a target (no default) that
    neither its base kwargs (``given["model"]``: ``model_kwargs``...) nor a key sets."""
    searched: dict[str, set[str]] = {}
    for key in keys:
        target_name, rest = _split(key)
        searched.setdefault(target_name, set()).add(rest.split(".", 1)[0])
    for target_name in ("model", "data"):
        target = targets.get(target_name)
        if target is None:
            continue
        try:
            params = inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters
        except (TypeError, ValueError):
            continue
        have = set(given.get(target_name) or {}) | searched.get(target_name, set())
        missing = [n for n, p in params.items() if n != "self" and p.default is p.empty
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in have]
        if missing:
            where = _BASE_KWARGS[target_name]
            raise ConfigKeyError(
                f"{getattr(target, '__name__', target)} needs {', '.join(missing)}: give it in "
                f"{where}={{{missing[0]!r}: ...}} or search it ({f'{target_name}.{missing[0]}'!r})."
            )


def route_params(
    params: Mapping[str, Any],
    model_kwargs: Mapping[str, Any] | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
) -> Routed:
    """Deep copies of the base kwargs with each param set at its routed place."""
    per_target: dict[str, dict[str, Any]] = {t: {} for t in TARGETS}
    for key, value in params.items():
        target, rest = _split(key)
        if target in per_target:  # CALLBACK_TARGETS are read by their callback
            per_target[target][rest] = value
    return Routed(
        model=apply_params(model_kwargs, per_target["model"]),
        data=apply_params(data_kwargs, per_target["data"]),
        trainer=apply_params(trainer_kwargs, per_target["trainer"]),
    )
