"""FleetShare: one manager's part of a fleet that several managers share through a fleet store.

Every manager is given the same devices (the same devices.yaml); each runs only the devices of
the units (hash slots) it owns, as the ownership rules decide (``stellate.store.ownership``,
docs/scaling.md). The share runs the ownership loop (``stellate.manager.ownership``) in its own
nursery and does, for its manager, what each change of ownership asks:

* **a unit gained**: read its devices' snapshots (one batched read), and start each device
  where its last owner left it (``ConstellationDeviceManager.resume_device``: the FSM's
  resumption rule, the deadline re-armed from what is left); a device without a snapshot starts
  as configured; one whose snapshot cannot be read is reported (logged, and listed in
  :attr:`FleetShare.unreadable`) and starts fresh;
* **a unit handed over** (the rule gives it to a manager that joined, or this one stops): write
  the last snapshots of its devices under the lease, close their sockets cleanly, and only then
  let the loop release the lease, so the next owner never finds this manager still registered
  for a device at its agent server;
* **a unit lost to time** (self-fencing: the store did not renew the lease in time): close its
  devices' sockets at once, write nothing (this manager is no longer the owner); said in the log
  once when the manager stops acting and once when it acts again, not per unit.

Between changes it writes the snapshots of the devices that changed (a transition since their
last write) every :data:`SNAPSHOT_EVERY` seconds, in batches, each under its unit's lease: the
store refuses a write whose lease is no longer current, so a paused or cut-off manager never
overwrites the next owner's.

The whole fleet's view (every manager, every device, its owner) is read from the store while
someone looks at it (:meth:`FleetShare.report`: at most every :data:`VIEW_EVERY` seconds), so a
manager nobody watches pays nothing for it.

Usage (the ``stellate up --store`` command does this)::

    async with open_redis_store(url) as store:
        manager = ConstellationDeviceManager.from_config(config)
        async with manager, FleetShare.from_config(manager, store, config, manager_id="m1"):
            ...  # the manager runs the devices this manager owns, as ownership moves

Leaving the block normally is a graceful stop (every unit handed over: snapshots written,
sockets closed, leases released, membership left); cancelling it is a crash (the leases run out
and the other managers take over after the lease).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self

import trio

from ..store.keeper import Change, OwnershipKeeper
from ..store.ownership import (
    LeasePolicy,
    RateLimit,
    manager_id_problems,
    owner_of,
    unit_of,
)
from ..store.port import FleetStore, Lease, SnapshotWrite, StoreUnavailable
from ..store.report import FleetReport, fleet_report
from ..store.snapshot import UnreadableSnapshot, decode, encode
from .constellation import ConstellationDeviceManager
from .events import ManagerEvent
from .ownership import join_fleet, keep_ownership, stop_ownership
from .registry import UnknownDevice
from .sharing import ConfiguredDevice

if TYPE_CHECKING:
    from ..config import StellateConfig

__all__ = [
    "SNAPSHOT_EVERY",
    "VIEW_EVERY",
    "ConfiguredDevice",
    "FleetShare",
    "default_manager_id",
]

logger = logging.getLogger(__name__)

#: Seconds between two writes of the snapshots that changed.
SNAPSHOT_EVERY = 1.0
#: Seconds between two reads of the whole fleet's view, while someone looks at it.
VIEW_EVERY = 2.0
#: Seconds between two tries to read a gained unit's snapshots while the store does not answer.
READ_RETRY = 1.0
#: Seconds a hand-off waits for its last snapshots to be written before it closes the devices
#: anyway (a store that hangs must not keep them running: their leases are still counting).
HANDOFF_WRITE_LIMIT = 1.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Wall = Callable[[], datetime]


def default_manager_id() -> str:
    """``HOST-PID``: unique among live managers, new at every start (so a restarted manager
    never waits out its previous run's membership)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class FleetShare:
    """Runs the devices of the units ``manager`` owns in a fleet shared through ``store``.

    Args:
        manager: a running manager, given none of these devices (the share adds and removes
            them as ownership moves).
        store: the fleet store every manager of the fleet uses.
        devices: the whole fleet (every manager is given the same list).
        manager_id: this manager's id among them (default :func:`default_manager_id`).
        policy: the lease arithmetic (``store: lease:``).
        claims, handoffs: the rates at which devices are taken over and handed over
            (default ``ownership.CLAIM_RATE`` and ``ownership.handoff_limit()``).
        clock, sleep: the manager's monotonic clock and a sleep on it (tests drift them).
        wall: wall time, for the snapshots' absolute times.
    """

    def __init__(
        self,
        manager: ConstellationDeviceManager,
        store: FleetStore,
        devices: Iterable[ConfiguredDevice],
        *,
        manager_id: str | None = None,
        policy: LeasePolicy | None = None,
        claims: RateLimit | None = None,
        handoffs: RateLimit | None = None,
        clock: Clock = trio.current_time,
        sleep: Sleep = trio.sleep,
        wall: Wall = _utc_now,
    ) -> None:
        problems = list(manager_id_problems(manager_id)) if manager_id is not None else []
        if problems:
            raise ValueError(f"manager id {manager_id!r}: {problems[0]}")
        self.manager = manager
        self.store = store
        self.devices: Mapping[str, ConfiguredDevice] = {d.profile.device_id: d for d in devices}
        self.manager_id = manager_id if manager_id is not None else default_manager_id()
        self.keeper = OwnershipKeeper(
            self.manager_id, self.devices, policy, claims=claims, handoffs=handoffs
        )
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        #: Device id → why its snapshot could not be read (it started fresh).
        self.unreadable: dict[str, str] = {}
        #: Devices taken over from the store (resumed or started fresh) and handed over.
        self.adopted = 0
        self.released = 0
        # Unit → the devices of it running here; units whose devices are being stopped.
        self._running: dict[str, tuple[str, ...]] = {}
        self._stopping: dict[str, trio.Event] = {}
        # A unit's gains are counted: an adoption started before a loss never adds devices
        # after it, even when the unit is gained again meanwhile.
        self._gains: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._write_lock = trio.Lock()
        self._fenced = False
        self._report: FleetReport | None = None
        self._owners: dict[str, str | None] = {}
        self._report_wanted = trio.Event()
        self._own_scope: trio.CancelScope | None = None
        self._adoptions: trio.Nursery | None = None
        self._context: tuple[AsyncExitStack, trio.CancelScope] | None = None
        manager.add_observer(self._changed)

    @classmethod
    def from_config(
        cls,
        manager: ConstellationDeviceManager,
        store: FleetStore,
        config: StellateConfig,
        **kwargs: object,
    ) -> Self:
        """A share of every device of ``config``, on the lease of its ``store:`` block."""
        devices = [ConfiguredDevice(d.to_profile(), d.auto_connect) for d in config.devices]
        if config.store is not None and "policy" not in kwargs:
            kwargs["policy"] = LeasePolicy(config.store.lease)
        return cls(manager, store, devices, **kwargs)  # type: ignore[arg-type]

    # -- running ------------------------------------------------------------------------------
    @property
    def joined(self) -> bool:
        """True once the store has counted this manager among the fleet's."""
        return bool(self.keeper.members)

    async def join(self) -> None:
        """Join the fleet, retrying (each kind of failure logged once) while the store does
        not answer. ``async with`` joins if this was not called first; calling it alone lets a
        caller cancel the wait (a command interrupted at start-up) without a hand-off.

        Raises:
            ManagerIdInUse: another live manager has this id.
        """
        if not self.joined:
            await join_fleet(self.store, self.keeper, clock=self._clock, sleep=self._sleep)

    async def __aenter__(self) -> Self:
        """Join the fleet (retrying while the store does not answer), then run.

        Raises:
            ManagerIdInUse: another live manager has this id.
        """
        await self.join()
        # As ConstellationDeviceManager.__aenter__: the nursery is exited here if cancelled
        # while starting, and kept open for __aexit__ only once everything started.
        async with AsyncExitStack() as stack:
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._adoptions = await nursery.start(_nursery_task)
            self._own_scope = trio.CancelScope()
            nursery.start_soon(self._own, name="stellate ownership")
            nursery.start_soon(self._write_changes, name="stellate snapshots")
            nursery.start_soon(self._read_views, name="stellate fleet view")
            self._context = (stack.pop_all(), nursery.cancel_scope)
        self.manager.fleet_share = self
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._context is not None
        stack, scope = self._context
        try:
            if exc is None:
                await self._hand_over_all()
            scope.cancel()
            return await stack.__aexit__(exc_type, exc, tb)
        finally:
            self.manager.fleet_share = None

    async def _own(self) -> None:
        assert self._own_scope is not None
        with self._own_scope:
            await keep_ownership(
                self.store, self.keeper, self._on_change, clock=self._clock, sleep=self._sleep
            )

    async def _hand_over_all(self) -> None:
        """The graceful stop: no more rounds nor adoptions, then every unit handed over."""
        assert self._own_scope is not None and self._adoptions is not None
        self._own_scope.cancel()
        self._adoptions.cancel_scope.cancel()
        await stop_ownership(self.store, self.keeper, self._on_change, clock=self._clock)

    # -- who owns what ------------------------------------------------------------------------
    def owned_units(self) -> int:
        """Units (hash slots) this manager acts as the owner of now."""
        return len(self.keeper.acting_units(self._clock()))

    def owns(self, device_id: str) -> bool:
        """True while this manager acts as the owner of ``device_id``."""
        return device_id in self.devices and self.keeper.acting(unit_of(device_id), self._clock())

    def owner_of(self, device_id: str) -> str | None:
        """The manager that owns ``device_id``: this one while it acts as its owner; else the
        holder of its unit in the last fleet view read, if that listed it; else the manager the
        rendezvous rule gives it to by the last member list (it owns it, or soon will). None
        for a device outside the fleet, or while no manager is known."""
        if device_id not in self.devices:
            return None
        if self.owns(device_id):
            return self.manager_id
        owner = self._owners.get(device_id)
        if owner is not None:
            return owner
        return owner_of(unit_of(device_id), self.keeper.members)

    def report(self) -> FleetReport | None:
        """The whole fleet as last read from the store (None until a first read), and ask for a
        fresh read: the view is read while someone asks, at most every ``VIEW_EVERY`` s."""
        self._report_wanted.set()
        return self._report

    # -- changes of ownership -----------------------------------------------------------------
    async def _on_change(self, change: Change) -> None:
        if change.lost:
            handed = {lease.unit: lease for lease in change.handed}
            fenced = change.lost - handed.keys()
            if fenced and not self._fenced:
                logger.warning(
                    "fleet store %s: leases not renewed (it did not answer in time, or no "
                    "longer holds them): no longer acting as owner of %d devices (%d units); "
                    "their connections are closed until it renews or grants them again",
                    self.store.name,
                    sum(len(self.keeper.units.get(unit, ())) for unit in fenced),
                    len(fenced),
                )
                self._fenced = True
            if handed:
                logger.info(
                    "handing over %d devices (%d units)",
                    sum(len(self.keeper.units.get(unit, ())) for unit in handed),
                    len(handed),
                )
                with trio.move_on_after(HANDOFF_WRITE_LIMIT):
                    await self._write(handed)  # the last word, under leases still current
            await self._stop_units(change.lost)
        if change.gained:
            if self._fenced:
                logger.warning(
                    "fleet store %s: acting as owner again (%d units regained)",
                    self.store.name,
                    len(change.gained),
                )
                self._fenced = False
            for unit in change.gained:
                self._gains[unit] = self._gains.get(unit, 0) + 1
            assert self._adoptions is not None
            self._adoptions.start_soon(self._adopt, change.gained)

    async def _stop_units(self, units: Collection[str]) -> None:
        """Close and forget the devices of ``units`` (concurrently), then mark them stopped."""
        events = {unit: self._stopping.setdefault(unit, trio.Event()) for unit in units}
        try:
            async with trio.open_nursery() as nursery:
                for unit in units:
                    for device_id in self._running.pop(unit, ()):
                        nursery.start_soon(self._stop_device, device_id)
        finally:
            for unit, event in events.items():
                if self._stopping.get(unit) is event:
                    del self._stopping[unit]
                event.set()

    async def _stop_device(self, device_id: str) -> None:
        try:
            await self.manager.remove_device(device_id)  # a clean close, bounded
        except UnknownDevice:
            return
        self._dirty.discard(device_id)
        self.released += 1

    async def _adopt(self, units: frozenset[str]) -> None:
        """Start the devices of ``units`` from their snapshots (those still acted on)."""
        gains = {unit: self._gains.get(unit, 0) for unit in units}
        device_ids = [d for unit in sorted(units) for d in self.keeper.units.get(unit, ())]
        logger.debug("taking over %d devices (%d units)", len(device_ids), len(units))
        texts = await self._read(device_ids, units)
        for unit in sorted(units):
            stopping = self._stopping.get(unit)
            if stopping is not None:
                await stopping.wait()  # its devices of a previous ownership are still closing
            if (
                self._gains.get(unit) != gains[unit]
                or unit in self._running
                or not self.keeper.acting(unit, self._clock())
            ):
                continue  # lost meanwhile (or gained again: that adoption starts it)
            started = []
            for device_id in self.keeper.units.get(unit, ()):
                if self._start_device(device_id, texts.get(device_id)):
                    started.append(device_id)
            self._running[unit] = tuple(started)

    async def _read(self, device_ids: list[str], units: Collection[str]) -> Mapping[str, str]:
        """The snapshots of ``device_ids``, retried while the store does not answer and any
        of ``units`` is still acted on (empty once none is)."""
        while True:
            try:
                return await self.store.read_snapshots(device_ids)
            except StoreUnavailable:
                if not any(self.keeper.acting(unit, self._clock()) for unit in units):
                    return {}
                await self._sleep(READ_RETRY)

    def _start_device(self, device_id: str, text: str | None) -> bool:
        configured = self.devices[device_id]
        snapshot = None
        if text is not None:
            try:
                snapshot = decode(text, device_id)
            except UnreadableSnapshot as exc:
                logger.warning("%s; the device starts fresh", exc)
                self.unreadable[device_id] = exc.why
        try:
            if snapshot is None and not configured.auto_connect:
                self.manager.add_device(configured.profile, auto_connect=False)
            else:  # a device without a snapshot connects as one moved here (fsm.resume)
                self.manager.resume_device(configured.profile, snapshot, now=self._wall())
        except (ValueError, RuntimeError) as exc:  # already there, or the manager stopping
            logger.error("device %s: not started here: %s", device_id, exc)
            return False
        self._dirty.add(device_id)  # its snapshot names its owner's latest state
        self.adopted += 1
        return True

    # -- snapshots ----------------------------------------------------------------------------
    def _changed(self, event: ManagerEvent) -> None:
        self._dirty.add(event.device_id)

    async def _write_changes(self) -> None:
        while True:
            await self._sleep(SNAPSHOT_EVERY)
            await self._write(None)

    async def _write(self, leases: Mapping[str, Lease] | None) -> None:
        """Write the snapshots of the devices that changed: those of the units acted on
        (``leases`` None), or those of ``leases``' units (a hand-off's last word)."""
        async with self._write_lock:
            now, wall = self._clock(), self._wall()
            writes: list[SnapshotWrite] = []
            for device_id in list(self._dirty):
                unit = unit_of(device_id)
                if unit in self._stopping:
                    # Being closed because its unit was lost: DISCONNECTED by that close, not
                    # by its owner's will. Written, a unit regained meanwhile (or its next
                    # owner) would resume it DISCONNECTED and never connect it again.
                    continue
                lease = self.keeper.lease(unit, now) if leases is None else leases.get(unit)
                if lease is None:
                    if leases is None:
                        self._dirty.discard(device_id)  # not ours to write any more
                    continue
                try:
                    snapshot = self.manager.device_snapshot(device_id, wall)
                except UnknownDevice:
                    self._dirty.discard(device_id)
                    continue
                writes.append(SnapshotWrite(lease, device_id, encode(snapshot)))
                self._dirty.discard(device_id)
            if not writes:
                return
            try:
                written = await self.store.write_snapshots(writes)
            except StoreUnavailable as exc:
                logger.debug("snapshots not written: %s", exc)
                self._dirty.update(write.device_id for write in writes)
                return
            if written.refused:
                logger.debug(
                    "%d snapshots refused: their leases are no longer current",
                    len(written.refused),
                )

    # -- the fleet's view ---------------------------------------------------------------------
    async def _read_views(self) -> None:
        while True:
            await self._report_wanted.wait()
            self._report_wanted = trio.Event()
            try:
                report = fleet_report(await self.store.view())
            except StoreUnavailable as exc:
                logger.debug("fleet view not read: %s", exc)
            else:
                self._report = report
                self._owners = {device.device_id: device.owner for device in report.devices}
            await self._sleep(VIEW_EVERY)


async def _nursery_task(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
    """A nursery of its own for adoptions, cancelled alone at a graceful stop."""
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()
