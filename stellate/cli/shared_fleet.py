"""``stellate up --store``: this manager's part of a fleet several managers share (docs/scaling.md).

Every manager is started with the same devices.yaml and the same store (its ``store:`` block,
or ``--store URL``); each runs only the devices it owns, and ownership moves as managers join,
stop and die. Here: the flags, their checks (a bad one exits 2 naming it), and the run — join
(retrying while the store does not answer: no device runs unowned meanwhile), show the events of
the devices this manager runs, and on Ctrl-C/SIGTERM hand every device over (snapshots written,
sockets closed cleanly, leases released) before exiting 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ..config import StellateConfig
from ..config.model import StoreSettings
from ..manager import ConstellationDeviceManager, EventKind, ManagerEvent
from ..manager.fleet_share import FleetShare, default_manager_id
from ..store.ownership import manager_id_problems
from ..store.port import ManagerIdInUse
from ..text.redact import add_log_secret
from ..text.urls import parse_store_url, redact_url, store_url_problems
from . import exits
from .display import TICK

if TYPE_CHECKING:
    from .display import Display

__all__ = ["SharedOptions", "add_arguments", "run_shared", "shared_options"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="share the fleet with other managers through this store "
        "(redis://[:PASSWORD@]HOST[:PORT]/DB; overrides the store: block's url): this "
        "manager runs only the devices it owns (docs/scaling.md)",
    )
    p.add_argument(
        "--manager-id",
        default=None,
        metavar="ID",
        help="this manager's id in the store (default: HOST-PID)",
    )


@attrs.frozen
class SharedOptions:
    """A checked store block and manager id, the password read."""

    settings: StoreSettings
    manager_id: str
    password: str | None = attrs.field(default=None, repr=False)


def shared_options(
    args: argparse.Namespace, config: StellateConfig, *, embedded: bool, once: bool
) -> SharedOptions | str | None:
    """The store this run shares its fleet through (None: none, the manager runs alone), or
    what is wrong with the flags (the command exits 2 with it)."""
    if args.store is None and args.manager_id is None and config.store is None:
        return None
    if args.manager_id is not None:
        problems = list(manager_id_problems(args.manager_id))
        if problems:
            return f"--manager-id: {problems[0]}"
    if args.store is not None:
        problems = store_url_problems(args.store)
        if problems:
            return f"--store: {problems[0]}"
    if config.store is None and args.store is None:
        return "--manager-id names this manager in a fleet store: give --store URL too"
    if embedded:
        return (
            "a fleet store shares the devices with other managers, and embedded mode starts "
            "a private agent server for them: give a CONFIG whose devices name their servers, "
            "without --embedded"
        )
    if once:
        return (
            "--once stops this manager once its devices settle; a fleet shared through a "
            "store runs until stopped (`stellate status --store URL` shows it settled)"
        )
    if config.store is None:
        settings = StoreSettings(url=args.store)
    elif args.store is not None:
        settings = attrs.evolve(config.store, url=args.store)
        if settings.password_file and parse_store_url(args.store).password:
            return "--store carries a password and the store: block a password_file: keep one"
    else:
        settings = config.store
    try:
        password = settings.password(os.environ)
    except OSError as exc:
        return f"store.password_file {settings.password_file}: {exc.strerror or exc}"
    if settings.cafile is not None and not os.path.isfile(settings.cafile):
        return f"store.cafile {settings.cafile}: no such file"
    return SharedOptions(settings, args.manager_id or default_manager_id(), password)


async def run_shared(
    config: StellateConfig,
    shared: SharedOptions,
    manager: ConstellationDeviceManager,
    display: Display,
    interrupt: Any,
    serve_metrics: Any,
) -> int:
    """Join, run this manager's part until interrupted, then hand every device over."""
    from ..adapters.store_redis import open_redis_store

    settings = shared.settings
    add_log_secret(shared.password)
    add_log_secret(parse_store_url(settings.url).password)
    name = redact_url(settings.url)
    async with (
        open_redis_store(
            settings.url, password=shared.password, cafile=settings.cafile, check=False
        ) as store,
        manager,
        manager.events() as events,
    ):
        await serve_metrics()
        share = FleetShare.from_config(manager, store, config, manager_id=shared.manager_id)
        _say(
            f"manager {shared.manager_id!r} joining the fleet of {len(config.devices)} "
            f"devices in store {name} (lease {share.keeper.policy.lease:g} s)"
        )
        with interrupt.scope():
            await _join(share)
        if not share.joined:
            return 0
        async with share:
            _say(
                f"joined: {len(share.keeper.members)} manager(s) live; running the devices "
                "this manager owns; Ctrl-C to hand them over and exit"
            )
            try:
                with interrupt.scope():
                    await _show(manager, events, display)
            finally:
                display.close()
            _say(f"handing over the {len(manager.device_registry)} devices run here ...")
            # Leaving the share handed every unit over: its devices' snapshots written, their
            # sockets closed cleanly, the leases released, the membership left.
    _say("stopped; every device handed over.")
    return exits.OK


async def _join(share: FleetShare) -> None:
    """Join; a live manager with this id (a previous run's lease) is waited out, said once."""
    while True:
        try:
            await share.join()
            return
        except ManagerIdInUse as exc:
            _say(f"{exc}; waiting {exc.expires_in:.1f} s")
            await trio.sleep(exc.expires_in + 0.5)


async def _show(
    manager: ConstellationDeviceManager,
    events: trio.MemoryReceiveChannel[ManagerEvent],
    display: Display,
) -> None:
    """Show the events of the devices this manager runs until cancelled; say once when some
    device of its part is IDLE."""
    up = False
    while True:
        with trio.move_on_after(TICK):
            async for event in events:
                display.event(event)
                if not up and event.kind is EventKind.READY:
                    up = True
                    _say("fleet up: a device this manager runs is IDLE")
            return  # the event stream ended: the manager stopped
        display.tick(manager.get_all_devices(), manager.stats())


def _say(message: str) -> None:
    print(f"stellate up: {message}", file=sys.stderr, flush=True)
