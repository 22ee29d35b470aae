"""Which devices.yaml a command uses when none is named, and ``stellate init``.

Without a CONFIG argument, ``stellate up`` and ``stellate validate`` use
``config/galaxy/devices.yaml`` of the working directory when there is one, else the example
fleet shipped inside the package, so the first command of a new user works from any directory.
Either way they say on stderr which file they use (stdout stays clean for ``--json``). A file
found in the working directory is used as written (``stellate up`` contacts its servers); only
the shipped example, whose servers exist nowhere, implies embedded mode.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import attrs

from ..config import DEFAULT_CONFIG_PATH, ConfigError, StellateConfig, load_config
from ..local import example_config_path


@attrs.frozen
class ConfigChoice:
    """The file a command will load, and what to tell the user about that choice."""

    path: str
    note: str | None = None
    #: No file was named and the working directory has none: the example shipped with
    #: stellate, whose servers exist nowhere (``stellate up`` runs it in embedded mode).
    shipped_example: bool = False


def choose_config(given: str | None) -> ConfigChoice:
    """``given`` if any, else the working directory's default file, else the shipped example."""
    if given is not None:
        return ConfigChoice(given)
    if Path(DEFAULT_CONFIG_PATH).is_file():
        return ConfigChoice(DEFAULT_CONFIG_PATH, f"using {DEFAULT_CONFIG_PATH}")
    example = example_config_path()
    return ConfigChoice(
        str(example),
        f"no {DEFAULT_CONFIG_PATH} in this directory: using the example fleet shipped with "
        f"stellate ({example}); `stellate init` writes a copy to edit",
        shipped_example=True,
    )


def load_chosen(given: str | None, command: str) -> StellateConfig | None:
    """The config ``command`` runs on: chosen and announced as above, then loaded.

    ``None`` when the file has problems: each is printed to stderr as ``FILE:LINE: field:
    message`` (every one, in file order), and the command exits 2.
    """
    return load_announced(choose_config(given), command)


def load_announced(choice: ConfigChoice, command: str) -> StellateConfig | None:
    """``choice`` announced, then loaded (``None``, its problems printed, as above)."""
    announce(choice, command)
    try:
        return load_config(choice.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def plain_text(doc: str) -> str:
    """A docstring as ``--help`` shows it: no reST (````code````, ``:role:`name```)."""
    return re.sub(r":\w+:`([^`]*)`", r"\1", doc).replace("``", "")


def announce(choice: ConfigChoice, command: str) -> None:
    if choice.note is not None:
        print(f"stellate {command}: {choice.note}", file=sys.stderr, flush=True)


# -- stellate init ------------------------------------------------------------------------------


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "init",
        help="write a commented starter devices.yaml",
        description="Write a commented starter devices.yaml (the example fleet) to edit.",
        parents=parents,
    )
    p.add_argument(
        "path",
        nargs="?",
        default=DEFAULT_CONFIG_PATH,
        metavar="PATH",
        help=f"where to write it (default: {DEFAULT_CONFIG_PATH}, which `stellate up` and "
        "`stellate validate` read when given no file)",
    )
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    p.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    target = Path(args.path)
    if target.exists() and not args.force:
        print(f"stellate init: {target} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(example_config_path().read_text(encoding="utf-8"), encoding="utf-8")
    except OSError as exc:
        print(f"stellate init: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {target}: three example devices, every setting commented")
    print(f"  check it:   stellate validate {target}")
    print(f"  try it:     stellate up {target} --embedded --once   (a local server and agents)")
    print(f"  use it:     stellate up {target}   (the servers its devices name)")
    return 0
