"""The ``stellate`` command line: the parser, logging set-up, and dispatch to a subcommand.

Each subcommand lives in its own module of this package (``up``, ``ctl``, ``validate``, ``init`` in
``configs``, ``diagram``, ``serve``, ``agent``), with its arguments next to its handler so
``stellate <cmd> --help`` stays accurate. The library modules (``stellate.server``,
``stellate.agent``, ``stellate.manager``) never parse arguments, print, or install signal
handlers: that is this package's job.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from . import agent, configs, ctl, diagram, exits, serve, status, up, validate

#: Every subcommand module, in the order ``stellate --help`` lists them.
_COMMANDS = (up, ctl, status, validate, configs, diagram, serve, agent)


def _verbosity_parent() -> argparse.ArgumentParser:
    """``-v`` accepted after the subcommand too (``stellate up -v``), counted with the first.

    A separate ``dest`` keeps the subcommand's count from overwriting the main one's
    (argparse copies a subparser's namespace over its parent's).
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        dest="verbose_after",
        action="count",
        default=0,
        help="more logging (repeat for more)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stellate",
        description="Bring a constellation of AIP device agents from YAML to task-ready.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (repeat for more)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    parents = [_verbosity_parent()]
    for command in _COMMANDS:
        command.add_command(sub, parents)
    return parser


#: Loggers that are too chatty at DEBUG for ``-v``: shown only with ``-vv``. (transitions logs
#: every callback of every transition at DEBUG.)
NOISY_LOGGERS = ("transitions",)


class CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of writing.

    The live display (rich) swaps ``sys.stderr`` for a proxy that prints above its table while
    it runs. A handler that kept the stderr of start-up would write under the table instead,
    where the next redraw overwrites the line or leaves the table's top half behind it.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(verbose: int, informative: Sequence[str] = ()) -> None:
    """No flag: warnings, and INFO of the ``informative`` loggers (a command's own state
    changes, e.g. an agent losing and rejoining its server, which its log must show). ``-v``:
    stellate's own DEBUG lines too. ``-vv``: every library's."""
    level = logging.DEBUG if verbose >= 2 else logging.WARNING
    handler = logging.StreamHandler(CurrentStderr())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("stellate").setLevel(logging.DEBUG if verbose else logging.NOTSET)
    for name in informative:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose >= 2 else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(
        args.verbose + getattr(args, "verbose_after", 0), getattr(args, "informative", ())
    )
    from ..text.redact import install_log_redaction

    install_log_redaction()  # every command's records pass the key/token filter
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
