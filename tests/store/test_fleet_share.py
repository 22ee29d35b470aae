"""FleetShare (stellate/manager/fleet_share.py): what one manager does as ownership moves.

Whole managers on the in-memory store and the fake agent server, under a MockClock
(share_world.py). Each test looks at one promise of the share: a failover resumes devices from
their snapshots (a FAILED one stays FAILED with its reason), a hand-off closes a device before
its lease is released, a graceful stop leaves snapshots a restart resumes from, an unreadable
snapshot starts its device fresh and says so, a lost store closes every device and says so once
each way, and the views (who owns a device, the fleet page's JSON, the metrics) show the whole
fleet.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from ownership_world import Link
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from share_world import ShareWorld, SimManager

from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import DeviceStatus
from stellate.manager.fleet_share import VIEW_EVERY
from stellate.manager.metrics import ManagerCollector, fleet_json
from stellate.store.ownership import CLAIM_RETRY, LeasePolicy, unit_of
from stellate.store.port import Lease, SnapshotWrite, Unavailability
from stellate.testing.faults import Reject

DEVICES = [f"device-{i}" for i in range(12)]
POLICY = LeasePolicy(15.0)
#: Long enough for any change to settle: the lease, a renewal, the claims, a registration.
SETTLE = 2 * POLICY.lease + 10


@asynccontextmanager
async def world(**kwargs: object) -> AsyncIterator[ShareWorld]:
    async with MemoryNetwork() as network, trio.open_nursery() as nursery:
        yield ShareWorld(nursery, network, DEVICES, POLICY, 100.0, 100.0, **kwargs)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()


def runs(sim: SimManager) -> set[str]:
    assert sim.manager is not None
    return set(sim.manager.device_registry.get_all_devices())


def status(sim: SimManager, device_id: str) -> DeviceStatus:
    assert sim.manager is not None
    return sim.manager.device_registry.lifecycle(device_id).state


async def test_a_failed_device_stays_failed_with_its_reason_on_its_next_owner(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refused = Reject("device not allowed here")
    async with world(schedules={"device-3": [refused]}) as w:
        first = w.join(0.0)
        await trio.sleep(SETTLE)
        assert status(first, "device-3") is DeviceStatus.FAILED
        assert first.manager is not None
        reason = first.manager.failure_reason("device-3")
        assert reason is not None and "device not allowed here" in reason
        second = w.join(0.0)
        w.crash(first)  # kill -9: nothing handed over, the snapshots are what is left
        await trio.sleep(SETTLE)
        assert runs(second) == set(DEVICES)
        assert status(second, "device-3") is DeviceStatus.FAILED
        assert second.manager is not None
        assert second.manager.failure_reason("device-3") == reason
        assert len(w.fake.applied("device-3")) == 1  # never retried by the new owner
        assert all(status(second, d) is DeviceStatus.IDLE for d in DEVICES if d != "device-3")
        assert w.fake.duplicates == []


class ReleaseWatch(Link):
    """A link that notes, at every release, how many live registrations each released
    unit's devices still have at the agent server."""

    def __init__(self, w: ShareWorld) -> None:
        super().__init__(w.store, w.oracle)
        self.world = w
        self.seen: list[int] = []

    async def release(self, leases: Collection[Lease]) -> None:
        units = {lease.unit for lease in leases}
        for device_id in self.world.device_ids:
            if unit_of(device_id) in units:
                self.seen.append(self.world.fake.registrations(device_id))
        await super().release(leases)


async def test_a_hand_off_closes_each_device_before_its_lease_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with world() as w:
        watch = ReleaseWatch(w)
        first = w.join(0.0, watch)
        await trio.sleep(SETTLE)
        second = w.join(0.0)
        await trio.sleep(SETTLE)
        assert runs(first) and runs(second) and runs(first).isdisjoint(runs(second))
        assert runs(first) | runs(second) == set(DEVICES)
        assert watch.seen and set(watch.seen) == {0}  # released only once closed
        assert first.share is not None and first.share.released == len(runs(second))
        assert all(status(second, d) is DeviceStatus.IDLE for d in runs(second))
        assert w.fake.duplicates == []


async def test_a_graceful_stop_leaves_snapshots_that_a_restart_resumes_from(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with world() as w:
        first = w.join(0.0)
        await trio.sleep(SETTLE)
        await w.stop(first)  # SIGTERM
        view = await w.store.view()
        assert view.members == () and view.holders == {}  # released and left: no lease to wait
        assert {'"status":"idle"' in text for text in view.snapshots.values()} == {True}
        restarted = w.join(0.0)
        await trio.sleep(CLAIM_RETRY)
        assert runs(restarted) == set(DEVICES)  # at once: nothing to wait out
        assert restarted.manager is not None
        for device_id in DEVICES:  # resumed as after a loss: a recovery, not a fresh run
            lifecycle = restarted.manager.device_registry.lifecycle(device_id)
            assert lifecycle.recovering_since is not None or lifecycle.state is DeviceStatus.IDLE
        await trio.sleep(SETTLE)
        assert all(status(restarted, d) is DeviceStatus.IDLE for d in DEVICES)


async def test_an_unreadable_snapshot_is_reported_and_its_device_starts_fresh(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "stellate.manager.fleet_share")
    async with world() as w:
        unit = unit_of("device-2")
        claimed = await w.store.claim("old", [unit], POLICY.lease)
        (lease,) = claimed.granted
        await w.store.write_snapshots([SnapshotWrite(lease, "device-2", '{"v": 99}')])
        await w.store.release([lease])
        sim = w.join(0.0)
        await trio.sleep(SETTLE)
        assert sim.share is not None
        assert "unknown format version 99" in sim.share.unreadable["device-2"]
        assert status(sim, "device-2") is DeviceStatus.IDLE  # fresh, and registered
        assert any(
            "device-2" in r.getMessage() and "starts fresh" in r.getMessage()
            for r in caplog.records
        )
        view = await w.store.view()
        assert '"v":1' in view.snapshots["device-2"]  # overwritten by its new owner


async def test_a_lost_store_closes_every_device_and_is_said_once_each_way(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "stellate")
    async with world() as w:
        sim = w.join(0.0)
        await trio.sleep(SETTLE)
        w.store.unavailable = Unavailability.UNREACHABLE
        await trio.sleep(POLICY.lease)  # past every lease's self-fencing instant
        assert runs(sim) == set()
        assert all(w.fake.registrations(d) == 0 for d in DEVICES)
        await trio.sleep(60)  # a minute of failing rounds
        w.store.unavailable = None
        await trio.sleep(SETTLE)
        assert all(status(sim, d) is DeviceStatus.IDLE for d in DEVICES)
    # Four changes of state, each said once: the store went (still acting), the leases ran
    # out (acting no more), the store came back, acting again.
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 4, messages
    assert "unreachable" in messages[0] and "until their leases run out" in messages[0]
    assert "no longer acting as owner of 12 devices" in messages[1]
    assert "is back" in messages[2]
    assert "acting as owner again" in messages[3]


async def test_who_owns_a_device_is_known_to_every_manager(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with world() as w:
        first = w.join(0.0)
        w.join(0.0)
        await trio.sleep(SETTLE)
        assert first.manager is not None and first.share is not None
        for device_id in DEVICES:
            mine = device_id in runs(first)
            assert first.share.owns(device_id) is mine
            assert first.share.owner_of(device_id) == ("m0" if mine else "m1")
            assert first.manager.owner_elsewhere(device_id) == (None if mine else "m1")
        assert first.share.owner_of("not-in-the-fleet") is None


async def test_the_fleet_page_and_the_metrics_show_the_whole_fleet(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with world() as w:
        first, second = w.join(0.0), w.join(0.0)
        await trio.sleep(SETTLE)
        assert first.manager is not None and first.share is not None
        first.share.report()  # someone looks: the view is read
        await trio.sleep(VIEW_EVERY)
        page = fleet_json(first.manager)
        assert page["store"]["manager_id"] == "m0"
        assert [m["id"] for m in page["store"]["managers"]] == ["m0", "m1"]
        owners = {d["device_id"]: d["owner"] for d in page["devices"]}
        assert set(owners) == set(DEVICES)
        assert {d for d, owner in owners.items() if owner == "m0"} == runs(first)
        assert {d for d, owner in owners.items() if owner == "m1"} == runs(second)
        assert {d["status"] for d in page["devices"]} == {"idle"}
        assert page["stats"]["devices"] == len(runs(first))  # the counts stay this manager's

        registry = CollectorRegistry()
        registry.register(ManagerCollector(first.manager))
        text = generate_latest(registry).decode()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        fleet = "stellate_manager_fleet_devices"
        for sim in (first, second):
            key = (fleet, (("owner", sim.name), ("status", "idle")))
            assert samples[key] == len(runs(sim))
        assert samples[("stellate_manager_fleet_managers", ())] == 2
        assert samples[("stellate_manager_owned_units", ())] == len(
            {unit_of(d) for d in runs(first)}
        )


async def test_a_store_that_loses_its_data_is_survived_behind_the_agent_server_s_fence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A store restarted without persistence forgets every lease: for a moment two managers may
    # both believe they own a unit. The agent server refuses the second registration of a
    # device (its duplicate-id rule), the device backs off (a device taken over is in flux),
    # the managers converge: never two registrations, never a device FAILED.
    async with world() as w:
        first, second = w.join(0.0), w.join(0.05)
        await trio.sleep(SETTLE)
        most = 0
        failed: set[str] = set()

        async def watch() -> None:
            nonlocal most
            while True:
                most = max([most, *(w.fake.registrations(d) for d in DEVICES)])
                for sim in (first, second):
                    failed.update(d for d in runs(sim) if status(sim, d) is DeviceStatus.FAILED)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            w.store.lose_data()
            await trio.sleep(2 * SETTLE)
            nursery.cancel_scope.cancel()
        assert w.fake.duplicates  # the fence was needed: second registrations were refused
        assert most == 1 and failed == set()
        assert runs(first).isdisjoint(runs(second))
        assert runs(first) | runs(second) == set(DEVICES)
        assert all(
            status(sim, d) is DeviceStatus.IDLE for sim in (first, second) for d in runs(sim)
        )
