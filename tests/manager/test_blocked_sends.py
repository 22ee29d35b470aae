"""A server that stops reading cannot hold a device: a blocked send gives way to the owner's
command and to the heartbeat lease's verdict (under MockClock, over the in-memory network,
whose buffers are bounded like a socket's: a peer that does not read blocks the sender).

The device task sends its own heartbeats (there is no heartbeat task of its own to block
instead), so these are the cases where it is busy in a send when something must not wait.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import trio
from golden_frames import frame_text
from manager_support import PATIENT_SERVER, URL, Recorder, manager_on, start_agent

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import DeviceStatus
from stellate.manager import EventKind
from stellate.manager.runner import CLOSE_GRACE
from stellate.protocol.transport import Connection, ConnectionClosed
from stellate.server import AgentServer

S = DeviceStatus
#: Frames the manager sends before IDLE: REGISTER and the device-info request.
BRING_UP_FRAMES = 2


class Deaf:
    """A server-side connection that stops reading once the device is IDLE. If ``chatty``, it
    still sends a frame every ``every`` seconds (a server alive, but no longer reading)."""

    def __init__(self, conn: Connection, chatty: bool, every: float = 10.0) -> None:
        self._conn = conn
        self._reads = BRING_UP_FRAMES
        self.chatty = chatty
        self.every = every
        self.deaf_since: float | None = None

    async def receive(self) -> str | bytes:
        if self._reads == 0:
            self.deaf_since = trio.current_time()
            if self.chatty:
                await self._chatter()
            await trio.sleep_forever()
        self._reads -= 1
        return await self._conn.receive()

    async def _chatter(self) -> None:
        with suppress(ConnectionClosed):
            while True:
                await trio.sleep(self.every)
                await self._conn.send(frame_text("heartbeat_ack"))

    async def send(self, message: str | bytes) -> None:
        await self._conn.send(message)

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await self._conn.aclose(code, reason)

    @property
    def closed(self) -> bool:
        return self._conn.closed


async def _fleet_of_one(
    nursery: trio.Nursery, net: MemoryNetwork, chatty: bool
) -> tuple[AgentServer, list[Deaf]]:
    server = AgentServer(policy=PATIENT_SERVER)
    sockets: list[Deaf] = []
    connections = 0

    async def handler(conn: Any, _info: Any) -> None:
        nonlocal connections
        connections += 1
        if connections == 2:  # the agent's comes first, then the manager's
            conn = deaf = Deaf(conn, chatty)
            sockets.append(deaf)
        with suppress(ConnectionClosed):
            await server.handle_connection(conn)

    net.listen(URL, handler)
    await start_agent(nursery, URL, "dev", connector=net)
    return server, sockets


async def test_disconnect_does_not_wait_for_a_send_blocked_on_a_peer_that_stopped_reading(
    autojump_clock: Any,
) -> None:
    async with (
        MemoryNetwork(buffer=2, raise_handler_errors=True) as net,
        trio.open_nursery() as nursery,
    ):
        _, sockets = await _fleet_of_one(nursery, net, chatty=True)
        async with manager_on(net, timing=Timing(heartbeat_interval=30.0, miss_limit=3)) as manager:
            assert await manager.register_device("dev", URL) is True
            # The server stays alive (a frame every 10 s keeps the lease) but reads
            # nothing: two heartbeats fill the buffer, the third blocks its send.
            await trio.sleep(200)
            assert manager.get_device_info("dev").status is S.IDLE  # type: ignore[union-attr]
            # (virtual time: a send that held the device would keep it IDLE for ever)
            with trio.fail_after(CLOSE_GRACE):
                await manager.disconnect_device("dev")
        nursery.cancel_scope.cancel()
    assert sockets and sockets[0].deaf_since is not None


async def test_the_lease_runs_out_on_time_while_a_send_is_blocked(autojump_clock: Any) -> None:
    recorder = Recorder()
    async with (
        MemoryNetwork(buffer=1, raise_handler_errors=True) as net,
        trio.open_nursery() as nursery,
    ):
        _, sockets = await _fleet_of_one(nursery, net, chatty=False)
        async with manager_on(net, timing=Timing(heartbeat_interval=10.0, miss_limit=3)) as manager:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL) is True
            idle_at = trio.current_time()
            with trio.fail_after(100):  # virtual time: a held device would never get there
                await manager.wait_for("dev", S.BACKOFF)
            lost_at = trio.current_time()
            await manager.disconnect_device("dev")
        nursery.cancel_scope.cancel()
    # Deaf and silent from activation: the first heartbeat (10 s) fills the one-message buffer,
    # the second (20 s) blocks; the lease counts from the first: lost at 10 + 3 × 10 = 40 s,
    # although the device's task is still inside that second send.
    assert sockets[0].deaf_since is not None
    assert lost_at - idle_at == 40.0
    (event,) = [e for _, e in recorder.events if e.kind is EventKind.CONNECTION_LOST]
    assert event.reason is not None and "heartbeat lease expired" in event.reason
