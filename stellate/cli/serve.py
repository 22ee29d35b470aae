"""``stellate serve``: run an AIP agent server until Ctrl-C (or SIGTERM), then close cleanly."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
from typing import Any

import trio

from ..adapters.listener import is_loopback_host
from ..protocol.session_server import ServerPolicy
from ..server.agent_server import (
    API_KEY_ENV,
    DEFAULT_MAX_MESSAGE_SIZE,
    FD_HEADROOM,
    AgentServer,
    InsecureBindError,
    server_ssl_context,
)
from ..text.redact import add_log_secret, install_log_redaction
from ..timing import DEFAULT_TIMING
from . import exits
from .keys import read_api_key
from .limits import raise_open_file_limit
from .timing_flags import add_timing_flags, timing_from_flags

#: The server's timing flags: the ``Timing`` fields it reads, with their help text.
TIMING_FLAGS = {
    "registration_timeout": "seconds a new socket has for its handshake, and then for its "
    "register frame",
    "heartbeat_interval": "expected device heartbeat period in seconds",
    "miss_limit": "missed heartbeats before a client is declared lost",
}


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``stellate serve`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "serve",
        parents=parents,
        help="run an AIP agent server (devices register, constellations query)",
        description=(
            "Run an AIP agent server on ws://HOST:PORT/ws (wss:// with --certfile). Off "
            "loopback it requires an API key (or --insecure-no-auth)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=5005, help="port (default: 5005; 0: any free port)"
    )
    p.add_argument(
        "--api-key",
        default=None,
        help=f"shared key clients pass as ?token= (default: ${API_KEY_ENV}; note that a key "
        "on the command line is visible to other local users: prefer the environment or "
        "--api-key-file)",
    )
    p.add_argument(
        "--api-key-file", default=None, metavar="FILE", help="read the shared key from FILE"
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow serving without an API key on a non-loopback interface",
    )
    p.add_argument("--certfile", default=None, help="PEM certificate chain: serve wss://")
    p.add_argument("--keyfile", default=None, help="PEM private key (default: in --certfile)")
    add_timing_flags(p, DEFAULT_TIMING, TIMING_FLAGS)
    p.add_argument(
        "--max-message-size",
        type=positive_int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest frame in bytes; a larger one closes its socket with 1009 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-system-info-bytes",
        type=positive_int,
        default=ServerPolicy().max_system_info_bytes,
        help="most kept of one device's system_info (compact JSON); a bigger one is not "
        "stored and the device is told (default: %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=positive_int,
        default=None,
        help="connections held at once; more are refused with HTTP 503 (default: the "
        f"open-file limit less {FD_HEADROOM})",
    )
    p.add_argument(
        "--max-unregistered",
        type=positive_int,
        default=None,
        help="connections not yet registered; more are refused with HTTP 503 (default: a "
        "quarter of --max-connections)",
    )
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="neither count nor serve GET /metrics (Prometheus) on the server's port",
    )
    p.set_defaults(handler=run)


def port_number(text: str) -> int:
    """A TCP port for argparse: 1-65535, or 0 for any free port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535 (or 0 for any free port), got {value}")
    return value


def positive_int(text: str) -> int:
    """A count or a size for argparse (no config key has these): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"stellate serve: {message}", file=sys.stderr)
        return 2

    try:
        api_key = read_api_key(args).value
    except (OSError, ValueError) as exc:
        return fail(f"cannot read the API key: {exc}")
    install_log_redaction()
    add_log_secret(api_key)
    ssl_context: ssl.SSLContext | None = None
    if args.keyfile and not args.certfile:
        return fail("--keyfile needs --certfile")
    if args.certfile:
        try:
            ssl_context = server_ssl_context(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            return fail(f"cannot load the TLS certificate/key: {exc}")
    raise_open_file_limit()  # every client holds one descriptor: take what the system allows
    try:
        timing = timing_from_flags(args, DEFAULT_TIMING, TIMING_FLAGS)
    except ValueError as exc:
        return fail(str(exc))
    policy = ServerPolicy(timing=timing, max_system_info_bytes=args.max_system_info_bytes)
    server = AgentServer(
        api_key=api_key,
        policy=policy,
        ssl_context=ssl_context,
        max_message_size=args.max_message_size,
        max_connections=args.max_connections,
        max_unregistered=args.max_unregistered,
        insecure_no_auth=args.insecure_no_auth,
        metrics=not args.no_metrics,
    )
    try:
        server.check_bind(args.host)
    except InsecureBindError as exc:
        return fail(str(exc))
    if not is_loopback_host(args.host):
        if ssl_context is None:
            print(
                "stellate serve: warning: no TLS (--certfile): the API key and all traffic "
                "cross the network in clear text",
                file=sys.stderr,
            )
        if api_key is None:
            print(
                "stellate serve: warning: --insecure-no-auth: anyone who can reach this "
                "server can register devices and read their telemetry",
                file=sys.stderr,
            )
    scheme = "ws" if ssl_context is None else "wss"

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(server.serve, args.host, args.port)
                auth = " (token required)" if api_key else ""
                print(
                    f"stellate agent server on {scheme}://{args.host}:{port}/ws{auth}", flush=True
                )
                print(
                    f"stellate serve: up to {server.max_connections} connections at once "
                    f"({server.max_unregistered} not yet registered); more get HTTP 503",
                    file=sys.stderr,
                    flush=True,
                )
                async for _ in signals:
                    break
                await server.shutdown()
                nursery.cancel_scope.cancel()

    failure: BaseException | None = None
    try:
        trio.run(main)
    except* OSError as group:  # bind failures (address in use, permission)
        failure = group.exceptions[0]
    if failure is not None:
        reason = failure.strerror if isinstance(failure, OSError) and failure.strerror else failure
        print(f"cannot serve on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    print("stopped", file=sys.stderr)
    return exits.when_stopped(runs_until_stopped=True)
