"""The reference server's HTTP API on the WebSocket port: /api/health and /api/clients.

Real HTTP requests (``http.client``) and real WebSocket clients on 127.0.0.1. The reference
(``ufo/server/services/api.py``) answers ``{"status": "healthy", "online_clients": [...]}`` and
``{"online_clients": [...]}``; with a key, ``X-API-Key`` is required (401 without, 403 wrong).
"""

from __future__ import annotations

import json
import ssl
from functools import partial

import pytest
import trio
import trio.lowlevel
import trio.testing
import trustme
from golden_frames import client_frame
from http_get import http_get
from real_time import HANG_GUARD, PATIENCE

from stellate import Timing
from stellate.adapters.websocket import WebSocketConnector
from stellate.adapters.ws_server import HttpResponse, serve_websocket
from stellate.protocol import ServerPolicy
from stellate.protocol.transport import ConnectError
from stellate.server import AgentServer

KEY = "http-key-5e1f"
AUTH = {"X-API-Key": KEY}
DEVICE = "linux_dev_2"  # the golden frames' device and constellation
pytestmark = pytest.mark.usefixtures("hang_guard")
connector = WebSocketConnector(connect_timeout=PATIENCE, close_timeout=0.5)


async def start(nursery: trio.Nursery, **kwargs: object) -> tuple[AgentServer, int]:
    server = AgentServer(**kwargs)  # type: ignore[arg-type]
    port: int = await nursery.start(server.serve, "127.0.0.1", 0)
    return server, port


async def test_health_and_clients_answer_the_reference_shapes(nursery: trio.Nursery) -> None:
    _server, port = await start(nursery, api_key=KEY)
    empty = await http_get(port, "/api/health", headers=AUTH)
    assert (empty.status, empty.json()) == (200, {"status": "healthy", "online_clients": []})
    assert empty.headers["content-type"] == "application/json"

    url = f"ws://127.0.0.1:{port}/ws?token={KEY}"
    async with connector.open(url) as device, connector.open(url) as constellation:
        await device.send(client_frame("device_register"))
        await device.receive()
        await constellation.send(client_frame("constellation_register"))
        await constellation.receive()
        constellation_id = json.loads(client_frame("constellation_register"))["client_id"]
        online = [DEVICE, constellation_id]

        health = await http_get(port, "/api/health", headers=AUTH)
        assert health.json() == {"status": "healthy", "online_clients": online}
        clients = await http_get(port, "/api/clients", headers=AUTH)
        assert (clients.status, clients.json()) == (200, {"online_clients": online})
        # Prometheus sends its credentials as a bearer token; that works too.
        bearer = await http_get(port, "/api/clients", headers={"Authorization": f"Bearer {KEY}"})
        assert bearer.json() == {"online_clients": online}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": ""}, 403),
        ({"X-API-Key": "wrong"}, 403),
        ({"X-API-Key": KEY + "x"}, 403),
        ({"X-API-Key": KEY[:-1]}, 403),
        ({"Authorization": "Bearer nope"}, 403),
        ({"Authorization": f"Basic {KEY}"}, 401),
    ],
)
async def test_missing_or_wrong_key_is_refused(
    nursery: trio.Nursery, headers: dict[str, str], status: int
) -> None:
    server, port = await start(nursery, api_key=KEY)
    for path in ("/api/health", "/api/clients"):
        reply = await http_get(port, path, headers=headers)
        assert reply.status == status
        assert "detail" in reply.json() and KEY not in reply.text
    kind = "unauthorized" if status == 401 else "forbidden"
    assert server.listener_stats.failures[kind] == 2


async def test_unknown_paths_get_a_short_404(nursery: trio.Nursery) -> None:
    _server, port = await start(nursery, api_key=KEY)
    for path in ("/", "/api", "/api/health/", "/api/dispatch", "/metrics/../api/health"):
        reply = await http_get(port, path, headers=AUTH)
        assert reply.status == 404, path
        assert reply.json() == {"detail": "Not Found"} and len(reply.body) < 64
    # An unknown path is 404 before the key is looked at, as with routes the reference lacks.
    assert (await http_get(port, "/nope")).status == 404


async def test_methods_and_the_websocket_path(nursery: trio.Nursery) -> None:
    _server, port = await start(nursery, api_key=KEY)
    post = await http_get(port, "/api/health", headers=AUTH, method="POST")
    assert post.status == 405 and post.headers["allow"] == "GET, HEAD"
    head = await http_get(port, "/api/health", headers=AUTH, method="HEAD")
    assert head.status == 200 and head.body == b""
    plain = await http_get(port, "/ws", headers=AUTH)  # the WebSocket path without an upgrade
    assert plain.status == 426 and plain.headers["upgrade"] == "websocket"


async def test_without_a_key_only_loopback_answers(nursery: trio.Nursery) -> None:
    _server, port = await start(nursery)
    assert (await http_get(port, "/api/health")).json()["status"] == "healthy"
    exposed = AgentServer(insecure_no_auth=True)
    assert exposed.http_open("127.0.0.1") and not exposed.http_open("0.0.0.0")
    assert not exposed.http_open(None) and not AgentServer(api_key=KEY).http_open("127.0.0.1")

    routes = {"/api/health": lambda _request: HttpResponse.json({"ok": True})}
    closed: int = await nursery.start(
        partial(serve_websocket, None, "127.0.0.1", 0, http_routes=routes, http_open=False)
    )
    refused = await http_get(closed, "/api/health")
    assert refused.status == 403 and "loopback" in refused.json()["detail"]


async def test_http_requests_are_held_to_the_connection_limits(nursery: trio.Nursery) -> None:
    server, port = await start(nursery, api_key=KEY, max_connections=1)
    async with connector.open(f"ws://127.0.0.1:{port}/ws?token={KEY}") as device:
        await device.send(client_frame("device_register"))
        await device.receive()
        busy = await http_get(port, "/api/health", headers=AUTH)
        assert busy.status == 503 and busy.headers["retry-after"] == "5"
        # No key, no hint about the load: refused for the key first.
        assert (await http_get(port, "/api/health")).status == 401
    with trio.fail_after(HANG_GUARD):
        while server.connections:  # noqa: ASYNC110 - the server settles the close in its task
            await trio.sleep(0.01)
    assert (await http_get(port, "/api/health", headers=AUTH)).status == 200
    assert server.connections == 0  # the HTTP request gave its slot back


async def test_the_websocket_upgrade_still_refuses_as_before(nursery: trio.Nursery) -> None:
    _server, port = await start(nursery, api_key=KEY)
    for suffix, status in (("/ws", 403), (f"/other?token={KEY}", 404)):
        with pytest.raises(ConnectError) as refused:
            async with connector.open(f"ws://127.0.0.1:{port}{suffix}"):
                pass
        assert refused.value.status == status
    # An HTTP route is not a WebSocket endpoint.
    with pytest.raises(ConnectError) as refused:
        async with connector.open(f"ws://127.0.0.1:{port}/api/health?token={KEY}"):
            pass
    assert refused.value.status == 404


async def test_a_slow_http_client_is_dropped_at_the_handshake_deadline(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    """Half a request head, then nothing: the socket is closed once the deadline passes."""
    policy = ServerPolicy(timing=Timing(registration_timeout=3.0))
    server, port = await start(nursery, api_key=KEY, policy=policy)
    slow = trio.socket.socket()
    await slow.connect(("127.0.0.1", port))
    await slow.send(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-API-")
    with trio.fail_after(HANG_GUARD):
        while server.listener_stats.open != 1:
            await trio.lowlevel.checkpoint()
    await trio.testing.wait_all_tasks_blocked()
    mock_clock.jump(2.0)
    await trio.testing.wait_all_tasks_blocked()
    assert server.listener_stats.open == 1  # not yet
    mock_clock.jump(1.5)
    with trio.fail_after(HANG_GUARD):
        assert await slow.recv(1024) == b""  # dropped without an answer
    slow.close()
    assert server.listener_stats.failures["timeout"] == 1


async def test_the_api_is_served_over_tls_with_the_websocket(
    nursery: trio.Nursery, ca: trustme.CA, server_context: ssl.SSLContext
) -> None:
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    _server, port = await start(nursery, api_key=KEY, ssl_context=server_context)
    health = await http_get(port, "/api/health", headers=AUTH, tls=client_context)
    assert health.json() == {"status": "healthy", "online_clients": []}
    assert (await http_get(port, "/api/health", tls=client_context)).status == 401
