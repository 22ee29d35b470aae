"""Timing flags: each one names a field of ``stellate.Timing``, and all go into one ``Timing``.

``--heartbeat-interval`` is ``Timing.heartbeat_interval``, and so on: a command lists the fields
it exposes with their help text, and gets back its base ``Timing`` with the flags the user gave
applied. ``Timing`` checks the values, so a bad one is a usage error that names its flag
(``--heartbeat-interval: must be > 0, got 0.0``), never a traceback or a silently odd server.
Each value is checked as it is parsed, by the rule its config key follows
(``Timing.rule_violations``): argparse then refuses it before anything starts (exit 2,
``argument --miss-limit: must be >= 1, got 0``); the rules between fields (``backoff_cap`` at
least ``reconnect_delay``) are checked when the flags are applied.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping

import attrs

from ..errors import InvalidFields
from ..timing import Timing

__all__ = ["add_timing_flags", "flag_name", "timing_from_flags"]


def flag_name(field: str) -> str:
    """``heartbeat_interval`` → ``--heartbeat-interval``."""
    return "--" + field.replace("_", "-")


def add_timing_flags(
    parser: argparse.ArgumentParser, base: Timing, helps: Mapping[str, str]
) -> None:
    """A flag per ``Timing`` field named in ``helps`` (its help text), defaulting to ``base``."""
    fields = attrs.fields_dict(attrs.resolve_types(Timing))
    for name, text in helps.items():
        kind = fields[name].type
        parser.add_argument(
            flag_name(name),
            dest=name,
            type=_checked(name, int if kind is int else float),
            default=None,
            metavar="N" if kind is int else "SECONDS",
            help=f"{text} (default: {getattr(base, name)})",
        )


def _checked(name: str, kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse ``type=`` parsing ``Timing.name`` as ``kind`` and holding it to its rule."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number of seconds"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        problems = Timing.rule_violations({name: value})
        if problems:
            raise argparse.ArgumentTypeError("; ".join(message for _, message in problems))
        return value

    parse.__name__ = name
    return parse


def timing_from_flags(args: argparse.Namespace, base: Timing, names: Iterable[str]) -> Timing:
    """``base`` with every flag of ``names`` that was given applied.

    Raises:
        ValueError: a value breaks its ``Timing`` rule; the message names each flag.
    """
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    try:
        return base.evolve(**given)
    except InvalidFields as exc:
        raise ValueError(
            "; ".join(f"{flag_name(str(path[0]))}: {message}" for path, message in exc.violations)
        ) from None
