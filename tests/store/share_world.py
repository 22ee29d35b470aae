"""Whole managers sharing one fleet: each a ConstellationDeviceManager with a FleetShare, one
in-memory store between them, one fake agent server (``stellate.testing``) serving the devices
on the in-memory transport — everything under trio's MockClock.

Each manager's ownership runs on its own clock (the true clock scaled by a rate within
±``DRIFT_BOUND``); between it and the store sits ``ownership_world.Link``, which can be cut
(a partition) and which reports every lease granted and every snapshot write to the
``Oracle``. :meth:`ShareWorld.sample`, called after every step of a schedule and every 0.1 s of
simulated time, holds the invariants the issue states:

1. never two managers registered for one device at the agent server at once (the fake server
   refuses a second registration as the reference does and lists it in ``duplicates``; its
   live count is asked too), nor two managers running one device;
2. no device FAILED (by a hand-off or anything else: every device's agent is healthy);
3. after the last change, within the stated bound, every device running on exactly one live
   manager, which acts as the owner of its unit;
4. no snapshot write accepted under a stale lease (the ``Oracle``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import attrs
import trio
from ownership_world import Link, Oracle

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.adapters.store_memory import MemoryFleetStore
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import ConstellationDeviceManager
from stellate.manager.fleet_share import FleetShare
from stellate.manager.sharing import ConfiguredDevice
from stellate.store.ownership import LeasePolicy, RateLimit, unit_of
from stellate.testing import FakeAgentServer
from stellate.testing.faults import Fault

#: The wall clock of the world: trio's (mock) time from an arbitrary epoch.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def wall() -> datetime:
    return EPOCH + timedelta(seconds=trio.current_time())


@attrs.define(eq=False)
class SimManager:
    name: str
    rate: float
    link: Link
    t0: float
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stop_requested: trio.Event = attrs.field(factory=trio.Event)
    done: trio.Event = attrs.field(factory=trio.Event)
    alive: bool = True
    manager: ConstellationDeviceManager | None = None
    share: FleetShare | None = None

    def clock(self) -> float:
        return self.t0 + (trio.current_time() - self.t0) * self.rate

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds / self.rate)


class ShareWorld:
    def __init__(
        self,
        nursery: trio.Nursery,
        network: MemoryNetwork,
        device_ids: Sequence[str],
        policy: LeasePolicy,
        rate: float,
        burst: float,
        timing: Timing | None = None,
        schedules: Mapping[str, Sequence[Fault]] | None = None,
    ) -> None:
        self.nursery = nursery
        self.fake = FakeAgentServer(network)
        schedules = schedules or {}
        self.devices = [
            ConfiguredDevice(
                AgentProfile(device_id=d, server_url=self.fake.script(d, schedules.get(d, ())))
            )
            for d in device_ids
        ]
        self.device_ids = tuple(device_ids)
        self.policy = policy
        self.rate = rate
        self.burst = burst
        self.timing = timing or Timing()
        self.store = MemoryFleetStore(clock=trio.current_time, name="memory://sim")
        self.oracle = Oracle()
        self.managers: list[SimManager] = []
        self.samples = 0
        self.violations: list[str] = []

    def live(self) -> list[SimManager]:
        return [m for m in self.managers if m.alive]

    def join(self, drift: float, link: Link | None = None) -> SimManager:
        """A new manager whose clock runs at ``1 + drift`` (``link``: its way to the store)."""
        sim = SimManager(
            f"m{len(self.managers)}",
            1 + drift,
            link or Link(self.store, self.oracle),  # type: ignore[arg-type]
            trio.current_time(),
        )
        self.managers.append(sim)
        self.nursery.start_soon(self._run, sim, len(self.managers))
        return sim

    async def _run(self, sim: SimManager, seed: int) -> None:
        with sim.scope:
            manager = ConstellationDeviceManager(
                "sim",
                timing=self.timing,
                connector=self.fake.connector,
                rng=random.Random(seed),
                strict=True,
            )
            sim.manager = manager
            async with manager:
                share = FleetShare(
                    manager,
                    sim.link,  # type: ignore[arg-type]
                    self.devices,
                    manager_id=sim.name,
                    policy=self.policy,
                    claims=RateLimit(self.rate, self.burst),
                    handoffs=RateLimit(self.rate, self.burst),
                    clock=sim.clock,
                    sleep=sim.sleep,
                    wall=wall,
                )
                sim.share = share
                async with share:
                    await sim.stop_requested.wait()
        sim.done.set()

    def crash(self, sim: SimManager) -> None:
        """A kill -9: nothing is handed over; the store's leases run out."""
        sim.alive = False
        sim.scope.cancel()

    async def stop(self, sim: SimManager) -> None:
        """A SIGTERM: every device handed over (snapshots, clean closes, releases)."""
        sim.alive = False
        sim.stop_requested.set()
        await sim.done.wait()

    async def partition(self, sim: SimManager, seconds: float) -> None:
        """``sim`` cut off from the store for ``seconds``."""
        sim.link.cut = True
        await trio.sleep(seconds)
        sim.link.cut = False

    def running(self, device_id: str) -> list[SimManager]:
        return [
            m
            for m in self.live()
            if m.manager is not None and device_id in m.manager.device_registry
        ]

    def sample(self, *, all_owned: bool) -> None:
        """The invariants now (the third one only with ``all_owned``)."""
        self.samples += 1
        now = trio.current_time()
        for device_id in self.device_ids:
            if self.fake.registrations(device_id) > 1:
                self.violations.append(f"t={now:.2f}: {device_id} registered twice")
            runners = self.running(device_id)
            if len(runners) > 1:
                self.violations.append(
                    f"t={now:.2f}: {device_id} running on {[m.name for m in runners]}"
                )
            for sim in runners:
                assert sim.manager is not None
                if sim.manager.device_registry.lifecycle(device_id).state is DeviceStatus.FAILED:
                    reason = sim.manager.failure_reason(device_id)
                    self.violations.append(
                        f"t={now:.2f}: {device_id} FAILED on {sim.name}: {reason}"
                    )
            if all_owned:
                owners = [
                    m
                    for m in runners
                    if m.share is not None and m.share.keeper.acting(unit_of(device_id), m.clock())
                ]
                if len(owners) != 1:
                    self.violations.append(
                        f"t={now:.2f}: {device_id} owned by {[m.name for m in owners]} "
                        f"(running on {[m.name for m in runners]})"
                    )
        self.violations += [v for v in self.fake.duplicates if v not in self.violations]

    def idle_everywhere(self) -> list[str]:
        """Devices not IDLE on exactly one live manager (empty: the fleet is back)."""
        out = []
        for device_id in self.device_ids:
            runners = self.running(device_id)
            states = [
                m.manager.device_registry.lifecycle(device_id).state
                for m in runners
                if m.manager is not None
            ]
            if states != [DeviceStatus.IDLE]:
                out.append(f"{device_id}: {[s.value for s in states]}")
        return out
