"""The fleet store in one process's memory: the default, and the reference the Redis one matches.

Deterministic: time is read from an injected clock (``trio.current_time`` by default, so tests
run it under ``trio.testing.MockClock``), and every method checkpoints once, as a store that
answers over a socket would. Leases end when the clock passes them, as Redis's ``PX`` does.

``unavailable`` makes every call fail with :class:`StoreUnavailable` (a test's store outage),
until it is set back to None: time goes on meanwhile, and leases run out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import attrs
import trio

from ..store.port import (
    Claimed,
    FleetView,
    Holder,
    Lease,
    ManagerIdInUse,
    Member,
    Renewal,
    SnapshotWrite,
    StoreUnavailable,
    Unavailability,
    Written,
)

__all__ = ["MemoryFleetStore"]


@attrs.define
class _Membership:
    renewed: float
    expires: float


@attrs.define
class _Held:
    lease: Lease
    expires: float


class MemoryFleetStore:
    """A :class:`~stellate.store.port.FleetStore` in memory.

    Args:
        clock: seconds, monotonic (default ``trio.current_time``).
        name: how messages name this store.
    """

    def __init__(
        self, clock: Callable[[], float] = trio.current_time, name: str = "memory"
    ) -> None:
        self._clock = clock
        self._name = name
        self._members: dict[str, _Membership] = {}
        self._holders: dict[str, _Held] = {}
        self._snapshots: dict[str, str] = {}
        self._fence = 0
        #: While set, every call fails with this kind of unavailability.
        self.unavailable: Unavailability | None = None

    @property
    def name(self) -> str:
        return self._name

    def lose_data(self) -> None:
        """Forget every membership, lease and snapshot, as a store restarted without
        persistence would (a test's bad day). The fencing counter keeps growing, as the Redis
        adapter's does (seeded from the server's clock when it is missing)."""
        self._members.clear()
        self._holders.clear()
        self._snapshots.clear()

    async def _enter(self) -> float:
        await trio.lowlevel.checkpoint()
        if self.unavailable is not None:
            raise StoreUnavailable(self._name, self.unavailable, "simulated outage")
        now = self._clock()
        for manager in [m for m, entry in self._members.items() if entry.expires <= now]:
            del self._members[manager]
        for unit in [u for u, held in self._holders.items() if held.expires <= now]:
            del self._holders[unit]
        return now

    def _live(self, now: float) -> tuple[Member, ...]:
        return tuple(
            Member(manager, now - entry.renewed, entry.expires - now)
            for manager, entry in sorted(self._members.items())
        )

    def _current(self, lease: Lease) -> bool:
        held = self._holders.get(lease.unit)
        return held is not None and held.lease == lease

    async def join(self, manager: str, ttl: float) -> Renewal:
        now = await self._enter()
        entry = self._members.get(manager)
        if entry is not None:
            raise ManagerIdInUse(self._name, manager, entry.expires - now)
        self._members[manager] = _Membership(now, now + ttl)
        return Renewal(frozenset(), self._live(now))

    async def renew(self, manager: str, leases: Collection[Lease], ttl: float) -> Renewal:
        now = await self._enter()
        renewed = set()
        for lease in leases:
            if self._current(lease):
                self._holders[lease.unit].expires = now + ttl
                renewed.add(lease.unit)
        self._members[manager] = _Membership(now, now + ttl)
        return Renewal(frozenset(renewed), self._live(now))

    async def leave(self, manager: str) -> None:
        await self._enter()
        self._members.pop(manager, None)

    async def claim(self, manager: str, units: Collection[str], ttl: float) -> Claimed:
        now = await self._enter()
        granted: list[Lease] = []
        taken: dict[str, Holder] = {}
        for unit in units:
            held = self._holders.get(unit)
            if held is not None:
                taken[unit] = Holder(held.lease, held.expires - now)
                continue
            self._fence += 1
            lease = Lease(unit, manager, self._fence)
            self._holders[unit] = _Held(lease, now + ttl)
            granted.append(lease)
        return Claimed(tuple(granted), taken)

    async def release(self, leases: Collection[Lease]) -> None:
        await self._enter()
        for lease in leases:
            if self._current(lease):
                del self._holders[lease.unit]

    async def write_snapshots(self, writes: Sequence[SnapshotWrite]) -> Written:
        await self._enter()
        accepted: list[str] = []
        refused: list[str] = []
        for write in writes:
            if not self._current(write.lease):
                refused.append(write.device_id)
                continue
            if write.data is None:
                self._snapshots.pop(write.device_id, None)
            else:
                self._snapshots[write.device_id] = write.data
            accepted.append(write.device_id)
        return Written(tuple(accepted), tuple(refused))

    async def read_snapshots(self, device_ids: Collection[str]) -> Mapping[str, str]:
        await self._enter()
        return {d: self._snapshots[d] for d in device_ids if d in self._snapshots}

    async def view(self) -> FleetView:
        now = await self._enter()
        holders = {
            unit: Holder(held.lease, held.expires - now)
            for unit, held in sorted(self._holders.items())
        }
        return FleetView(self._live(now), holders, dict(sorted(self._snapshots.items())))
