"""``manager.stats()``, the manager's Prometheus metrics and ``/api/fleet``.

The figures are checked on a scripted fleet (``stellate.testing``'s fake server, in memory,
under ``MockClock``): what each device meets is known, so every count and duration is exact.
The HTTP side is then served for real on 127.0.0.1 and read back with ``prometheus_client``'s
parser.
"""

from __future__ import annotations

import random
from functools import partial

import trio
import trio.testing
from http_get import http_get
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import ACTIVE, AgentProfile, DeviceStatus, Tag
from stellate.manager import ConstellationDeviceManager, EventKind, ManagerEvent
from stellate.manager.metrics import ManagerCollector, fleet_json, serve_fleet
from stellate.manager.stats import StatusCounts
from stellate.testing import DropAfterIdle, FakeAgentServer, Healthy, Refuse, Reject

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
KEY = "fleet-key-31"


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scripted_fleet(
    nursery: trio.Nursery,
) -> tuple[ConstellationDeviceManager, FakeAgentServer]:
    """Four devices whose fates are known: lost and recovered, retried, rejected, exhausted."""
    network = await nursery.start(_network)
    fake = FakeAgentServer(network)
    manager = ConstellationDeviceManager(
        connector=fake.connector,
        rng=random.Random(7),
        timing=Timing(reconnect_delay=2.0, backoff_cap=2.0),
        strict=True,
    )
    await nursery.start(manager.run)
    schedules = {
        "lost": ([Healthy(idle=DropAfterIdle(1))], None),
        "retried": ([Refuse()], None),
        "rejected": ([Reject("no such thing")], None),
        "exhausted": ([Refuse(), Refuse()], 2),
    }
    for device_id, (schedule, max_retries) in schedules.items():
        url = fake.script(device_id, schedule)
        manager.add_device(AgentProfile(device_id, url, max_retries=max_retries))
    return manager, fake


async def _network(task_status: trio.TaskStatus[MemoryNetwork]) -> None:
    async with MemoryNetwork() as network:
        task_status.started(network)
        await trio.sleep_forever()


async def settle(manager: ConstellationDeviceManager) -> None:
    """Every device settled, the lost one recovered (virtual time: exact and instant)."""
    await manager.wait_settled()
    while manager.stats().recoveries < 1:  # noqa: ASYNC110 - virtual time, no event to wait on
        await trio.sleep(1.0)


async def test_stats_count_what_each_device_went_through(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    manager, _fake = await scripted_fleet(nursery)
    await settle(manager)
    stats = manager.stats()
    assert stats.devices == 4
    assert stats.by_status[DeviceStatus.IDLE] == 2
    assert stats.by_status[DeviceStatus.FAILED] == 2
    assert sum(stats.by_status.values()) == 4 and set(stats.by_status) == set(DeviceStatus)
    # lost: 2 (first, reconnect); retried: 2; rejected: 1; exhausted: 2.
    assert stats.attempts == 7
    assert (stats.losses, stats.recoveries) == (1, 1)
    assert stats.failures == {"registration_answered": 1, "connection_failed": 1}
    assert stats.to_dict()["by_status"]["idle"] == 2

    observer = manager.fleet
    # Two backoffs of exactly 2 s were waited (retried, exhausted: cap = delay = 2 s, jitter
    # within the window) and one after the loss.
    backoff = observer.time_in_state[DeviceStatus.BACKOFF]
    assert backoff.count == 3 and 0 < backoff.total <= 3 * 2.0
    assert observer.time_to_idle["connect"].count == 2  # lost (first run), retried
    assert observer.time_to_idle["recovery"].count == 1
    # Handshakes take no virtual time here: the recovery lasted its one backoff.
    assert 0 < observer.time_to_idle["recovery"].total <= 2.0
    manager.stop()


async def test_events_read_each_rows_meaning(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Every event of the scripted fleet: its kind and its wait, checked against what its
    step is documented to mean (decoded here by hand, as only a test may)."""
    manager, _fake = await scripted_fleet(nursery)
    seen: list[ManagerEvent] = []
    manager.add_observer(seen.append)
    await settle(manager)
    assert seen
    for event in seen:
        record, kinds = event.record, [e.kind for e in seen if e.record is event.record]
        if record.dest is DeviceStatus.FAILED:
            expected = [EventKind.FAILED]
        elif record.source in ACTIVE and record.dest is DeviceStatus.BACKOFF:
            expected = [EventKind.CONNECTION_LOST]
        elif record.source is DeviceStatus.TELEMETRY and record.dest is DeviceStatus.IDLE:
            merged = [EventKind.TELEMETRY_MERGED] if record.telemetry_merged else []
            expected = [*merged, EventKind.READY]
        else:
            expected = [EventKind.PHASE]
        assert kinds == expected, record
        # the states whose deadline is a wait: backoff, and failed (retry_failed_after)
        if record.dest is DeviceStatus.BACKOFF:
            assert event.retry_in is not None and 0 < event.retry_in <= 2.0, record  # capped
        elif record.dest is DeviceStatus.FAILED:
            assert event.retry_in == Timing().retry_failed_after, record
        else:
            assert event.retry_in is None, record
    assert {EventKind.CONNECTION_LOST, EventKind.FAILED, EventKind.READY} <= {e.kind for e in seen}
    manager.stop()


def test_status_counts_count_each_status_and_the_tables_groups() -> None:
    counts = StatusCounts([DeviceStatus.IDLE, DeviceStatus.IDLE, DeviceStatus.FAILED])
    counts_by_hand = {status: 0 for status in DeviceStatus}
    counts_by_hand.update({DeviceStatus.IDLE: 2, DeviceStatus.FAILED: 1})
    assert dict(counts) == counts_by_hand and counts.total == 3
    assert counts.tagged(Tag.SETTLED) == 3 and counts.tagged(Tag.ATTEMPTING) == 0
    assert counts.text() == "idle=2  failed=1"
    counts.move(DeviceStatus.IDLE, DeviceStatus.BACKOFF)
    assert counts.tagged(Tag.SETTLED) == 2 and counts[DeviceStatus.BACKOFF] == 1
    assert counts.text() == "idle=1  backoff=1  failed=1"
    assert StatusCounts().total == 0 and StatusCounts().text() == ""


async def test_prometheus_metrics_and_fleet_json(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    manager, _fake = await scripted_fleet(nursery)
    await settle(manager)
    registry = CollectorRegistry()
    registry.register(ManagerCollector(manager))
    samples = parse(generate_latest(registry).decode())

    def value(name: str, **labels: str) -> float:
        return samples[name, tuple(sorted(labels.items()))]

    assert value("stellate_manager_devices", status="idle") == 2
    assert value("stellate_manager_devices", status="connecting") == 0
    assert value("stellate_manager_connection_attempts_total") == 7
    assert value("stellate_manager_losses_total") == 1
    assert value("stellate_manager_recoveries_total") == 1
    assert value("stellate_manager_failures_total", trigger="registration_answered") == 1
    assert value("stellate_manager_failures_total", trigger="timed_out") == 0  # listed anyway
    assert value("stellate_manager_state_seconds_count", state="backoff") == 3
    assert value("stellate_manager_state_seconds_bucket", state="backoff", le="+Inf") == 3
    buckets = [
        v
        for (name, labels), v in samples.items()
        if name == "stellate_manager_state_seconds_bucket" and ("state", "backoff") in labels
    ]
    assert buckets == sorted(buckets) and buckets[0] == 0  # cumulative; no backoff under 1 ms
    assert value("stellate_manager_time_to_idle_seconds_count", start="connect") == 2

    data = fleet_json(manager)
    assert data["states"] == [s.value for s in DeviceStatus]
    assert {(t["source"], t["dest"]) for t in data["transitions"]} >= {
        ("disconnected", "connecting"),
        ("telemetry", "idle"),
    }
    devices = {d["device_id"]: d for d in data["devices"]}
    assert devices["rejected"]["status"] == "failed"
    assert "no such thing" in devices["rejected"]["failure_reason"]
    assert devices["retried"]["attempts"] == 0  # reset on reaching IDLE
    assert devices["retried"]["time_in_state"] >= 0
    assert devices["lost"]["profile"]["device_id"] == "lost"
    manager.stop()


async def test_the_fleet_port_serves_json_metrics_and_the_page(nursery: trio.Nursery) -> None:
    """Real HTTP on 127.0.0.1; secrets in a device's URL never reach /api/fleet."""
    manager = ConstellationDeviceManager(api_key=KEY, strict=True)
    await nursery.start(manager.run)
    manager.add_device(
        AgentProfile("quiet", "ws://127.0.0.1:9/ws?token=hunter2"), auto_connect=False
    )
    port = await nursery.start(partial(serve_fleet, manager, "127.0.0.1", 0, api_key=KEY))
    page = await http_get(port, "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b"<svg" in page.body and b"api/fleet" in page.body
    assert b"http://" not in page.body.replace(b"http://www.w3.org/2000/svg", b"")  # no assets
    fleet = await http_get(port, "/api/fleet")  # loopback: no key needed
    assert fleet.status == 200
    assert fleet.json()["stats"]["by_status"]["disconnected"] == 1
    assert "hunter2" not in fleet.text and KEY not in fleet.text
    metrics = await http_get(port, "/metrics")
    assert parse(metrics.text)["stellate_manager_devices", (("status", "disconnected"),)] == 1
    assert (await http_get(port, "/nope")).status == 404
    manager.stop()
