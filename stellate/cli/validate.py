"""``stellate validate``: check a devices.yaml and report every problem as FILE:LINE: field."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import ConfigError, load_config

DEFAULT_CONFIG = "config/galaxy/devices.yaml"


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("validate", help="check a devices.yaml file", parents=parents)
    p.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    print(f"OK: {len(config.devices)} devices")
    return 0
