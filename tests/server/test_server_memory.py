"""AgentServer over the in-memory transport under MockClock: deadlines, leases, notices.

No sockets and no real time: ``autojump_clock`` jumps straight to the next deadline, so a 90 s
lease takes microseconds and the assertions can name exact instants.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from golden_frames import assert_like, client_frame
from server_support import closed_with, error_of

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.protocol.session_server import ServerPolicy
from stellate.protocol.transport import Connection
from stellate.server import AgentServer

URL = "ws://memory-server:5005/ws"
DEVICE = "linux_dev_2"


@pytest.fixture
async def network() -> AsyncIterator[MemoryNetwork]:
    async with MemoryNetwork(raise_handler_errors=True) as net:
        yield net


@pytest.fixture
def server(network: MemoryNetwork) -> AgentServer:
    agent_server = AgentServer(
        policy=ServerPolicy(
            timing=Timing(registration_timeout=10.0, heartbeat_interval=30.0, miss_limit=3)
        )
    )

    async def handler(conn: Any, _info: Any) -> None:
        await agent_server.handle_connection(conn)

    network.listen(URL, handler)
    return agent_server


async def register_device(conn: Connection, device_id: str = DEVICE) -> None:
    await conn.send(client_frame("device_register", client_id=device_id))
    assert_like(str(await conn.receive()), "registration_confirmation")


@asynccontextmanager
async def registered(network: MemoryNetwork) -> AsyncIterator[Connection]:
    """A connection on which the device ``DEVICE`` registered."""
    async with network.open(URL) as conn:
        await register_device(conn)
        yield conn


async def register_constellation(conn: Connection) -> None:
    await conn.send(client_frame("constellation_register"))
    assert_like(str(await conn.receive()), "registration_confirmation")


async def told_its_device_left(constellation: Connection) -> None:
    """The constellation hears that its device is gone (the reference's error frame), then is
    closed normally."""
    assert error_of(await constellation.receive()) == f"Target device '{DEVICE}' disconnected"
    assert (await closed_with(constellation)).code == 1000


async def test_silent_socket_is_closed_at_the_registration_deadline(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with network.open(URL) as conn:
        start = trio.current_time()
        assert error_of(await conn.receive()) == "no register frame within 10 s"
        assert trio.current_time() - start == pytest.approx(10.0)
        assert (await closed_with(conn)).code == 1008


async def test_device_lease_expires_without_heartbeats_and_constellations_are_told(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with network.open(URL) as device, network.open(URL) as constellation:
        await register_device(device)
        start = trio.current_time()
        await register_constellation(constellation)
        await told_its_device_left(constellation)
        assert trio.current_time() - start == pytest.approx(90.0)
        assert "no heartbeat for 90 s" in error_of(await device.receive())
        assert (await closed_with(device)).code == 1008
    assert len(server.registry) == 0


async def test_heartbeats_keep_the_lease(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with registered(network) as device:
        for _ in range(10):  # 10 × 60 s > 90 s lease, but every beat renews it
            await trio.sleep(60.0)
            await device.send(client_frame("device_heartbeat"))
            assert_like(str(await device.receive()), "heartbeat_ack")
        assert server.registry.get(DEVICE) is not None


async def test_device_leaving_ends_its_constellations_at_once(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with network.open(URL) as constellation:
        async with registered(network):
            await register_constellation(constellation)
            start = trio.current_time()
        # The device's block closed its socket.
        await told_its_device_left(constellation)
        assert trio.current_time() == start  # no timeout involved
    await trio.testing.wait_all_tasks_blocked()
    assert len(server.registry) == 0


async def test_a_dropped_device_can_register_again_at_once(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with registered(network) as first:
        async with network.open(URL) as twin:
            await twin.send(client_frame("device_register"))
            assert "already registered" in error_of(await twin.receive())
            await closed_with(twin)
        first.abort()  # type: ignore[attr-defined]
    async with network.open(URL) as again:
        await register_device(again)
    assert trio.current_time() == 0.0  # the reference would wait for a ping timeout


async def test_replacing_a_stale_registration_evicts_the_old_socket(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with network.open(URL) as old, network.open(URL) as new:
        await register_device(old)
        entry = server.registry.get(DEVICE)
        assert entry is not None
        entry.connection_lost = True  # as if the server had noticed the socket break
        await register_device(new)
        assert "replaced" in error_of(await old.receive())
        assert (await closed_with(old)).code == 1000
        await trio.testing.wait_all_tasks_blocked()
        entry = server.registry.get(DEVICE)
        assert entry is not None and not entry.connection_lost  # the new one stays


async def test_binary_frame_after_registration_closes_1003(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with registered(network) as device:
        await device.send(b"\x00\x01")
        assert error_of(await device.receive()) == "binary frames are not supported"
        assert (await closed_with(device)).code == 1003
    assert server.registry.get(DEVICE) is None


async def test_server_repr_never_shows_the_key() -> None:
    assert "s3cret" not in repr(AgentServer(api_key="s3cret"))


async def test_shutdown_closes_every_connection_with_1001(
    network: MemoryNetwork, server: AgentServer, autojump_clock: trio.testing.MockClock
) -> None:
    async with network.open(URL) as device, network.open(URL) as silent:
        await register_device(device)
        await server.shutdown()
        assert trio.current_time() == 0.0  # nobody waited for a timeout
        for conn in (device, silent):
            closed = await closed_with(conn)
            assert (closed.code, closed.reason) == (1001, "server shutting down")
        async with network.open(URL) as late:  # accepted after shutdown: closed at once
            assert (await closed_with(late)).code == 1001
    assert len(server.registry) == 0
