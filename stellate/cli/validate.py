"""``stellate validate``: check a devices.yaml and report every problem as FILE:LINE: field."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from .configs import announce, choose_config


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("validate", help="check a devices.yaml file", parents=parents)
    p.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help=f"the devices.yaml to check (default: {DEFAULT_CONFIG_PATH} if present here, "
        "else the example shipped with stellate)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    choice = choose_config(args.file)
    announce(choice, "validate")
    try:
        config = load_config(choice.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    print(f"OK: {len(config.devices)} devices")
    return 0
