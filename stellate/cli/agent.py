"""``stellate agent``: run one device agent (or N simulated ones) until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import trio

from ..agent.device_agent import AGENT_TIMING, AgentRefused, DeviceAgent, run_fleet
from ..protocol.rejections import RejectionKind
from ..text.redact import add_log_secret, install_log_redaction, redact_url, shown
from ..text.urls import url_problems
from . import exits
from .keys import API_KEY_ENV, read_api_key
from .limits import ensure_descriptors
from .serve import positive_int
from .timing_flags import add_timing_flags, timing_from_flags

#: The agent's timing flags: the ``Timing`` fields it reads, with their help text.
TIMING_FLAGS = {"heartbeat_interval": "seconds between heartbeats"}


def parse_metadata(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}``.

    Raises:
        ValueError: an item has no ``=`` or an empty key.
    """
    metadata: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata expects key=value, got {item!r}")
        metadata[key] = value
    return metadata


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``stellate agent`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "agent",
        parents=parents,
        help="run a device agent (or N simulated ones) that registers on an agent server",
        description="Register this machine as an AIP device on SERVER and keep it registered.",
    )
    p.add_argument("--server", required=True, help="agent server URL, e.g. ws://127.0.0.1:5005/ws")
    p.add_argument("--device-id", help="the device id to register (one agent)")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"the server's shared key (default: ${API_KEY_ENV}; on the command line it is "
        "visible to other local users: prefer the environment or --api-key-file)",
    )
    p.add_argument(
        "--api-key-file", default=None, metavar="FILE", help="read the server's key from FILE"
    )
    p.add_argument(
        "--cafile",
        default=None,
        help="PEM CA bundle to trust for a wss:// server, besides the system's "
        "(certificates are always verified)",
    )
    p.add_argument(
        "--metadata",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="custom metadata sent with the telemetry",
    )
    add_timing_flags(p, AGENT_TIMING, TIMING_FLAGS)
    p.add_argument(
        "--count", type=positive_int, default=None, help="simulate N agents in this process"
    )
    p.add_argument(
        "--device-id-prefix", default=None, help="with --count: ids are PREFIX0..PREFIX{N-1}"
    )
    # Its log is all an operator has: registered, lost and rejoined show at the default level.
    p.set_defaults(handler=run, informative=("stellate.agent",))


def _device_ids(args: argparse.Namespace) -> list[str]:
    if args.count is None:
        if not args.device_id:
            raise ValueError("--device-id is required (or --count N --device-id-prefix P)")
        return [args.device_id]
    prefix = args.device_id_prefix if args.device_id_prefix is not None else args.device_id
    if not prefix:
        raise ValueError("--count needs --device-id-prefix")
    return [f"{prefix}{i}" for i in range(args.count)]


def _leaves(group: BaseExceptionGroup[AgentRefused]) -> Iterator[AgentRefused]:
    """The refusals in a (nested) exception group, in order."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def run(args: argparse.Namespace) -> int:
    problem = next(iter(url_problems(args.server)), None)
    if problem is not None:
        print(f"stellate agent: --server {problem}", file=sys.stderr)
        return 2
    try:
        device_ids = _device_ids(args)
        metadata = parse_metadata(args.metadata)
        timing = timing_from_flags(args, AGENT_TIMING, TIMING_FLAGS)
    except ValueError as exc:
        print(f"stellate agent: {exc}", file=sys.stderr)
        return 2
    try:
        key = read_api_key(args)
    except (OSError, ValueError) as exc:
        print(f"stellate agent: cannot read the API key: {exc}", file=sys.stderr)
        return 2
    api_key = key.value
    install_log_redaction()
    add_log_secret(api_key)
    if args.cafile is not None and not os.path.isfile(args.cafile):
        print(f"stellate agent: --cafile {args.cafile}: no such file", file=sys.stderr)
        return 2
    from ..adapters.telemetry import DeviceInfoProvider
    from ..adapters.websocket import WebSocketConnector

    connector = WebSocketConnector(cafile=args.cafile, connect_timeout=timing.connect_timeout)

    # Collected once and shared: N simulated agents describe the same machine.
    base = DeviceInfoProvider.collect_system_info(device_ids[0], metadata)
    try:  # a bad id or URL: retrying cannot help
        agents = [
            DeviceAgent(
                args.server,
                device_id,
                api_key=api_key,
                connector=connector,
                custom_metadata=metadata,
                timing=timing,
                system_info={**base, "device_id": device_id},
            )
            for device_id in device_ids
        ]
    except ValueError as exc:
        print(f"stellate agent: {exc}", file=sys.stderr)
        return 2
    shortfall = ensure_descriptors(len(agents))
    if shortfall is not None:
        print(f"stellate agent: {shortfall.message(f'{len(agents)} agents')}", file=sys.stderr)
        return 2
    server = redact_url(args.server)
    began = time.monotonic()

    def all_registered() -> None:
        elapsed = time.monotonic() - began
        print(f"{len(agents)} agent(s) registered on {server} in {elapsed:.2f} s", flush=True)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(run_fleet, agents, on_all_registered=all_registered))
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()  # each agent closes its socket with 1001

    refused: list[AgentRefused] = []
    try:
        trio.run(main)
    except* AgentRefused as group:  # a refusal no retry can fix: say so and stop
        refused = list(_leaves(group))
    if refused:
        first = refused[0]
        others = f" (and {len(refused) - 1} more agent(s))" if len(refused) > 1 else ""
        source = f", {key.source}" if first.kind is RejectionKind.AUTH else ""
        print(f"stellate agent: {shown(first)}{source}{others}; stopped", file=sys.stderr)
        return 2
    print("stopped", file=sys.stderr)
    return exits.when_stopped(runs_until_stopped=True)
