"""``stellate up``: bring the fleet of a devices.yaml to IDLE and keep it there.

Embedded mode (the default when no CONFIG is given, or ``--embedded``) is the newcomer's path:
it starts an agent server and one device agent per configured device on 127.0.0.1 itself, points
every device at that server, and registers them all, so one command shows the whole flow on a
machine with nothing else running. The server listens on an ephemeral port (a busy 5005 must
not break a demo); the profiles show the URL actually used.

Output: progress (a live table on a terminal, plain lines otherwise) until every device is
IDLE or FAILED, then the profiles. With ``--json`` stdout carries nothing but the JSON list of
profiles (progress goes to stderr), so ``stellate up --once --json | jq`` works.

Stopping: ``--once`` exits as soon as every device has settled (0 if all are IDLE, else 1);
otherwise the fleet is kept alive until Ctrl-C (or SIGTERM), which disconnects every device with
a clean close handshake before exiting (0). A second Ctrl-C stops at once. Devices configured
with ``auto_connect: false`` are registered (phase 1) but not connected, and are left out of
both the waiting and the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..config import ConfigError, StellateConfig, load_config
from ..fsm import AgentProfile, DeviceStatus
from ..manager import ConstellationDeviceManager, EventKind, ManagerEvent
from .display import PlainDisplay, RichDisplay, print_profiles, profiles_json

if TYPE_CHECKING:
    from ..server import AgentServer

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "config/galaxy/devices.yaml"
#: How often the display redraws (seconds).
TICK = 0.25
#: How long embedded agents may take to register before ``stellate up`` gives up.
EMBEDDED_START_TIMEOUT = 30.0
_SETTLED = (DeviceStatus.IDLE, DeviceStatus.FAILED)

Display = PlainDisplay | RichDisplay


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "up",
        parents=parents,
        help="register every device of a devices.yaml and keep them task-ready",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", nargs="?", help=f"devices.yaml (default: {DEFAULT_CONFIG}, embedded)")
    p.add_argument(
        "--once",
        action="store_true",
        help="exit when every device is IDLE or FAILED (exit 1 if any failed)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the final profiles as JSON (progress: stderr)"
    )
    p.add_argument(
        "--embedded",
        action="store_true",
        help="start a local agent server and one agent per device on 127.0.0.1",
    )
    p.add_argument("--seed", type=int, default=None, help="seed the backoff jitter")
    p.add_argument(
        "--cafile",
        default=None,
        help="PEM CA bundle to trust for wss:// servers, besides the system's "
        "(certificates are always verified)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = args.config or DEFAULT_CONFIG
    embedded = args.embedded or args.config is None
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    from ..redact import add_log_secret, install_log_redaction

    install_log_redaction()
    add_log_secret(config.manager.api_key)
    if args.cafile is not None and not os.path.isfile(args.cafile):
        print(f"stellate up: --cafile {args.cafile}: no such file", file=sys.stderr)
        return 2
    try:
        return trio.run(_up, config, embedded, args.once, args.json, args.seed, args.cafile)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop at once
        print("\nstellate: interrupted", file=sys.stderr)
        return 130


async def _up(
    config: StellateConfig,
    embedded: bool,
    once: bool,
    as_json: bool,
    seed: int | None,
    cafile: str | None = None,
) -> int:
    overrides: dict[str, Any] = {}
    if seed is not None:
        overrides["rng"] = random.Random(seed)
    if cafile is not None:
        from ..adapters.websocket import WebSocketConnector

        overrides["connector"] = WebSocketConnector(cafile=cafile)
    expected = {device.device_id for device in config.devices if device.auto_connect}
    out = sys.stderr if as_json else sys.stdout
    interrupt = _Interrupt()  # Ctrl-C cancels what is under way, then we stop cleanly
    server: AgentServer | None = None
    profiles: list[AgentProfile] = []
    settled = False
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():
            await nursery.start(_interrupt_on_signals, interrupt)
        with interrupt.scope():
            if embedded:
                config, server = await start_embedded(nursery, config)
        manager = ConstellationDeviceManager.from_config(config, **overrides)
        if not interrupt.requested:
            async with manager, manager.events() as events:
                manager.add_config(config)  # after subscribing: no transition goes unseen
                display = _display(as_json, len(config.devices))
                try:
                    with interrupt.scope():
                        settled = await _watch(manager, events, display, expected, once=True)
                finally:
                    display.close()
                profiles = list(manager.get_all_devices().values())
                if not as_json:
                    print_profiles(profiles, out)
                if settled and not once:
                    print("stellate: fleet up; Ctrl-C to disconnect and exit", file=out, flush=True)
                    with interrupt.scope():
                        await _watch(manager, events, PlainDisplay(out, len(profiles)), expected)
                    profiles = list(manager.get_all_devices().values())
                if as_json:
                    print(profiles_json(profiles), flush=True)
            # Leaving the manager's block disconnected every device (close handshake 1000).
        if server is not None:
            await server.shutdown()  # agents are told 1001 and close their side cleanly
        nursery.cancel_scope.cancel()
    if interrupt.requested:
        print("stellate: stopped; every connection closed.", file=sys.stderr)
        return 0 if not once else 130
    return (
        0 if all(p.status is DeviceStatus.IDLE for p in profiles if p.device_id in expected) else 1
    )


def _display(as_json: bool, device_count: int) -> Display:
    if sys.stdout.isatty() and not as_json:
        return RichDisplay(device_count)
    return PlainDisplay(sys.stderr if as_json else sys.stdout, device_count)


class _Interrupt:
    """A stop request that cancels whichever interruptible step is under way.

    Each step gets a fresh cancel scope (a scope can be entered once); a request made between
    steps cancels the next one on entry.
    """

    def __init__(self) -> None:
        self.requested = False
        self._current: trio.CancelScope | None = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[trio.CancelScope]:
        with trio.CancelScope() as scope:
            if self.requested:
                scope.cancel()
            self._current = scope
            try:
                yield scope
            finally:
                self._current = None

    def request(self) -> None:
        self.requested = True
        if self._current is not None:
            self._current.cancel()


async def _interrupt_on_signals(
    interrupt: _Interrupt, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """The first SIGINT/SIGTERM requests a clean stop; the handlers are restored after it.

    Restoring them means a second Ctrl-C raises KeyboardInterrupt as usual: a shutdown that
    hangs can always be cut short.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            break
    interrupt.request()


async def _watch(
    manager: ConstellationDeviceManager,
    events: trio.MemoryReceiveChannel[ManagerEvent],
    display: Display,
    expected: Iterable[str],
    *,
    once: bool = False,
) -> bool:
    """Show events; with ``once``, return True as soon as every expected device is settled.

    Settlement is tracked from the events themselves (a set of unsettled devices updated per
    event), so the last device to settle ends the wait at once, not at the next redraw, and a
    large fleet costs O(1) per event. Returns False when the event stream ends (the manager
    stopped). Without ``once`` it runs until cancelled or the stream ends.
    """
    expected = set(expected)
    unsettled = {
        device_id
        for device_id, profile in manager.get_all_devices().items()
        if device_id in expected and profile.status not in _SETTLED
    }
    display.tick(manager.get_all_devices())
    next_tick = trio.current_time() + TICK
    while not (once and not unsettled):
        with trio.move_on_at(next_tick):
            try:
                event = await events.receive()
            except trio.EndOfChannel:
                return False
            display.event(event)
            # A merged-telemetry event is followed by READY for the same transition: settle
            # on that one, so it is shown too.
            if event.device_id in expected and event.kind is not EventKind.TELEMETRY_MERGED:
                if event.record.dest in _SETTLED:
                    unsettled.discard(event.device_id)
                else:
                    unsettled.add(event.device_id)
            continue
        display.tick(manager.get_all_devices())
        next_tick = trio.current_time() + TICK
    display.tick(manager.get_all_devices())
    return True


async def start_embedded(
    nursery: trio.Nursery, config: StellateConfig
) -> tuple[StellateConfig, AgentServer]:
    """Start a server and one agent per device on 127.0.0.1; return the config pointed at it.

    Returns only once every agent has registered on the server (``DeviceAgent.run`` reports
    started after its first registration): a manager started earlier would be told "target
    device is not connected", which is final. The agents start concurrently and share one
    telemetry collection (they all describe this machine; psutil is not free).

    Raises:
        TimeoutError: the agents did not all register within ``EMBEDDED_START_TIMEOUT``.
    """
    from ..adapters.telemetry import DeviceInfoProvider
    from ..agent import DeviceAgent
    from ..server import AgentServer

    api_key = config.manager.api_key
    server = AgentServer(api_key=api_key)
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/ws"
    logger.info("embedded agent server on %s", url)
    base = DeviceInfoProvider.collect_system_info(config.devices[0].device_id, {})
    agents = [
        DeviceAgent(
            url,
            device.device_id,
            api_key=api_key,
            system_info={**base, "device_id": device.device_id},
        )
        for device in config.devices
    ]
    with trio.fail_after(EMBEDDED_START_TIMEOUT):
        async with trio.open_nursery() as starting:
            for agent in agents:
                starting.start_soon(nursery.start, agent.run)
    devices = tuple(attrs.evolve(device, server_url=url) for device in config.devices)
    return attrs.evolve(config, devices=devices), server
