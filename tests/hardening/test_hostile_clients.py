"""Issue 7, item 4 (server side): hostile frames from several sockets at a live agent server,
while well-behaved device agents and a constellation manager register and heartbeat beside
them.

Properties, for every frame of every hostile socket:

* the server never crashes (in memory, a handler exception fails the test);
* a frame it cannot decode is answered with an ``error`` frame — then a close (1008) if the
  socket had not registered, the socket kept open if it had; a binary frame with an error and
  a close (1003); a frame above ``max_message_size`` (real sockets) with a close (1009);
* every other frame is answered (an ack, an error, a device-info answer, or an error and a
  close), except a well-formed ``error`` or ``device_info_response`` on a registered socket,
  which the server may ignore;
* a registered socket is never closed by a bad text frame.

"Answered" is checked without any timeout: on a registered socket the hostile client sends a
valid probe heartbeat after each frame, so everything before the probe's ack is the answer.
And the good clients: no error frame, no reconnection, every heartbeat acked within
``ACK_BOUND`` virtual seconds (MockClock), the registry holding exactly them at the end.

The bulk of the examples run in memory under MockClock; a smaller number on real sockets.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio
import trio.testing
from hardening_support import FIGURES, system_info_for
from hostile_frames import DEEP_BEYOND, LONE_SURROGATE_FRAME, hostile_frames
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from passthrough import Passthrough
from real_time import HANG_GUARD, PATIENCE

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.adapters.websocket import WebSocketConnector
from stellate.agent import DeviceAgent
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import (
    ClientMessage,
    ClientMessageType,
    Connection,
    ConnectionClosed,
    ProtocolError,
    ServerPolicy,
    decode_client,
)
from stellate.server import AgentServer

URL = "ws://hostile-target:5005/ws"
GOOD_DEVICES = ["good0", "good1"]
TASK = "hardening"
GOOD_CONSTELLATIONS = [f"{TASK}@{d}" for d in GOOD_DEVICES]
HEARTBEAT = 5.0
POLICY = ServerPolicy(
    timing=Timing(registration_timeout=10.0, heartbeat_interval=HEARTBEAT, miss_limit=3)
)
#: Virtual seconds within which every good heartbeat must be acked. The server answers in
#: zero virtual time; anything that made a good client wait on a timer (a send timeout on a
#: hostile peer, a close handshake, a deadline) would show up as ≥ 1 s here.
ACK_BOUND = 1.0
#: A registered hostile socket's whole script stays shorter than a device lease (15 s), so
#: the only closes it sees are answers to its own frames.
MAX_STEP_DELAY = 2.0
PROBE = json.dumps({"type": "heartbeat", "status": "ok"})
_REGISTER_EVIL = json.dumps({"type": "register", "status": "ok", "client_id": "evil0"})


# -- good clients, recorded -------------------------------------------------------------------


@attrs.define
class Record:
    heartbeats: int = 0
    latencies: list[float] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)


class RecordingConnection(Passthrough[Connection]):
    def __init__(self, inner: Connection, record: Record) -> None:
        super().__init__(inner)
        self._record = record
        self._pending: deque[float] = deque()

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, str) and json.loads(message)["type"] == "heartbeat":
            self._record.heartbeats += 1
            self._pending.append(trio.current_time())
        await self.inner.send(message)

    async def receive(self) -> str | bytes:
        frame = await self.inner.receive()
        data = json.loads(frame)
        if data["type"] == "error":
            self._record.errors.append(str(frame))
        elif data["type"] == "heartbeat" and self._pending:
            self._record.latencies.append(trio.current_time() - self._pending.popleft())
        return frame


class RecordingConnector:
    def __init__(self, open_: Callable[[str], AbstractAsyncContextManager[Any]]) -> None:
        self._open = open_
        self.record = Record()

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[RecordingConnection]:
        async with self._open(url) as conn:
            yield RecordingConnection(conn, self.record)


@attrs.define
class GoodClients:
    url: str
    agents: list[DeviceAgent]
    manager: ConstellationDeviceManager
    agent_link: RecordingConnector
    manager_link: RecordingConnector

    @classmethod
    def create(
        cls,
        url: str,
        open_: Callable[[str], AbstractAsyncContextManager[Any]],
        interval: float,
        miss_limit: int = 3,
    ) -> GoodClients:
        agent_link, manager_link = RecordingConnector(open_), RecordingConnector(open_)
        agents = [
            DeviceAgent(
                url,
                d,
                connector=agent_link,
                system_info=system_info_for(d),
                rng=random.Random(i),
                timing=Timing(
                    reconnect_delay=interval,
                    backoff_cap=interval,
                    heartbeat_interval=interval,
                    miss_limit=miss_limit,
                ),
            )
            for i, d in enumerate(GOOD_DEVICES)
        ]
        manager = ConstellationDeviceManager(
            task_name=TASK,
            connector=manager_link,
            rng=random.Random(0),
            timing=Timing(
                heartbeat_interval=interval, reconnect_delay=interval, miss_limit=miss_limit
            ),
            strict=True,
        )
        return cls(url, agents, manager, agent_link, manager_link)

    async def start(self, nursery: trio.Nursery) -> None:
        for agent in self.agents:
            await nursery.start(agent.run)
        await nursery.start(self.manager.run)
        for d in GOOD_DEVICES:
            profile = AgentProfile(d, self.url, capabilities=("cli",), metadata={"k": "v"})
            self.manager.add_device(profile)
        for d in GOOD_DEVICES:
            assert (await self.manager.wait_for(d)).status is DeviceStatus.IDLE

    def check(self, *, latency_bound: float | None) -> None:
        for agent in self.agents:
            assert agent.registrations == 1 and agent.failures == 0, agent
        for d, profile in self.manager.get_all_devices().items():
            assert profile.status is DeviceStatus.IDLE, (d, self.manager.failure_reason(d))
            assert profile.connection_attempts == 0
            assert profile.capabilities[0] == "cli" and profile.metadata["k"] == "v"
            assert profile.metadata["system_info"]["hostname"] == f"host-{d}"
        for link in (self.agent_link, self.manager_link):
            assert link.record.errors == []
            assert link.record.heartbeats > 0
            if latency_bound is not None:  # every heartbeat but the last in flight acked
                assert len(link.record.latencies) >= link.record.heartbeats - len(GOOD_DEVICES)
                assert max(link.record.latencies) <= latency_bound


# -- the hostile side --------------------------------------------------------------------------


@attrs.define
class Identity:
    client_id: str
    client_type: str


def _decoded(frame: str | bytes) -> ClientMessage | None:
    try:
        return decode_client(frame)
    except ProtocolError:
        return None


def _is_error(frame: str | bytes) -> bool:
    data = json.loads(frame)
    return bool(data["type"] == "error" and data["status"] == "error" and data["error"])


def _is_ack(frame: str | bytes) -> bool:
    data = json.loads(frame)
    return bool(data["type"] == "heartbeat" and data["status"] == "ok")


def _may_be_silent(message: ClientMessage | None, me: Identity) -> bool:
    """Well-formed frames a server may leave unanswered on a registered socket."""
    return (
        message is not None
        and message.type in (ClientMessageType.ERROR, ClientMessageType.DEVICE_INFO_RESPONSE)
        and message.client_id in (None, me.client_id)
        and message.client_type.value == me.client_type
    )


def _acked_heartbeat(message: ClientMessage | None, me: Identity) -> bool:
    return (
        message is not None
        and message.type is ClientMessageType.HEARTBEAT
        and message.client_id in (None, me.client_id)
    )


async def _answers(
    conn: Connection, until_acks: int | None, limit: float
) -> tuple[list[str | bytes], ConnectionClosed | None]:
    """Frames until the ``until_acks``-th ack (registered) or an ack/close (unregistered)."""
    frames: list[str | bytes] = []
    acks = 0
    with trio.fail_after(limit):
        while True:
            try:
                frame = await conn.receive()
            except ConnectionClosed as closed:
                return frames, closed
            frames.append(frame)
            if _is_ack(frame):
                acks += 1
                if until_acks is None:
                    return frames, None
                if acks == until_acks:
                    return frames[:-1], None  # the probe's ack is not an answer


async def hostile_socket(
    conn: Connection,
    script: list[tuple[float, str | bytes]],
    *,
    answer_timeout: float,
    max_message_size: int | None = None,
) -> None:
    me: Identity | None = None
    for delay, frame in script:
        await trio.sleep(delay)
        FIGURES["hostile frames tried"] += 1
        message = _decoded(frame) if isinstance(frame, str) else None
        await conn.send(frame)
        too_big = max_message_size is not None and len(frame) > max_message_size
        if me is not None and not too_big:
            await conn.send(PROBE)
            until = 2 if _acked_heartbeat(message, me) else 1
            answers, closed = await _answers(conn, until, answer_timeout)
        else:
            answers, closed = await _answers(conn, None, answer_timeout)
        what = f"{frame[:80]!r} (len {len(frame)}), registered as {me}: {answers} {closed}"

        if too_big:
            assert closed is not None and closed.code == 1009, what
            return
        if isinstance(frame, bytes):
            assert answers and _is_error(answers[0]), what
            assert closed is not None and closed.code == 1003, what
            return
        if message is None:  # undecodable text
            assert answers and _is_error(answers[0]), what
            if me is None:
                assert closed is not None and closed.code == 1008, what
                return
            assert closed is None, what
            continue
        if me is None:
            if message.type is ClientMessageType.REGISTER and message.client_id:
                if closed is None:
                    assert [_is_ack(a) for a in answers] == [True], what
                    me = Identity(message.client_id, message.client_type.value)
                    continue
                assert answers and _is_error(answers[0]) and closed.code in (1000, 1008), what
                return
            assert answers and _is_error(answers[0]), what
            assert closed is not None and closed.code == 1008, what
            return
        assert closed is None, what  # a registered socket is never closed by a text frame
        if not _may_be_silent(message, me):
            assert answers, what


def scripts(max_huge: int = 1_200_000) -> st.SearchStrategy[list[list[tuple[float, Any]]]]:
    """1-4 hostile sockets, each with 1-6 (delay, frame) steps."""

    def socket(index: int) -> st.SearchStrategy[list[tuple[float, Any]]]:
        frames = hostile_frames(
            f"evil{index}", GOOD_DEVICES, GOOD_CONSTELLATIONS, max_huge=max_huge
        )
        delays = st.sampled_from([0.0, 0.0, 0.5, 1.0, MAX_STEP_DELAY])
        return st.lists(st.tuples(delays, frames), min_size=1, max_size=6)

    return st.integers(min_value=1, max_value=4).flatmap(
        lambda n: st.tuples(*(socket(i) for i in range(n))).map(list)
    )


# -- in memory, under MockClock: the bulk ------------------------------------------------------


async def memory_run(hostile: list[list[tuple[float, Any]]]) -> None:
    async with MemoryNetwork(raise_handler_errors=True) as network, trio.open_nursery() as nursery:
        server = AgentServer(policy=POLICY)

        async def handler(conn: Any, _info: Any) -> None:
            await server.handle_connection(conn)

        network.listen(URL, handler)
        good = GoodClients.create(URL, network.open, HEARTBEAT)
        await good.start(nursery)

        async def run_one(script: list[tuple[float, Any]]) -> None:
            async with network.open(URL) as conn:
                await hostile_socket(conn, script, answer_timeout=0.5)

        async with trio.open_nursery() as hostiles:
            for script in hostile:
                hostiles.start_soon(run_one, script)
        await trio.sleep(4 * HEARTBEAT)  # the good clients keep heartbeating after the storm
        await trio.testing.wait_all_tasks_blocked()
        good.check(latency_bound=ACK_BOUND)
        # Only the good clients are left, each on its own live connection.
        assert sorted(e.client_id for e in server.registry) == sorted(
            GOOD_DEVICES + GOOD_CONSTELLATIONS
        )
        assert len(server._handles) == len(GOOD_DEVICES) + len(GOOD_CONSTELLATIONS)
        nursery.cancel_scope.cancel()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile=scripts())
@example(hostile=[[(0.0, _REGISTER_EVIL), (0.0, "{}"), (3.0, b"\xff")], [(0.0, "[" * 200)]])
def test_hostile_frames_in_memory(hostile: list[list[tuple[float, Any]]]) -> None:
    trio.run(memory_run, hostile, clock=trio.testing.MockClock(autojump_threshold=0))


# -- on real sockets: fewer examples, real frame-size limit ------------------------------------

REAL_LIMIT = 1 << 20  # AgentServer's default max_message_size
REAL_GUARD = HANG_GUARD  # real seconds per example; nothing waits on a timer: only stops a hang


async def socket_run(hostile: list[list[tuple[float, Any]]]) -> None:
    with trio.fail_after(REAL_GUARD):
        async with trio.open_nursery() as server_nursery:
            server = AgentServer(policy=POLICY)
            port = await server_nursery.start(server.serve, "127.0.0.1", 0)
            url = f"ws://127.0.0.1:{port}/ws"
            connector = WebSocketConnector(connect_timeout=PATIENCE, max_message_size=4 << 20)
            async with trio.open_nursery() as nursery:
                # Short real heartbeats so some happen, a lease (PATIENCE) no loaded CI
                # machine misses; no latency bound in real time.
                good = GoodClients.create(
                    url, connector.open, 0.05, miss_limit=int(PATIENCE / 0.05)
                )
                await good.start(nursery)

                async def run_one(script: list[tuple[float, Any]]) -> None:
                    async with connector.open(url) as conn:
                        await hostile_socket(
                            conn,
                            [(delay / 100, frame) for delay, frame in script],
                            answer_timeout=PATIENCE,
                            max_message_size=REAL_LIMIT,
                        )

                async with trio.open_nursery() as hostiles:
                    for script in hostile:
                        hostiles.start_soon(run_one, script)
                await trio.sleep(0.1)  # a few more good heartbeats after the storm
                good.check(latency_bound=None)
                # Stopping agents wait for a close handshake their cancelled reader never
                # reads (1 s each); a server that closes first spares the suite that second.
                await server.shutdown()
                nursery.cancel_scope.cancel()
            server_nursery.cancel_scope.cancel()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile=scripts(max_huge=int(1.5 * REAL_LIMIT)))
@example(hostile=[[(0.0, _REGISTER_EVIL), (0.0, "x" * (REAL_LIMIT + 1))], [(0.0, b"\x00")]])
@example(hostile=[[(0.0, _REGISTER_EVIL), (0.0, "{}"), (0.0, b"\xff")], [(0.0, "[" * 200)]])
def test_hostile_frames_on_real_sockets(hostile: list[list[tuple[float, Any]]]) -> None:
    trio.run(socket_run, hostile)


# -- known bugs, pinned -------------------------------------------------------------------------


async def first_frame_answer(frame: str) -> tuple[list[str | bytes], ConnectionClosed | None]:
    async with MemoryNetwork() as network:  # a handler crash is logged and closed with 1011
        server = AgentServer(policy=POLICY)

        async def handler(conn: Any, _info: Any) -> None:
            await server.handle_connection(conn)

        network.listen(URL, handler)
        async with network.open(URL) as conn:
            await conn.send(frame)
            return await _answers(conn, None, 1.0)


async def test_deeply_nested_first_frame_gets_an_error_and_1008(
    autojump_clock: trio.testing.MockClock,
) -> None:
    answers, closed = await first_frame_answer("[" * DEEP_BEYOND + "]" * DEEP_BEYOND)
    assert answers and _is_error(answers[0])
    assert closed is not None and closed.code == 1008


async def test_lone_surrogate_first_frame_gets_an_error_and_1008(
    autojump_clock: trio.testing.MockClock,
) -> None:
    answers, closed = await first_frame_answer(LONE_SURROGATE_FRAME)
    assert answers and _is_error(answers[0])
    assert closed is not None and closed.code == 1008


def test_lone_surrogate_after_registration_on_a_real_socket_gets_an_error() -> None:
    async def main() -> None:
        with trio.fail_after(REAL_GUARD):
            async with trio.open_nursery() as nursery:
                server = AgentServer(policy=POLICY)
                port = await nursery.start(server.serve, "127.0.0.1", 0)
                connector = WebSocketConnector(connect_timeout=PATIENCE)
                async with connector.open(f"ws://127.0.0.1:{port}/ws") as conn:
                    await conn.send(_REGISTER_EVIL)
                    assert _is_ack(await conn.receive())
                    await conn.send('{"type": "heartbeat", "status": "\\udc80"}')
                    await conn.send(PROBE)
                    answers, closed = await _answers(conn, 1, PATIENCE)
                    assert closed is None and answers and _is_error(answers[0])
                nursery.cancel_scope.cancel()

    trio.run(main)
