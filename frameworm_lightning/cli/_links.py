"""Argument links (``parser.link_arguments`` in a CLI's ``add_arguments_to_parser``) and the space.

A link sets its target from its source: when jsonargparse parses the config
(``apply_on="parse"``, e.g. ``data.init_args.batch_size -> model.init_args.batch_size``) or
when it instantiates the classes (``apply_on="instantiate"``, e.g. the built datamodule's
``num_classes -> model.init_args.num_classes``). Each trial's config is parsed and
instantiated by the CLI itself (``cli/_trial_config.py``), so searching a link's source
reaches its target in every trial, as ``fit --data.init_args.batch_size 64`` would. A
space key that is a link's *target* would be overwritten from the source in every trial:
:func:`check_space_links` makes it an error before anything trains.

The targets are found through jsonargparse's public ``dump(skip_link_targets=...)`` (the
keys a dump without link targets leaves out) and through the links
:class:`~frameworm_lightning.cli._errors.SearchArgumentParser` notes as they are made,
which also give the source to name in the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from jsonargparse import Namespace

from frameworm_lightning.exceptions import ConfigKeyError

__all__ = ["Link", "check_space_links", "dumped_link_targets"]

Link = tuple[tuple[str, ...], str, str]  # (sources, target, apply_on), as SearchArgumentParser notes them


def _leaves(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, Mapping) and value:
        return set().union(*(_leaves(v, f"{prefix}.{k}" if prefix else str(k)) for k, v in value.items()))
    return {prefix} if prefix else set()


def dumped_link_targets(parser: Any, config: Namespace, subcommand: str | None = None) -> set[str]:
    """The keys of ``subcommand``'s config (or of the whole config) that some link sets: those a dump
    has only with ``skip_link_targets=False``."""
    def dump(skip: bool) -> Any:
        dumped = yaml.safe_load(parser.dump(config, skip_none=False, skip_link_targets=skip)) or {}
        return dumped if subcommand is None else dumped.get(subcommand) or {}

    return _leaves(dump(False)) - _leaves(dump(True))


def _under(key: str, target: str) -> bool:
    """Whether setting ``key`` sets (part of) ``target``, or the other way round."""
    return key == target or key.startswith(target + ".") or target.startswith(key + ".")


def check_space_links(space: Mapping[str, str], targets: set[str], links: Iterable[Link], cli_name: str) -> None:
    """Raise :class:`ConfigKeyError` for a space key that is a link's target.

    Args:
        space: each space key as the user wrote it, to its spelling in the config
            (``model.lr`` -> ``model.init_args.lr``).
        targets: the config keys links set (:func:`dumped_link_targets`).
        links: the links made on the CLI's parsers, whose sources the message names.
        cli_name: the CLI class whose ``add_arguments_to_parser`` made the links.
    """
    links = list(links)
    for key, dotted in space.items():
        link = next((lk for lk in links if _under(dotted, lk[1])), None)
        if link is None and not any(_under(dotted, t) for t in targets):
            continue
        where = f"parser.link_arguments in {cli_name}.add_arguments_to_parser"
        if link is None:  # a link made on a parser of another class: its source is not known
            raise ConfigKeyError(
                f"search.space key {key!r} is the target of an argument link ({where}), which sets it from "
                "the link's source in every trial; search the source instead, or drop the link."
            )
        sources, target, apply_on = link
        shown = f"{', '.join(sources)} --> {target}"
        if apply_on == "instantiate":
            raise ConfigKeyError(
                f"search.space key {key!r} is the target of the link {shown} ({where}), which sets it in every "
                f"trial from the built classes; search the arguments that decide {' and '.join(sources)} instead, "
                "or drop the link."
            )
        rest = dotted[len(target):] if dotted.startswith(target + ".") else ""
        fix = " or ".join(repr(s + rest) for s in sources)
        raise ConfigKeyError(
            f"search.space key {key!r} is the target of the link {shown} ({where}), which sets it from the "
            f"source in every trial; search {fix} instead, or drop the link."
        )
