"""The ``stellate`` command line: validate, diagram, serve, agent, up.

Each subcommand's handler is a small function here that calls the library; argument parsing
lives with its handler so ``stellate <cmd> --help`` stays accurate.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

DEFAULT_CONFIG = "config/galaxy/devices.yaml"


def _cmd_diagram(args: argparse.Namespace) -> int:
    from .fsm.diagram import render

    sys.stdout.write(render(args.format))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    print(f"OK: {len(config.devices)} devices")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stellate",
        description="Bring a constellation of AIP device agents from YAML to task-ready.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a devices.yaml file")
    p.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("diagram", help="print the registration state machine")
    p.add_argument("--format", choices=("mermaid", "dot", "table"), default="mermaid")
    p.set_defaults(handler=_cmd_diagram)

    # serve / agent / up are registered by their modules' add_*_command functions.
    for module_name, func_name in (
        ("server", "add_serve_command"),
        ("agent", "add_agent_command"),
        ("up", "add_up_command"),
    ):
        try:
            module = __import__(f"stellate.{module_name}", fromlist=[func_name])
        except ImportError:  # pragma: no cover - module not built yet
            continue
        getattr(module, func_name)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .redact import install_log_redaction

    install_log_redaction()  # every command's records pass the key/token filter
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
