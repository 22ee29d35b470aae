"""Shared pieces of the manager tests: the example device, servers and agents to run against.

Everything here works on both transports: a ``MemoryNetwork`` under MockClock, or real sockets
on 127.0.0.1 (the ``connector`` argument decides).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, NamedTuple

import trio
from passthrough import Passthrough
from seed_example import SEED_SYSTEM_INFO

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.agent import DeviceAgent
from stellate.fsm import RetryPolicy
from stellate.manager import ConstellationDeviceManager, EventKind, ManagerEvent
from stellate.protocol import ServerPolicy
from stellate.protocol.transport import Connection, ConnectionClosed, Connector
from stellate.server import AgentServer

URL = "ws://agents.test:5005/ws"

#: Agents in tests reconnect quickly (the default waits up to 30 s).
FAST_AGENT_RETRY = RetryPolicy(reconnect_delay=0.05, backoff_cap=0.2)


def info_for(device_id: str) -> dict[str, Any]:
    return {**SEED_SYSTEM_INFO, "device_id": device_id}


def serve_on(network: MemoryNetwork, server: AgentServer, url: str = URL) -> None:
    """Have ``server`` answer connections to ``url`` on the memory network."""

    async def handler(conn: Any, _info: Any) -> None:
        await server.handle_connection(conn)

    network.listen(url, handler)


async def start_agent(
    nursery: trio.Nursery,
    url: str,
    device_id: str,
    *,
    connector: Connector | None = None,
    system_info: dict[str, Any] | None = None,
    seed: int = 1,
) -> DeviceAgent:
    """A device agent, returned once it is registered on the server."""
    agent = DeviceAgent(
        url,
        device_id,
        connector=connector,
        system_info=system_info if system_info is not None else info_for(device_id),
        rng=random.Random(seed),
        timing=FAST_AGENT_RETRY,
    )
    await nursery.start(agent.run)
    return agent


class Agent:
    """A device agent the test can take away and bring back."""

    def __init__(self, nursery: trio.Nursery, net: MemoryNetwork, device_id: str) -> None:
        self._nursery, self._net, self.device_id = nursery, net, device_id
        self._scope = trio.CancelScope()

    async def start(self, seed: int = 1) -> None:
        """Start (again) and return once registered."""
        self._scope = trio.CancelScope()
        await self._nursery.start(self._run, self._scope, seed)

    async def _run(
        self, scope: trio.CancelScope, seed: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                await start_agent(inner, URL, self.device_id, connector=self._net, seed=seed)
                task_status.started()

    def stop(self) -> None:
        self._scope.cancel()


def manager_on(connector: Connector, **kwargs: Any) -> ConstellationDeviceManager:
    options: dict[str, Any] = {
        "task_name": "office_constellation",
        "connector": connector,
        "rng": random.Random(0),
        "strict": True,  # a bug in a device's task fails the test (tests pass it explicitly)
    }
    options.update(kwargs)
    return ConstellationDeviceManager(**options)


class Recorder:
    """Collects a manager's events with the (virtual) time each was seen."""

    def __init__(self) -> None:
        self.events: list[tuple[float, ManagerEvent]] = []

    async def run(
        self,
        manager: ConstellationDeviceManager,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with manager.events() as events:
            task_status.started()
            async for event in events:
                self.events.append((trio.current_time(), event))

    def kinds(self, device_id: str) -> list[EventKind]:
        return [e.kind for _, e in self.events if e.device_id == device_id]

    def steps(self, device_id: str) -> list[tuple[str, str, str]]:
        return [
            e.record.step
            for _, e in self.events
            if e.device_id == device_id and e.kind is not EventKind.TELEMETRY_MERGED
        ]

    def times(self, device_id: str, kind: EventKind) -> list[float]:
        return [t for t, e in self.events if e.device_id == device_id and e.kind is kind]

    def entered(self, device_id: str, dest: str) -> list[float]:
        return [
            t
            for t, e in self.events
            if e.device_id == device_id
            and e.record.dest == dest
            and e.kind is not EventKind.TELEMETRY_MERGED
        ]


class Silenceable(Passthrough[Connection]):
    """A server-side connection that can be struck dumb: it then reads and drops every frame
    and answers nothing, while the socket stays open (a hung server, not a dead one)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self.silent = False

    async def send(self, message: str | bytes) -> None:
        if not self.silent:
            await self.inner.send(message)

    async def receive(self) -> str | bytes:
        while True:
            frame = await self.inner.receive()
            if not self.silent:
                return frame


def silenceable_handler(
    server: AgentServer, sockets: list[Silenceable]
) -> Callable[[Any, Any], Any]:
    """A handler serving ``server`` whose connections are recorded (and can be silenced)."""

    async def handler(conn: Any, _info: Any) -> None:
        wrapped = Silenceable(conn)
        sockets.append(wrapped)
        with suppress(ConnectionClosed):
            await server.handle_connection(wrapped)

    return handler


#: A server whose own constellation lease is far away, so only the manager's lease can act.
PATIENT_SERVER = ServerPolicy(
    timing=Timing(registration_timeout=10.0, heartbeat_interval=10_000.0, miss_limit=3)
)


@asynccontextmanager
async def memory_network() -> AsyncIterator[MemoryNetwork]:
    async with MemoryNetwork(raise_handler_errors=True) as net:
        yield net


class Site(NamedTuple):
    """What ``site`` yields: ``async with site("dev") as (net, nursery, server):``."""

    net: MemoryNetwork
    nursery: trio.Nursery
    server: AgentServer


@asynccontextmanager
async def site(
    *device_ids: str,
    server: AgentServer | None = None,
    sockets: list[Silenceable] | None = None,
) -> AsyncIterator[Site]:
    """The scene most manager tests play in: a memory network, ``server`` (a default
    ``AgentServer``) answering at ``URL``, and a registered device agent for each id, run in a
    nursery the test may use too; on the way out everything in it is cancelled. With
    ``sockets``, the server's connections are recorded there and can be silenced."""
    server = server if server is not None else AgentServer()
    async with memory_network() as net, trio.open_nursery() as nursery:
        if sockets is None:
            serve_on(net, server)
        else:
            net.listen(URL, silenceable_handler(server, sockets))
        for device_id in device_ids:
            await start_agent(nursery, URL, device_id, connector=net)
        yield Site(net, nursery, server)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def recording(manager: ConstellationDeviceManager) -> AsyncIterator[Recorder]:
    """A ``Recorder`` of ``manager``'s events, subscribed before the body runs."""
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run, manager)
        yield recorder
        nursery.cancel_scope.cancel()
