"""``stellate diagram``: the registration state machine, drawn from the one transition table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..fsm.diagram import FORMATS, render


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "diagram", help="print the registration state machine", parents=parents
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="mermaid",
        help="mermaid (stateDiagram-v2, default), dot (graphviz source) or table (markdown, "
        "one line per row of the transition table)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render(args.format))
    return 0
