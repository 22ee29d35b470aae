"""``stellate up``: bring the fleet of a devices.yaml to IDLE and keep it there.

Embedded mode (the default when no CONFIG is given, or ``--embedded``) is the newcomer's path:
it starts an agent server and one device agent per configured device on 127.0.0.1 itself, points
every device at that server, and registers them all, so one command shows the whole flow on a
machine with nothing else running. The server listens on an ephemeral port (a busy 5005 must
not break a demo); the profiles show the URL actually used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import attrs
import trio

from .config import ConfigError, StellateConfig, load_config
from .display import PlainDisplay, RichDisplay, print_profiles, profiles_json
from .fsm import DeviceStatus
from .manager import ConstellationDeviceManager, open_constellation

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "config/galaxy/devices.yaml"
#: How often the display redraws (seconds).
TICK = 0.25


def add_up_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "up",
        help="register every device of a devices.yaml and keep them task-ready",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help=f"devices.yaml (default: {DEFAULT_CONFIG}, embedded)")
    p.add_argument(
        "--once", action="store_true", help="exit when every device is IDLE or FAILED (1 if any failed)"
    )
    p.add_argument("--json", action="store_true", help="print the final profiles as JSON")
    p.add_argument(
        "--embedded",
        action="store_true",
        help="start a local agent server and one agent per device on 127.0.0.1",
    )
    p.add_argument("--seed", type=int, default=None, help="seed the backoff jitter")
    p.set_defaults(handler=_cmd_up)


def _cmd_up(args: argparse.Namespace) -> int:
    path = args.config or DEFAULT_CONFIG
    embedded = args.embedded or args.config is None
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        return trio.run(_up, config, embedded, args.once, args.json, args.seed)
    except KeyboardInterrupt:
        print("\nstellate: stopped; every connection closed.", file=sys.stderr)
        return 130


async def _up(
    config: StellateConfig, embedded: bool, once: bool, as_json: bool, seed: int | None
) -> int:
    import random

    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["rng"] = random.Random(seed)
    async with trio.open_nursery() as nursery:
        if embedded:
            config = await start_embedded(nursery, config)
        async with open_constellation(config, **overrides) as manager:
            interactive = sys.stdout.isatty() and not as_json
            out = sys.stderr if as_json else sys.stdout
            display: PlainDisplay | RichDisplay = (
                RichDisplay(len(config.devices))
                if interactive
                else PlainDisplay(out, len(config.devices))
            )
            try:
                settled = await _watch(manager, display, once)
            finally:
                display.close()
            profiles = list(manager.get_all_devices().values())
            if as_json:
                print(profiles_json(profiles))
            else:
                print_profiles(profiles)
        nursery.cancel_scope.cancel()
    if not settled:
        return 0
    return 0 if all(p.status is DeviceStatus.IDLE for p in profiles) else 1


async def _watch(
    manager: ConstellationDeviceManager, display: PlainDisplay | RichDisplay, once: bool
) -> bool:
    """Show progress; with ``once``, return True when every device is IDLE or FAILED."""
    async with manager.events() as events:
        while True:
            with trio.move_on_after(TICK):
                async for event in events:
                    display.event(event)
            profiles = manager.get_all_devices()
            display.tick(profiles)
            if once and all(
                p.status in (DeviceStatus.IDLE, DeviceStatus.FAILED) for p in profiles.values()
            ):
                return True


async def start_embedded(nursery: trio.Nursery, config: StellateConfig) -> StellateConfig:
    """Start a server and one agent per device on 127.0.0.1; return the config pointed at it."""
    from .agent import DeviceAgent
    from .server import AgentServer

    api_key = config.manager.api_key
    server = AgentServer(api_key=api_key)
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/ws"
    logger.info("embedded agent server on %s", url)
    agent_url = url if not api_key else f"{url}?token={api_key}"
    for device in config.devices:
        agent = DeviceAgent(agent_url, device.device_id)
        await nursery.start(agent.run)
    devices = tuple(attrs.evolve(device, server_url=url) for device in config.devices)
    return attrs.evolve(config, devices=devices)
