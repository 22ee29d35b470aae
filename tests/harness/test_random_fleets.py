"""Random fleets under MockClock: global invariants over whatever hypothesis draws.

Each example is a fleet of 1–50 devices with their own configs and fault schedules (outages
included), run against the fake agent server until every device settles. ``FleetResult.problems``
then checks: each device took exactly the path its schedule dictates and ended IDLE or FAILED
with the right profile; no device exceeded max_retries; every backoff was drawn within its
bounds and waited out exactly, and devices failing together did not retry together; the event
stream agrees with the registry; the manager spoke correct AIP; and cancelling the manager left
no task, socket or server handler behind.
"""

from __future__ import annotations

import time

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import ConstellationDeviceManager
from stellate.testing import reference
from stellate.testing.fake_server import FakeAgentServer
from stellate.testing.fault_strategies import fleet_timings, fleets
from stellate.testing.faults import (
    DropAfterIdle,
    HangConnect,
    Healthy,
    NoRegistrationAnswer,
    Outage,
    Refuse,
    Reject,
    SilentAfterIdle,
)
from stellate.testing.fleet import (
    FleetDevice,
    FleetResult,
    FleetTiming,
    run_fleet,
    run_under_mock_clock,
)


@settings(
    max_examples=examples(25),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(devices=fleets(max_size=50), timing=fleet_timings(), seed=st.integers(0, 2**32 - 1))
def test_random_fleets_keep_every_invariant(
    devices: list[FleetDevice], timing: FleetTiming, seed: int
) -> None:
    result = run_fleet(devices, timing=timing, seed=seed)
    result.check()


def test_devices_failing_together_do_not_retry_together() -> None:
    devices = [
        FleetDevice(f"d{i}", [Refuse(), Refuse(), Refuse()], max_retries=4) for i in range(20)
    ]
    result = run_fleet(devices, seed=7)
    result.check()
    first = [o.backoffs[0] for o in result.devices.values()]
    assert len({b.at for b in first}) == 1  # they all failed at the same instant ...
    assert len({b.delay for b in first}) == 20  # ... and all wait differently
    timing = FleetTiming()
    low, high = reference.backoff_bounds(
        1, reconnect_delay=timing.reconnect_delay, backoff_cap=timing.backoff_cap
    )
    assert all(low <= b.delay <= high for b in first)


def test_server_back_after_an_outage() -> None:
    """ "Come back after N seconds": refused for 300 s, then healthy."""
    devices = [
        FleetDevice("forever", [Outage(300.0)], max_retries=None),
        FleetDevice("patient", [Outage(300.0)], max_retries=30),
        FleetDevice("impatient", [Outage(300.0)], max_retries=2),
    ]
    result = run_fleet(devices, seed=3)
    result.check()
    assert result.devices["forever"].status is DeviceStatus.IDLE
    assert result.devices["patient"].status is DeviceStatus.IDLE
    assert result.devices["impatient"].status is DeviceStatus.FAILED
    for device_id in ("forever", "patient"):
        attempts = result.devices[device_id].attempts
        assert attempts[-1].started_at >= 300.0 and not attempts[-1].outage
        assert all(a.outage for a in attempts[:-1])


def test_same_seed_same_run() -> None:
    devices = [
        FleetDevice(
            f"d{i}", [Refuse(), HangConnect(), Healthy(idle=SilentAfterIdle())], max_retries=None
        )
        for i in range(10)
    ]

    def trace(result: FleetResult) -> list[object]:
        return [
            (d, [(t, e.record.step) for t, e in o.events], [b.delay for b in o.backoffs])
            for d, o in sorted(result.devices.items())
        ]

    assert trace(run_fleet(devices, seed=11)) == trace(run_fleet(devices, seed=11))
    assert trace(run_fleet(devices, seed=11)) != trace(run_fleet(devices, seed=12))


def _mixed_fleet(size: int) -> list[FleetDevice]:
    kinds = [
        [],
        [Refuse(), Refuse()],
        [HangConnect()],
        [NoRegistrationAnswer(), Healthy(idle=DropAfterIdle(2))],
        [Reject.duplicate()],
        [Healthy(idle=SilentAfterIdle())],
        [Outage(120.0)],
    ]
    return [
        FleetDevice(f"dev{i:04d}", kinds[i % len(kinds)], max_retries=None if i % 3 else 3)
        for i in range(size)
    ]


def test_a_thousand_devices_with_faults_in_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    timing = FleetTiming(heartbeat_interval=60.0, miss_limit=2)
    started = time.perf_counter()
    result = run_fleet(_mixed_fleet(1000), timing=timing, seed=2025, grace=60.0)
    elapsed = time.perf_counter() - started
    result.check()
    statuses = [o.status for o in result.devices.values()]
    with capsys.disabled():
        print(
            f"\n1,000-device fleet: {statuses.count(DeviceStatus.IDLE)} idle, "
            f"{statuses.count(DeviceStatus.FAILED)} failed, settled at t={result.settled_at:.0f}s "
            f"virtual, {elapsed:.1f}s real"
        )
    assert elapsed < 60


def test_graceful_stop_leaves_nothing_behind() -> None:
    """Leaving ``async with manager`` (not cancelling) disconnects every device cleanly."""

    async def main() -> None:
        async with MemoryNetwork() as network:
            fake = FakeAgentServer(network)
            baseline = trio.lowlevel.current_statistics().tasks_living
            async with ConstellationDeviceManager(connector=fake.connector) as manager:
                for i, schedule in enumerate([[], [Refuse()], [HangConnect()], [Reject()]]):
                    url = fake.script(f"d{i}", schedule)
                    manager.add_device(AgentProfile(f"d{i}", url, max_retries=None))
                await manager.wait_for("d0", DeviceStatus.IDLE)
                await trio.sleep(1.0)  # d1 backing off, d2 connecting, d3 failed
            await trio.testing.wait_all_tasks_blocked()
            assert trio.lowlevel.current_statistics().tasks_living == baseline
            assert fake.connector.open_connections == 0
            assert fake.live_handlers == 0
            assert not fake.violations
            assert {p.status for p in manager.get_all_devices().values()} <= {
                DeviceStatus.DISCONNECTED
            }

    run_under_mock_clock(main)
