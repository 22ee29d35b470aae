"""``stellate validate``: check a devices.yaml and report every problem as FILE:LINE: field."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import DEFAULT_CONFIG_PATH
from ..text.urls import redact_url
from .configs import load_chosen


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
    config = load_chosen(args.file, "validate")
    if config is None:
        return 2
    store = config.store
    shared = (
        ""
        if store is None
        else f", shared through the fleet store {redact_url(store.url)} (lease {store.lease:g} s)"
    )
    print(f"OK: {len(config.devices)} devices{shared}")
    return 0
