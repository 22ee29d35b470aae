"""``GET /metrics`` on the agent server: Prometheus text that moves as clients come and go.

Real WebSocket clients and real HTTP scrapes on 127.0.0.1; the text is read back with
``prometheus_client``'s own parser, as Prometheus would.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trio
from golden_frames import client_frame
from http_get import http_get
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from real_time import PATIENCE

from stellate.adapters.websocket import WebSocketConnector
from stellate.protocol.transport import ConnectError, ConnectionClosed
from stellate.server import AgentServer
from stellate.server.metrics import ServerCollector

KEY = "metrics-key-77"
AUTH = {"X-API-Key": KEY}
DEVICE = "linux_dev_2"
pytestmark = pytest.mark.usefixtures("hang_guard")
connector = WebSocketConnector(connect_timeout=PATIENCE, close_timeout=0.5)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> Samples:
    reply = await http_get(port, "/metrics", headers=AUTH)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    return parse(reply.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def until(predicate: object) -> None:
    """The server settles a peer's leaving in that peer's task: wait for it to be done."""
    while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
        await trio.sleep(0.01)


async def test_counters_move_as_clients_register_heartbeat_and_leave(
    nursery: trio.Nursery,
) -> None:
    server = AgentServer(api_key=KEY)
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    before = await scrape(port)
    assert value(before, "stellate_server_registrations_total", client_type="device") == 0
    assert value(before, "stellate_server_heartbeats_total") == 0
    assert value(before, "stellate_server_clients_registered", client_type="device") == 0

    url = f"ws://127.0.0.1:{port}/ws?token={KEY}"
    async with connector.open(url) as device:
        await device.send(client_frame("device_register"))
        await device.receive()
        for _ in range(3):
            await device.send(client_frame("device_heartbeat"))
            await device.receive()
        await device.send(client_frame("device_heartbeat", client_id="someone_else"))
        await device.receive()  # an error frame: identity mismatch
        async with connector.open(url) as constellation:
            await constellation.send(client_frame("constellation_register"))
            await constellation.receive()
            # Refusals at registration, by kind.
            async with connector.open(url) as twin:
                await twin.send(client_frame("device_register"))
                await twin.receive()
            async with connector.open(url) as lost:
                await lost.send(
                    client_frame("constellation_register", client_id="p@ghost", target_id="ghost")
                )
                await lost.receive()
            with pytest.raises(ConnectError):
                async with connector.open(f"ws://127.0.0.1:{port}/ws?token=wrong"):
                    pass

            during = await scrape(port)
            registered = "stellate_server_clients_registered"
            assert value(during, registered, client_type="device") == 1
            assert value(during, registered, client_type="constellation") == 1
            assert value(during, "stellate_server_connections") == 2
            # The device leaves; its constellation is told and closed.
        with pytest.raises(ConnectionClosed):
            while True:
                await constellation.receive()
    await until(lambda: server.connections == 0)
    after = await scrape(port)

    def total(name: str, **labels: str) -> float:
        return value(after, name, **labels)

    assert total("stellate_server_registrations_total", client_type="device") == 1
    assert total("stellate_server_registrations_total", client_type="constellation") == 1
    assert total("stellate_server_heartbeats_total") == 3
    assert total("stellate_server_frames_refused_total", reason="identity_mismatch") == 1
    rejected = "stellate_server_registrations_rejected_total"
    assert total(rejected, kind="id_still_held") == 1
    assert total(rejected, kind="target_not_yet_known") == 1
    assert total(rejected, kind="auth") == 1
    assert total(rejected, kind="final") == 0
    assert total("stellate_server_departures_total", client_type="device") == 1
    assert total("stellate_server_departures_total", client_type="constellation") == 1
    assert total("stellate_server_clients_registered", client_type="device") == 0
    assert total("stellate_server_handshake_failures_total", reason="bad_token") == 1
    for name in ("stellate_server_received_bytes_total", "stellate_server_sent_bytes_total"):
        assert total(name) > value(during, name) > value(before, name)
    assert total("stellate_server_http_requests_total", path="/metrics", status="200") == 2


async def test_refused_frames_and_handshakes_by_reason(nursery: trio.Nursery) -> None:
    server = AgentServer(api_key=KEY, max_message_size=4096)
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/ws?token={KEY}"
    async with connector.open(url) as device:
        await device.send(client_frame("device_register"))
        await device.receive()
        await device.send("not json")
        await device.receive()
        await device.send(
            client_frame("device_info_request", client_type="device", client_id=DEVICE)
        )
        await device.receive()  # a device may not ask
        await device.send(json.dumps({"type": "task", "status": "ok"}))
        await device.receive()
        await device.send("x" * 5000)
        with pytest.raises(ConnectionClosed):
            await device.receive()
    async with connector.open(url) as silent_first:
        await silent_first.send("[]")  # not a register frame: refused, final
        with pytest.raises(ConnectionClosed):
            while True:
                await silent_first.receive()
    assert (await http_get(port, "/nowhere")).status == 404
    await until(lambda: server.connections == 0)
    samples = await scrape(port)
    refused = "stellate_server_frames_refused_total"
    for reason in ("invalid", "not_permitted", "unsupported", "too_big"):
        assert value(samples, refused, reason=reason) == 1, reason
    assert value(samples, "stellate_server_registrations_rejected_total", kind="final") == 1
    assert value(samples, "stellate_server_handshake_failures_total", reason="not_found") == 1


async def test_metrics_follow_the_api_key_rule(nursery: trio.Nursery) -> None:
    port = await nursery.start(AgentServer(api_key=KEY).serve, "127.0.0.1", 0)
    assert (await http_get(port, "/metrics")).status == 401
    assert (await http_get(port, "/metrics", headers={"X-API-Key": "no"})).status == 403
    # What a Prometheus scrape job with `authorization: {credentials: KEY}` sends.
    bearer = await http_get(port, "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status == 200
    open_port = await nursery.start(AgentServer().serve, "127.0.0.1", 0)
    assert (await http_get(open_port, "/metrics")).status == 200  # keyless on loopback


async def test_without_metrics_nothing_is_counted_or_served(nursery: trio.Nursery) -> None:
    server = AgentServer(metrics=False)
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    assert server.counts is None
    assert (await http_get(port, "/metrics")).status == 404
    assert (await http_get(port, "/api/health")).status == 200


async def test_an_app_registers_the_collector_in_its_own_registry() -> None:
    server = AgentServer()
    registry = CollectorRegistry()
    registry.register(ServerCollector(server))
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "stellate_server_connections") == 0
    renamed = CollectorRegistry()
    renamed.register(ServerCollector(server, prefix="fleet_a"))
    assert "fleet_a_heartbeats_total" in generate_latest(renamed).decode()


@pytest.mark.parametrize(("flags", "status"), [([], 200), (["--no-metrics"], 404)])
async def test_stellate_serve_serves_metrics_unless_told_not_to(
    flags: list[str], status: int
) -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "stellate", "serve", "--port", "0", *flags],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        banner = b""
        while b"\n" not in banner:
            banner += await process.stdout.receive_some(4096)
        port = int(banner.split(b":")[-1].split(b"/")[0])
        reply = await http_get(port, "/metrics")
        assert reply.status == status
        if status == 200:
            assert value(parse(reply.text), "stellate_server_connections") == 0
    finally:
        process.terminate()
        await process.wait()
