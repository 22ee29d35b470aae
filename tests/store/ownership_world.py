"""A simulated fleet of managers sharing one in-memory store, and the oracle that judges it.

Each manager runs the real ownership loop (``stellate.manager.ownership.keep_ownership``) with
its own keeper, on its own clock: the true clock (trio's, a ``MockClock``) scaled by a rate
within ±``DRIFT_BOUND``. Between a manager and the store sits :class:`Link`, which can be cut
(a partition) and which reports to the :class:`Oracle` every lease granted and every snapshot
write accepted. The oracle records, in true time, when each manager started and stopped acting
as each unit's owner, and holds the three invariants:

1. never two managers acting as owner of one unit at the same moment (intervals checked
   exactly, and every manager's keeper asked at every sample);
2. no snapshot write accepted under a lease that is not its unit's latest grant;
3. after the last change, every unit acted on by a live manager within the stated bound.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

import attrs
import trio

from stellate.adapters.store_memory import MemoryFleetStore
from stellate.manager.ownership import keep_ownership, stop_ownership
from stellate.store.keeper import Change, OwnershipKeeper
from stellate.store.ownership import LeasePolicy, RateLimit
from stellate.store.port import (
    Claimed,
    FleetView,
    Lease,
    Renewal,
    SnapshotWrite,
    StoreUnavailable,
    Unavailability,
    Written,
)


@attrs.define
class Oracle:
    #: unit → every lease granted, in order.
    grants: dict[str, list[Lease]] = attrs.field(factory=dict)
    #: unit → [manager, started, ended or None] in true time.
    acting: dict[str, list[list[object]]] = attrs.field(factory=dict)
    violations: list[str] = attrs.field(factory=list)
    writes_accepted: int = 0
    writes_refused: int = 0

    def granted(self, lease: Lease) -> None:
        self.grants.setdefault(lease.unit, []).append(lease)

    def written(self, writes: Sequence[SnapshotWrite], result: Written) -> None:
        accepted = set(result.accepted)
        for write in writes:
            if write.device_id not in accepted:
                self.writes_refused += 1
                continue
            self.writes_accepted += 1
            latest = self.grants.get(write.lease.unit, [None])[-1]
            if write.lease != latest:
                self.violations.append(
                    f"t={trio.current_time():.2f}: write under {write.lease} accepted, "
                    f"latest grant {latest}"
                )

    def changed(self, manager: str, change: Change) -> None:
        now = trio.current_time()
        for unit in change.gained:
            self.acting.setdefault(unit, []).append([manager, now, None])
        for unit in change.lost:
            for interval in self.acting.get(unit, []):
                if interval[0] == manager and interval[2] is None:
                    interval[2] = now

    def ended(self, manager: str) -> None:
        """A crashed manager acts on nothing from now on."""
        now = trio.current_time()
        for intervals in self.acting.values():
            for interval in intervals:
                if interval[0] == manager and interval[2] is None:
                    interval[2] = now

    def check_intervals(self) -> None:
        end = trio.current_time()
        for unit, intervals in self.acting.items():
            spans = sorted(
                (float(s), float(e) if e is not None else end, m)  # type: ignore[arg-type]
                for m, s, e in intervals
            )
            for (s1, e1, m1), (s2, e2, m2) in itertools.pairwise(spans):
                if s2 < e1 and m1 != m2:
                    self.violations.append(
                        f"{unit}: {m1} acted [{s1:.2f}, {e1:.2f}) and {m2} [{s2:.2f}, {e2:.2f})"
                    )


class Link:
    """One manager's connection to the shared store: can be cut; reports to the oracle."""

    def __init__(self, store: MemoryFleetStore, oracle: Oracle) -> None:
        self._store = store
        self._oracle = oracle
        self.cut = False

    @property
    def name(self) -> str:
        return self._store.name

    def _check(self) -> None:
        if self.cut:
            raise StoreUnavailable(self.name, Unavailability.UNREACHABLE, "partitioned")

    async def join(self, manager: str, ttl: float) -> Renewal:
        self._check()
        return await self._store.join(manager, ttl)

    async def renew(self, manager: str, leases: Collection[Lease], ttl: float) -> Renewal:
        self._check()
        return await self._store.renew(manager, leases, ttl)

    async def leave(self, manager: str) -> None:
        self._check()
        await self._store.leave(manager)

    async def claim(self, manager: str, units: Collection[str], ttl: float) -> Claimed:
        self._check()
        claimed = await self._store.claim(manager, units, ttl)
        for lease in claimed.granted:
            self._oracle.granted(lease)
        return claimed

    async def release(self, leases: Collection[Lease]) -> None:
        self._check()
        await self._store.release(leases)

    async def write_snapshots(self, writes: Sequence[SnapshotWrite]) -> Written:
        self._check()
        result = await self._store.write_snapshots(writes)
        self._oracle.written(writes, result)
        return result

    async def read_snapshots(self, device_ids: Collection[str]) -> Mapping[str, str]:
        self._check()
        return await self._store.read_snapshots(device_ids)

    async def view(self) -> FleetView:
        self._check()
        return await self._store.view()


@attrs.define(eq=False)
class SimManager:
    name: str
    rate: float
    keeper: OwnershipKeeper
    link: Link
    t0: float
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    alive: bool = True

    def clock(self) -> float:
        return self.t0 + (trio.current_time() - self.t0) * self.rate

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds / self.rate)


class World:
    """Managers, one store, one oracle, under the true clock of trio (a MockClock)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        devices: Sequence[str],
        policy: LeasePolicy,
        rate: float,
        burst: float,
    ) -> None:
        self.nursery = nursery
        self.devices = tuple(devices)
        self.policy = policy
        self.rate = rate
        self.burst = burst
        self.store = MemoryFleetStore(clock=trio.current_time, name="memory://sim")
        self.oracle = Oracle()
        self.managers: list[SimManager] = []
        self.samples = 0
        #: Manager → the units it acted on when the run ended.
        self.final: dict[str, frozenset[str]] = {}

    def live(self) -> list[SimManager]:
        return [m for m in self.managers if m.alive]

    def join(self, drift: float) -> SimManager:
        name = f"m{len(self.managers)}"
        keeper = OwnershipKeeper(
            name,
            self.devices,
            self.policy,
            claims=RateLimit(self.rate, self.burst),
            handoffs=RateLimit(self.rate, self.burst),
        )
        manager = SimManager(
            name, 1 + drift, keeper, Link(self.store, self.oracle), trio.current_time()
        )
        self.managers.append(manager)
        self.nursery.start_soon(self._run, manager)
        return manager

    async def _run(self, manager: SimManager) -> None:
        with manager.scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(self._write_snapshots, manager)
                await keep_ownership(
                    manager.link,
                    manager.keeper,
                    self._reporter(manager),
                    clock=manager.clock,
                    sleep=manager.sleep,
                )

    def _reporter(self, manager: SimManager) -> Callable[[Change], Awaitable[None]]:
        async def report(change: Change) -> None:
            self.oracle.changed(manager.name, change)

        return report

    async def _write_snapshots(self, manager: SimManager) -> None:
        """What a manager does as owner: write its devices' snapshots, under its leases."""
        while True:
            await manager.sleep(1.0)
            now = manager.clock()
            writes = [
                SnapshotWrite(lease, device, f"{manager.name}@{now:.2f}")
                for unit, devices in manager.keeper.units.items()
                if (lease := manager.keeper.lease(unit, now)) is not None
                for device in devices
            ]
            if writes:
                with contextlib.suppress(StoreUnavailable):
                    await manager.link.write_snapshots(writes)

    def crash(self, manager: SimManager) -> None:
        manager.alive = False
        manager.scope.cancel()
        self.oracle.ended(manager.name)

    async def stop(self, manager: SimManager) -> None:
        manager.alive = False
        manager.scope.cancel()
        await stop_ownership(
            manager.link,
            manager.keeper,
            self._reporter(manager),
            clock=manager.clock,
        )
        self.oracle.ended(manager.name)

    async def partition(self, manager: SimManager, seconds: float) -> None:
        """``manager`` cut off from the store for ``seconds``, writing late half-way through."""
        manager.link.cut = True
        await trio.sleep(seconds / 2)
        await self.zombie_write(manager)
        await trio.sleep(seconds / 2)
        manager.link.cut = False

    async def zombie_write(self, manager: SimManager) -> None:
        """A manager that is gone (or cut off) writes late under its last leases, as a paused
        process whose packets arrive after a long pause would."""
        leases = manager.keeper.leases() or tuple(
            grants[-1] for grants in self.oracle.grants.values() if grants[-1].owner == manager.name
        )
        writes = [SnapshotWrite(lease, f"zombie-{lease.unit}", "late") for lease in leases]
        if writes and self.store.unavailable is None:
            result = await self.store.write_snapshots(writes)
            self.oracle.written(writes, result)

    def finish(self) -> None:
        self.final = {m.name: m.keeper.acting_units(m.clock()) for m in self.live()}
        self.oracle.check_intervals()

    def sample(self, *, all_owned: bool) -> None:
        """Invariant 1 as every keeper sees it now; with ``all_owned``, invariant 3 too."""
        self.samples += 1
        now = trio.current_time()
        for unit in {u for m in self.managers for u in m.keeper.units}:
            owners = [m.name for m in self.live() if m.keeper.acting(unit, m.clock())]
            if len(owners) > 1:
                self.oracle.violations.append(f"t={now:.2f}: {unit} acted on by {owners}")
            if all_owned and not owners:
                self.oracle.violations.append(f"t={now:.2f}: {unit} has no acting owner")
