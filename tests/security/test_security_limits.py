"""Item 3: frame size, connection and unregistered-socket limits, deadlines, slow readers.

Excess connections are refused at the handshake with HTTP 503 (Retry-After: 5): the client
learns why at once, and the refusal costs the server no WebSocket connection. On a transport
without a handshake (the in-memory one) the same limits close the connection with 1013.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from aip_frames import (
    constellation_register,
    device_info_request,
    device_register,
    heartbeat,
    receive_json,
    register,
)
from real_time import HANG_GUARD, PATIENCE
from security_support import KEY, StartServer

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.adapters.websocket import WebSocketConnector
from stellate.cli import build_parser
from stellate.protocol.session_server import ServerPolicy
from stellate.protocol.transport import ConnectError, ConnectionClosed
from stellate.server import AgentServer, default_max_connections

connector = WebSocketConnector(connect_timeout=PATIENCE, close_timeout=0.5)


def url(port: int, token: str | None = KEY) -> str:
    return f"ws://127.0.0.1:{port}/ws" + ("" if token is None else f"?token={token}")


async def eventually(predicate: Any, within: float = HANG_GUARD) -> None:
    """Poll until ``predicate()`` holds: the server settles a peer's close in its own task,
    and it has no event to wait on for that (nor should it grow one for tests). ``within``
    only catches a hang."""
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def refused(target: str) -> ConnectError:
    with pytest.raises(ConnectError) as failed:
        async with connector.open(target):
            pass
    return failed.value


async def test_excess_connections_are_refused_with_503(start_server: StartServer) -> None:
    with trio.fail_after(HANG_GUARD):
        server, port = await start_server(api_key=KEY, max_connections=2)
        async with connector.open(url(port)) as first, connector.open(url(port)) as second:
            await register(first, device_register("d1"))
            await register(second, device_register("d2"))
            error = await refused(url(port))
            assert error.status == 503 and "HTTP 503" in str(error)
            # Authentication comes first: no key, no hint about the load.
            assert (await refused(url(port, token=None))).status == 403
            assert server.connections == 2
        await eventually(lambda: server.connections == 0)
        async with connector.open(url(port)) as again:
            await register(again, device_register("d1"))


async def test_unregistered_sockets_are_limited_but_registered_ones_are_not(
    start_server: StartServer,
) -> None:
    with trio.fail_after(HANG_GUARD):
        server, port = await start_server(api_key=KEY, max_connections=10, max_unregistered=2)
        async with connector.open(url(port)) as a, connector.open(url(port)) as b:
            await eventually(lambda: server.unregistered == 2)
            assert (await refused(url(port))).status == 503
            await register(a, device_register("d1"))  # a registered socket frees its slot
            await eventually(lambda: server.unregistered == 1)
            async with connector.open(url(port)) as c:
                await register(c, device_register("d2"))
                await register(b, device_register("d3"))
                assert (server.connections, server.unregistered) == (3, 0)


async def test_limits_hold_on_transports_without_a_handshake() -> None:
    """handle_connection (memory transport): the connection over the limit is closed 1013."""
    server = AgentServer(max_connections=1)
    async with MemoryNetwork(raise_handler_errors=True) as network:
        network.listen("ws://mem/ws", lambda conn, _info: server.handle_connection(conn))
        with trio.fail_after(HANG_GUARD):
            async with network.open("ws://mem/ws") as first:
                await register(first, device_register("d1"))
                async with network.open("ws://mem/ws") as second:
                    with pytest.raises(ConnectionClosed) as closed:
                        await second.receive()
                    assert closed.value.code == 1013


def test_defaults() -> None:
    server = AgentServer()
    assert server.max_message_size == 1 << 20
    assert server.max_connections == default_max_connections() > 0
    assert server.max_unregistered == max(16, server.max_connections // 4)
    assert server.policy.timing.registration_timeout == 10.0
    patient = ServerPolicy(timing=Timing(registration_timeout=3.0))
    assert AgentServer(policy=patient).policy.timing.registration_timeout == 3.0
    with pytest.raises(TypeError):  # one door: the policy's Timing, no keyword beside it
        AgentServer(registration_timeout=3.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        AgentServer(max_connections=0)


def test_serve_flags_reach_the_server() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--max-connections",
            "50",
            "--max-unregistered",
            "5",
            "--max-message-size",
            "4096",
            "--registration-timeout",
            "2.5",
        ]
    )
    assert (args.max_connections, args.max_unregistered) == (50, 5)
    assert (args.max_message_size, args.registration_timeout) == (4096, 2.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-connections", "0"])


async def test_max_message_size_is_configurable(start_server: StartServer) -> None:
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(max_message_size=4096)
        big = WebSocketConnector(connect_timeout=PATIENCE, close_timeout=0.5)
        async with big.open(url(port, token=None)) as conn:
            await conn.send(device_register("d1", {"pad": "x" * 8192}))
            with pytest.raises(ConnectionClosed) as closed:
                await conn.receive()
            assert closed.value.code == 1009


# -- deadlines (MockClock) -------------------------------------------------------------------------


def jump(clock: trio.testing.MockClock, guard: trio.CancelScope, seconds: float) -> None:
    """Jump virtual time, moving the test's own ``fail_after`` guard along with it."""
    guard.deadline += seconds
    clock.jump(seconds)


async def test_silent_sockets_are_released_at_the_registration_deadline(
    start_server: StartServer, mock_clock: trio.testing.MockClock
) -> None:
    """A WebSocket that never registers, and a TCP socket that never even says HTTP.

    The clock runs at real speed (so ``fail_after`` guards real waiting) and is jumped past
    the deadline, which is far longer than the test itself takes.
    """
    mock_clock.rate = 1.0
    with trio.fail_after(HANG_GUARD) as guard:
        patient = ServerPolicy(timing=Timing(registration_timeout=60.0))
        server, port = await start_server(api_key=KEY, policy=patient)
        raw = trio.socket.socket()
        await raw.connect(("127.0.0.1", port))  # slowloris: connected, then nothing
        async with connector.open(url(port)) as silent, connector.open(url(port)) as device:
            await register(device, device_register("d1"))
            await eventually(lambda: server.unregistered == 1)
            jump(mock_clock, guard, 61.0)
            error = await receive_json(silent)
            assert error["error"] == "no register frame within 60 s"
            with pytest.raises(ConnectionClosed) as closed:
                await silent.receive()
            assert closed.value.code == 1008
            assert await raw.recv(1024) == b""  # the server hung up on it
            await eventually(lambda: server.unregistered == 0)
            await device.send(heartbeat("d1"))  # the registered device is untouched
            assert (await receive_json(device))["type"] == "heartbeat"
        raw.close()


async def test_silent_registered_clients_are_dropped_at_their_lease(
    start_server: StartServer, mock_clock: trio.testing.MockClock
) -> None:
    mock_clock.rate = 1.0
    with trio.fail_after(HANG_GUARD) as guard:
        server, port = await start_server(api_key=KEY)
        lease = server.policy.timing.lease
        idle = server.policy.constellation_lease
        async with connector.open(url(port)) as device, connector.open(url(port)) as watcher:
            await register(device, device_register("d1"))
            await register(watcher, constellation_register("d1"))
            for _ in range(3):  # the constellation keeps talking; the device does too
                jump(mock_clock, guard, lease * 0.9)
                await device.send(heartbeat("d1"))
                assert (await receive_json(device))["type"] == "heartbeat"
                await watcher.send(heartbeat("sec@d1", "constellation"))
                assert (await receive_json(watcher))["type"] == "heartbeat"
            assert lease < idle  # a device's loss is reported before a watcher's own limit
            jump(mock_clock, guard, idle + 1.0)
            texts = {(await receive_json(device))["error"], (await receive_json(watcher))["error"]}
            assert any("no heartbeat" in text for text in texts)
            await eventually(lambda: server.connections == 0)


# -- slow readers --------------------------------------------------------------------------------


async def test_a_client_that_never_reads_is_dropped_and_slows_nobody(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, mock_clock: trio.testing.MockClock
) -> None:
    """A constellation asks for ~0.9 MiB of telemetry again and again and never reads.

    Its socket's buffers fill, the server's send to it stalls, and after ``send_timeout`` the
    server drops it. Meanwhile another device registers and heartbeats: every socket has its
    own task, so one stalled send blocks nothing else. That is shown by order, not by speed:
    every heartbeat is answered while the stalled constellation is still registered, i.e.
    before the server gave up on its send. The clock runs at real speed, ``send_timeout`` is
    ``PATIENCE`` (far beyond what the heartbeats take, even on a loaded machine), and the test
    jumps past it once they are done. The devices' heartbeat lease is set far beyond the jump
    plus the hang guard: however slow the machine, nobody but the stalled constellation can be
    dropped (with the default 90 s lease, a loaded run once lost ``big`` to its lease).
    """
    mock_clock.rate = 1.0
    send_timeout = PATIENCE
    lease_beyond_the_test = Timing(heartbeat_interval=2 * (HANG_GUARD + send_timeout))
    with trio.fail_after(HANG_GUARD) as guard:
        server, port = await start_server(
            api_key=KEY,
            send_timeout=send_timeout,
            close_timeout=0.5,
            policy=ServerPolicy(  # keep the big telemetry
                timing=lease_beyond_the_test, max_system_info_bytes=1 << 20
            ),
        )
        padding = {"pad": "x" * (900 * 1024)}
        async with connector.open(url(port)) as big, connector.open(url(port)) as slow:
            await register(big, device_register("big", padding))
            await register(slow, constellation_register("big"))
            for i in range(40):  # ~36 MB of answers: more than any socket buffers hold
                with trio.move_on_after(0.05):
                    await slow.send(device_info_request("sec@big", "big", f"r{i}"))
            async with connector.open(url(port)) as other:
                await register(other, device_register("other"))
                for _ in range(20):
                    await other.send(heartbeat("other"))
                    assert (await receive_json(other))["type"] == "heartbeat"
                assert server.registry.get("sec@big") is not None  # its send is still stuck
                jump(mock_clock, guard, send_timeout)  # dropped once send_timeout passed
                await eventually(lambda: server.registry.get("sec@big") is None)
                await big.send(heartbeat("big"))  # its target is fine too
                reply: dict[str, Any] = json.loads(await big.receive())
                assert reply["type"] == "heartbeat"
    assert any("did not take a frame" in r.getMessage() for r in caplog.records)
