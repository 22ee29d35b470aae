"""``stellate up``: bring the fleet of a devices.yaml to IDLE and keep it there.

Which file: CONFIG if given; else ``config/galaxy/devices.yaml`` of the working directory; else
the example fleet shipped with stellate (stderr says which). The file is used as written: each
device connects to its ``server_url``. Embedded mode (``--embedded``, or the shipped example,
whose servers exist nowhere) starts an agent server and one device agent per device on
127.0.0.1 itself (a free port; the profiles show the URL used), so one command shows the whole
flow on a machine with nothing else running. Embedded mode is said on stderr and, with
--json, in every JSON object (``"embedded": true``): a green fleet of local agents is never
mistaken for the real one.

The servers' API key: ``--api-key-file``, else ``$STELLATE_API_KEY``, else ``manager.api_key``
of the file (the rule of ``stellate.cli.keys``, shared with ``serve`` and ``agent``); a device
whose ``server_url`` carries its own ``token=`` uses that one. A refused key names where it came
from, never the key.

Output: progress (a live view on a terminal, plain lines otherwise) until every device is IDLE
or FAILED, then the profiles and a summary. Each wait says why and when (``dev-a: connecting ->
backoff: connection refused (127.0.0.1:5055); attempt 2/5 in 1.8 s``).

--json: stdout carries nothing but JSON, progress goes to stderr. With --once, one JSON list of
the final profiles (Galaxy's keys plus failure_reason, last_error and embedded), so ``stellate
up --once --json | jq`` works. Without --once, one JSON object per line per event (NDJSON,
flushed as it happens: time, event, device_id, trigger, source, dest, reason, retry_in,
profile, embedded).

Control while it runs (``stellate ctl``): with ``--metrics-port`` and a control key
(``--control-key-file F``, else ``$STELLATE_CONTROL_KEY``), the same port takes ``POST
/api/devices/ID/retry``, ``/api/devices/ID/disconnect`` and ``/api/reload`` carrying that key;
without a key they answer 403 saying how to enable them. SIGHUP (or ``/api/reload``) re-reads
CONFIG: devices added start, devices removed disconnect cleanly, devices whose entry changed
restart, the others are not touched (their connections stay); a file with problems changes
nothing and each problem is printed (``FILE:LINE: field: message``). Not in embedded mode or
with ``--store``: restart for those.

Exit status (the rule of every command: ``stellate.cli.exits``). --once: 0 when every device
is IDLE, 1 when any failed or --timeout passed first (the devices still pending are named), 2
for a bad config, 130 when interrupted (Ctrl-C or SIGTERM) before every device settled. Without
--once the fleet is kept until Ctrl-C (or SIGTERM), which disconnects every device with a clean
close handshake and exits 0. A FAILED device starts a fresh run by itself
``retry_failed_after`` seconds later (default 300), so the fleet is kept even when every
device has failed; only where that setting is null (FAILED waits for the owner) does a fleet
whose every device settled FAILED (at bring-up, or later) say so and exit 1, so a supervisor
can restart it. A second Ctrl-C stops at once
(130). Devices with ``auto_connect: false`` are registered (phase 1) but not connected, and
count for neither.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import logging
import os
import random
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..config import DEFAULT_CONFIG_PATH, ConfigError, StellateConfig, load_config
from ..fsm import SETTLED, DeviceStatus, Tag
from ..local import start_local_agents
from ..manager import (
    ConstellationDeviceManager,
    EventKind,
    ManagerEvent,
    ReloadRefused,
    ReloadReport,
)
from ..manager.control import Reload, control_actions
from ..manager.metrics import FLEET_DESCRIPTORS, serve_fleet
from ..manager.stats import StatusCounts
from ..text.redact import shown
from . import exits, shared_fleet
from .configs import choose_config, load_announced, plain_text
from .display import (
    TICK,
    DeviceReport,
    Display,
    Displays,
    JsonLinesDisplay,
    PlainDisplay,
    RichDisplay,
    fleet_summary,
    print_profiles,
    profiles_json,
)
from .keys import API_KEY_ENV, CONTROL_KEY_ENV, read_api_key, read_control_key
from .limits import ensure_descriptors
from .serve import port_number
from .shared_fleet import SharedOptions

if TYPE_CHECKING:
    from ..server import AgentServer

logger = logging.getLogger(__name__)

#: Descriptors one device needs: in embedded mode the manager's socket and the server's end of
#: it, the agent's socket and the server's end of that; otherwise the manager's socket only.
DESCRIPTORS_PER_DEVICE = {True: 4, False: 1}
#: Set in the environment (stellate's test suite does), a bug in a device's task fails the
#: run once logged, instead of only that device (the manager's ``strict``). Read here, where
#: the command starts: the library reads no environment.
STRICT_ENV = "STELLATE_STRICT"
#: What stderr adds when the working directory's file is used without --embedded.
AS_WRITTEN_NOTE = "its devices connect to the servers it names; --embedded starts local ones"
#: What stderr says in embedded mode: the fleet's servers are local stand-ins.
EMBEDDED_NOTE = (
    "embedded mode: a local agent server and one agent per device on 127.0.0.1 stand in for "
    "the servers the file names (those are not contacted)"
)
#: What the control API answers (403) when no control key is configured.
CONTROL_DISABLED = (
    "the control API is disabled: start stellate up with --control-key-file FILE (or "
    f"${CONTROL_KEY_ENV} set) to enable it"
)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "up",
        parents=parents,
        help="register every device of a devices.yaml and keep them task-ready",
        description=plain_text(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help=f"the devices.yaml to bring up (default: {DEFAULT_CONFIG_PATH} if present here, "
        "used as written; else the example shipped with stellate, in embedded mode)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="exit when every device is IDLE or FAILED (exit 1 if any failed)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="with --once: give up after SECONDS, naming the devices still pending (exit 1)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON on stdout (progress on stderr): the final profiles with --once, else one "
        "object per event per line",
    )
    p.add_argument(
        "--embedded",
        action="store_true",
        help="start a local agent server and one agent per device on 127.0.0.1 and use them "
        "instead of the servers the file names (implied for the shipped example)",
    )
    p.add_argument(
        "--api-key-file",
        default=None,
        metavar="FILE",
        help=f"read the servers' key from FILE (before ${API_KEY_ENV}, then manager.api_key; "
        "a server_url with its own token= keeps it)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed the backoff jitter")
    p.add_argument(
        "--cafile",
        default=None,
        help="PEM CA bundle to trust for wss:// servers, besides the system's "
        "(certificates are always verified)",
    )
    p.add_argument(
        "--metrics-port",
        type=port_number,
        default=None,
        metavar="PORT",
        help="serve the fleet page (/), /api/fleet and Prometheus /metrics on PORT "
        "(0: any free port; the address is printed on stderr)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="interface for --metrics-port (default: 127.0.0.1; elsewhere requests must "
        "carry the fleet's api_key as X-API-Key)",
    )
    p.add_argument(
        "--control-key-file",
        default=None,
        metavar="FILE",
        help=f"enable the control API on --metrics-port (stellate ctl: retry, disconnect, "
        f"reload) behind the key in FILE (else ${CONTROL_KEY_ENV}; neither: it answers 403)",
    )
    shared_fleet.add_arguments(p)
    p.set_defaults(handler=run)


@attrs.frozen
class _Options:
    embedded: bool
    once: bool
    as_json: bool
    timeout: float | None = None
    seed: int | None = None
    cafile: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    strict: bool = False
    #: Where the servers' key came from (named when a server refuses it).
    key_source: str | None = None
    #: The store the fleet is shared through (None: this manager runs every device).
    shared: SharedOptions | None = None
    #: The control API's key (None: its actions answer 403).
    control_key: str | None = attrs.field(default=None, repr=False)
    #: The devices.yaml a reload re-reads.
    config_path: str | None = None


def _fail(message: str) -> int:
    print(f"stellate up: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.once:
        return _fail("--timeout applies to --once (without it the fleet runs until Ctrl-C)")
    choice = choose_config(args.config)
    embedded = args.embedded or choice.shipped_example
    if choice.note is not None and not embedded:  # found in the working directory
        choice = attrs.evolve(choice, note=f"{choice.note}, as written ({AS_WRITTEN_NOTE})")
    config = load_announced(choice, "up")
    if config is None:
        return 2
    shared = shared_fleet.shared_options(args, config, embedded=embedded, once=args.once)
    if isinstance(shared, str):
        return _fail(shared)
    if embedded:
        print(f"stellate up: {EMBEDDED_NOTE}", file=sys.stderr, flush=True)
    options = _Options(
        embedded=embedded,
        once=args.once,
        as_json=args.json,
        timeout=args.timeout,
        seed=args.seed,
        cafile=args.cafile,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        strict=os.environ.get(STRICT_ENV, "") not in ("", "0"),
        shared=shared,
    )
    try:
        key = read_api_key(args, config_key=config.manager.api_key, config_path=choice.path)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read the API key: {exc}")
    from ..text.redact import add_log_secret, install_log_redaction

    install_log_redaction()
    add_log_secret(key.value)
    # One key for everything that uses it: the devices' URLs, the embedded server, the page.
    config = attrs.evolve(config, manager=attrs.evolve(config.manager, api_key=key.value))
    options = attrs.evolve(options, key_source=key.source)
    try:
        control = read_control_key(args)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read the control key: {exc}")
    if args.control_key_file is not None and args.metrics_port is None:
        return _fail("--control-key-file needs --metrics-port (the control API is served there)")
    add_log_secret(control.value)
    options = attrs.evolve(options, control_key=control.value, config_path=choice.path)
    if args.cafile is not None and not os.path.isfile(args.cafile):
        return _fail(f"--cafile {args.cafile}: no such file")
    count = len(config.devices)
    shortfall = ensure_descriptors(descriptors_needed(count, options))
    if shortfall is not None:
        mode = " in embedded mode (4 per device)" if options.embedded else " (1 per device)"
        fleet_port = (
            f" and the fleet port ({FLEET_DESCRIPTORS})" if options.metrics_port is not None else ""
        )
        message = shortfall.message(f"a fleet of {count} devices{mode}{fleet_port}")
        if options.shared is None:
            return _fail(message)
        # Shared, this manager runs only its part; all of it only if every other one is down.
        print(
            f"stellate up: warning: {message}; sharing the fleet, this manager can run at most "
            f"{shortfall.available} of its devices at once",
            file=sys.stderr,
            flush=True,
        )
    try:
        return trio.run(_up, config, options)
    except KeyboardInterrupt:  # a second Ctrl-C while stopping: stop at once
        print("\nstellate: interrupted", file=sys.stderr)
        return exits.INTERRUPTED


def descriptors_needed(device_count: int, options: _Options) -> int:
    """Descriptors the run needs besides the headroom: the devices' sockets, and the fleet
    port's share when it is served (bounded: it never takes what the devices need)."""
    fleet_port = FLEET_DESCRIPTORS if options.metrics_port is not None else 0
    return device_count * DESCRIPTORS_PER_DEVICE[options.embedded] + fleet_port


async def _up(config: StellateConfig, options: _Options) -> int:
    overrides: dict[str, Any] = {
        "strict": options.strict,
        "api_key_source": options.key_source,
    }
    if options.seed is not None:
        overrides["rng"] = random.Random(options.seed)
    if options.cafile is not None:
        from ..adapters.websocket import WebSocketConnector

        # No deadline of its own: the configured connect_timeout (the state's) is the one.
        overrides["connector"] = WebSocketConnector(cafile=options.cafile, connect_timeout=None)
    expected = {device.device_id for device in config.devices if device.auto_connect}
    interrupt = _Interrupt()  # Ctrl-C cancels what is under way, then we stop cleanly
    server: AgentServer | None = None
    code = 0
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():
            await nursery.start(_interrupt_on_signals, interrupt)
        with interrupt.scope():
            if options.embedded:
                config, server = await start_local_agents(nursery, config)
        manager = ConstellationDeviceManager.from_config(config, **overrides)
        if options.shared is not None and not interrupt.requested:
            display = _display(options, len(config.devices), live=False)
            if threading.current_thread() is threading.main_thread():
                # SIGHUP is answered (refused, saying to restart), not the default's death
                # without the clean hand-over of the devices
                await nursery.start(_reload_on_hangup, _reloader(manager, config, options))
            code = await shared_fleet.run_shared(
                config,
                options.shared,
                manager,
                display,
                interrupt,
                partial(_serve_metrics_if_asked, nursery, manager, config, options),
            )
        elif not interrupt.requested:
            async with manager, manager.events() as events, trio.open_nursery() as controls:
                reload = _reloader(manager, config, options)
                if options.metrics_port is not None:
                    await _serve_metrics(nursery, manager, config, options, reload)
                if threading.current_thread() is threading.main_thread():
                    await controls.start(_reload_on_hangup, reload)
                manager.add_config(config)  # after subscribing: no transition goes unseen
                code = await _run_fleet(manager, events, config, expected, options, interrupt)
                controls.cancel_scope.cancel()
            # Leaving the manager's block disconnected every device (close handshake 1000).
        if server is not None:
            await server.shutdown()  # agents are told 1001 and close their side cleanly
        nursery.cancel_scope.cancel()
    if interrupt.requested:
        print("stellate: stopped; every connection closed.", file=sys.stderr)
        return exits.when_stopped(runs_until_stopped=not options.once)
    return code


async def _serve_metrics_if_asked(
    nursery: trio.Nursery,
    manager: ConstellationDeviceManager,
    config: StellateConfig,
    options: _Options,
) -> None:
    if options.metrics_port is not None:
        await _serve_metrics(nursery, manager, config, options, _reloader(manager, config, options))


async def _serve_metrics(
    nursery: trio.Nursery,
    manager: ConstellationDeviceManager,
    config: StellateConfig,
    options: _Options,
    reload: Reload,
) -> None:
    """Start the fleet page, metrics and the control API; say where (stderr: --json keeps
    stdout clean)."""
    assert options.metrics_port is not None
    actions = control_actions(
        manager, key=options.control_key, reload=reload, disabled=CONTROL_DISABLED
    )
    port = await nursery.start(
        partial(
            serve_fleet,
            manager,
            options.metrics_host,
            options.metrics_port,
            api_key=config.manager.api_key,
            actions=actions,
        )
    )
    host = options.metrics_host
    shown = f"[{host}]" if ":" in host else host
    print(
        f"stellate up: fleet page on http://{shown}:{port}/ (metrics: /metrics, JSON: /api/fleet)",
        file=sys.stderr,
        flush=True,
    )


def _reloader(
    manager: ConstellationDeviceManager, config: StellateConfig, options: _Options
) -> Reload:
    """How SIGHUP and ``/api/reload`` re-read the file: loaded again, with the key this run
    took by the key rule (not only the file's), then applied (``manager.reload``).

    Raises (from the returned callable): ``ConfigError`` (the file does not load),
    ``ReloadRefused`` (embedded mode, a shared fleet, or a change only a restart applies)."""

    async def reload() -> ReloadReport:
        if options.embedded:
            raise ReloadRefused(
                "embedded mode starts its local agents once: restart stellate up to change "
                "an embedded fleet; nothing was changed"
            )
        if options.shared is not None or options.config_path is None:
            raise ReloadRefused(
                "a fleet shared through a store is not reloaded: restart each manager with "
                "the new file; nothing was changed"
            )
        fresh = await trio.to_thread.run_sync(load_config, options.config_path)
        keyed = attrs.evolve(fresh.manager, api_key=config.manager.api_key)
        return await manager.reload(attrs.evolve(fresh, manager=keyed))

    return reload


async def _reload_on_hangup(
    reload: Reload, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Each SIGHUP re-reads the file (``reload``); what it changed, or why it changed nothing,
    is said on stderr."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            try:
                report = await reload()
            except ConfigError as exc:
                lines = [
                    f"stellate up: not reloaded ({len(exc.problems)} problem(s) in the "
                    "file; nothing was changed):"
                ]
                lines += [f"  {problem}" for problem in exc.problems]
                print("\n".join(lines), file=sys.stderr, flush=True)
            except ReloadRefused as exc:
                print(f"stellate up: not reloaded: {exc}", file=sys.stderr, flush=True)
            else:
                print(f"stellate up: reloaded: {report.text()}", file=sys.stderr, flush=True)


async def _run_fleet(
    manager: ConstellationDeviceManager,
    events: trio.MemoryReceiveChannel[ManagerEvent],
    config: StellateConfig,
    expected: set[str],
    options: _Options,
    interrupt: _Interrupt,
) -> int:
    """Bring the fleet up, report, and (without --once) keep it; the exit status."""
    out = sys.stderr if options.as_json else sys.stdout
    display = _display(options, len(config.devices))
    settled = timed_out = False
    try:
        with interrupt.scope(), trio.move_on_after(options.timeout or float("inf")) as timer:
            settled = await _watch(manager, events, display, expected, until=_Until.SETTLED)
        timed_out = timer.cancelled_caught
    finally:
        display.close()
    reports = _reports(manager, embedded=options.embedded)
    if not options.as_json:
        unsettled = (
            "interrupted"
            if interrupt.requested
            else f"timed out (--timeout {options.timeout:g} s)"
            if timed_out
            else "not finished"
        )
        print_profiles(reports, out, unsettled=unsettled)
    if timed_out:
        pending = [
            f"{shown(r.profile.device_id)} ({r.profile.status.value}"
            + (f": {shown(r.last_error)}" if r.last_error else "")
            + ")"
            for r in reports
            if r.profile.device_id in expected and r.profile.status not in SETTLED
        ]
        print(
            f"stellate up: --timeout {options.timeout:g} s passed with {len(pending)} "
            f"device(s) still pending: {', '.join(pending)}",
            file=sys.stderr,
            flush=True,
        )
    summary = fleet_summary(reports, expected)
    if options.once or not settled:
        if options.as_json and options.once:
            print(profiles_json(reports), flush=True)
        if settled or timed_out:
            print(f"stellate up: {summary}", file=out, flush=True)
        all_idle = all(
            r.profile.status is DeviceStatus.IDLE
            for r in reports
            if r.profile.device_id in expected
        )
        return 0 if all_idle and not timed_out else 1
    # A failed device comes back by itself after retry_failed_after; only where FAILED is
    # final (null) is a fleet with every device failed over, for a supervisor to restart.
    retry_after = manager.timing.retry_failed_after
    if expected and not any(
        r.profile.status is DeviceStatus.IDLE for r in reports if r.profile.device_id in expected
    ):
        if retry_after is None:
            print(
                f"stellate up: every device failed ({summary}); exiting with status 1",
                file=sys.stderr,
                flush=True,
            )
            return 1
        print(
            f"stellate up: every device failed ({summary}); each starts a fresh run "
            f"{retry_after:g} s after it failed (retry_failed_after); Ctrl-C to disconnect "
            "and exit",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(f"stellate: fleet up: {summary}; Ctrl-C to disconnect and exit", file=out, flush=True)
    keep = _display(options, len(config.devices), live=False)
    all_failed = False
    until = _Until.ALL_FAILED if retry_after is None else _Until.NEVER
    with interrupt.scope():
        all_failed = await _watch(manager, events, keep, expected, until=until)
    if all_failed:
        summary = fleet_summary(_reports(manager, embedded=options.embedded), expected)
        print(
            f"stellate up: every device has failed ({summary}); exiting with status 1",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def _reports(manager: ConstellationDeviceManager, *, embedded: bool) -> list[DeviceReport]:
    registry = manager.device_registry
    return [
        DeviceReport(
            profile,
            manager.failure_reason(device_id),
            registry.lifecycle(device_id).last_error,
            embedded,
        )
        for device_id, profile in manager.get_all_devices().items()
    ]


def _display(options: _Options, device_count: int, *, live: bool = True) -> Display:
    clock = trio.current_time
    if options.as_json:
        progress = PlainDisplay(sys.stderr, device_count, clock)
        if options.once:
            return progress
        return Displays(JsonLinesDisplay(sys.stdout, embedded=options.embedded), progress)
    if live and sys.stdout.isatty():
        return RichDisplay(device_count, clock=clock)
    return PlainDisplay(sys.stdout, device_count, clock)


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


class _Until(enum.Enum):
    """When ``_watch`` returns (besides the event stream ending)."""

    #: every expected device is IDLE or FAILED
    SETTLED = "settled"
    #: every expected device is FAILED (a fleet kept alive has nothing left)
    ALL_FAILED = "all_failed"
    #: only when cancelled
    NEVER = "never"


async def _watch(
    manager: ConstellationDeviceManager,
    events: trio.MemoryReceiveChannel[ManagerEvent],
    display: Display,
    expected: Iterable[str],
    *,
    until: _Until = _Until.NEVER,
) -> bool:
    """Show events until the ``until`` condition holds (True), or the stream ends (False).

    The condition is tracked from the events themselves (a count of expected devices per
    status, updated per event), so the last device to settle ends the wait at once, not at the
    next redraw, and a large fleet costs O(1) per event.
    """
    expected = set(expected)
    status_of = {
        device_id: profile.status
        for device_id, profile in manager.get_all_devices().items()
        if device_id in expected
    }
    counts = StatusCounts(status_of.values())

    def done() -> bool:
        if until is _Until.SETTLED:
            return counts.tagged(Tag.SETTLED) == len(expected)
        if until is _Until.ALL_FAILED:
            return bool(expected) and counts[DeviceStatus.FAILED] == len(expected)
        return False

    def tick() -> None:
        display.tick(manager.get_all_devices(), manager.stats())

    tick()
    next_tick = trio.current_time() + TICK

    def take(event: ManagerEvent) -> None:
        display.event(event)
        # A merged-telemetry event is followed by READY for the same transition: count that
        # one, so it is shown too.
        if event.device_id in expected and event.kind is not EventKind.TELEMETRY_MERGED:
            counts.move(status_of[event.device_id], event.record.dest)
            status_of[event.device_id] = event.record.dest

    while not done():
        with trio.move_on_at(next_tick):
            try:
                take(await events.receive())
                # Then the rest of the burst without waking up again (a bring-up sends about
                # seven events per device), stopping as soon as the condition holds.
                while not done():
                    take(events.receive_nowait())
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                return False
            continue
        tick()
        next_tick = trio.current_time() + TICK
    tick()
    return True
