"""The manager on real sockets: AgentServer and DeviceAgents on 127.0.0.1, started by the test.

Ports are ephemeral (port 0); every test runs under a ``trio.fail_after`` guard; nothing sleeps
to synchronise (waits are on the manager's own events and statuses).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio.testing
from fd_budget import require_descriptors
from manager_support import (
    PATIENT_SERVER,
    Recorder,
    Silenceable,
    manager_on,
    silenceable_handler,
    start_agent,
)
from real_time import HANG_GUARD
from seed_example import (
    SEED_CAPABILITIES,
    SEED_DEVICE,
    SEED_FINAL_SYSTEM_INFO,
    SEED_SYSTEM_INFO,
)

from stellate import Timing
from stellate.adapters.websocket import WebSocketConnector, serve_websocket
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import EventKind
from stellate.protocol import ClientType
from stellate.server import AgentServer

S = DeviceStatus
GUARD = HANG_GUARD  # real seconds; only catches a hang (real_time.py)


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


def refused_port() -> int:
    """A port nothing listens on (bound, then closed: the kernel refuses connections)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RunningServer:
    """An AgentServer on a real port that the test can stop and start again (same port)."""

    def __init__(self, nursery: trio.Nursery, make: Callable[[], AgentServer]) -> None:
        self._nursery = nursery
        self._make = make
        self.server = make()
        self.port = 0
        self._scope = trio.CancelScope()

    async def start(self) -> None:
        self.server = self._make()
        self._scope = trio.CancelScope()
        self.port = await self._nursery.start(self._serve, self.server, self._scope, self.port)

    @staticmethod
    async def _serve(
        server: AgentServer,
        scope: trio.CancelScope,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with scope:
            await server.serve("127.0.0.1", port, task_status=task_status)

    async def stop(self) -> None:
        await self.server.shutdown()
        self._scope.cancel()


@asynccontextmanager
async def running_server(
    make: Callable[[], AgentServer] = AgentServer,
) -> AsyncIterator[tuple[trio.Nursery, RunningServer]]:
    async with trio.open_nursery() as nursery:
        server = RunningServer(nursery, make)
        await server.start()
        yield nursery, server
        # Close every socket from the server side first: the agents then leave cleanly at
        # once, instead of waiting out their goodbye when cancelled mid-connection.
        await server.stop()
        nursery.cancel_scope.cancel()


#: Managers on real sockets retry quickly.
FAST = Timing(reconnect_delay=0.02, backoff_cap=0.2)


def fast_manager(timing: Timing = FAST, **kwargs: Any) -> Any:
    return manager_on(WebSocketConnector(), timing=timing, **kwargs)


async def test_seed_scenario_on_real_sockets() -> None:
    with trio.fail_after(GUARD):
        async with running_server() as (nursery, server):
            url = ws_url(server.port)
            await start_agent(nursery, url, "windowsagent", system_info=SEED_SYSTEM_INFO)
            async with manager_on(WebSocketConnector()) as manager:
                assert await manager.register_device(server_url=url, **SEED_DEVICE) is True
                p = manager.get_device_info("windowsagent")
                assert p is not None
                assert p.status is S.IDLE and p.os == "windows"
                assert list(p.capabilities) == SEED_CAPABILITIES
                assert list(p.metadata["system_info"].items()) == list(
                    SEED_FINAL_SYSTEM_INFO.items()
                )
                assert p.connection_attempts == 0 and p.last_heartbeat is not None
                assert p.current_task_id is None
                clients = {(e.client_id, e.client_type) for e in server.server.registry}
                assert ("office_constellation@windowsagent", ClientType.CONSTELLATION) in clients
            # Leaving the block disconnected cleanly: the server no longer lists us.
            assert [e.client_id for e in server.server.registry] == ["windowsagent"]


async def test_unreachable_server_makes_exactly_max_retries_attempts() -> None:
    recorder = Recorder()
    url = ws_url(refused_port())
    with trio.fail_after(GUARD):
        async with fast_manager() as manager, trio.open_nursery() as nursery:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", url, max_retries=3) is False
            p = manager.get_device_info("dev")
            assert p is not None and p.status is S.FAILED and p.connection_attempts == 3
            nursery.cancel_scope.cancel()
    assert len(recorder.entered("dev", "connecting")) == 3
    assert recorder.kinds("dev")[-1] is EventKind.FAILED


async def test_target_not_connected_fails_after_one_attempt() -> None:
    recorder = Recorder()
    with trio.fail_after(GUARD):
        async with running_server() as (nursery, server), fast_manager() as manager:
            await nursery.start(recorder.run, manager)
            url = ws_url(server.port)
            assert await manager.register_device("ghost", url, max_retries=5) is False
            p = manager.get_device_info("ghost")
            assert p is not None and p.status is S.FAILED and p.connection_attempts == 1
            reason = manager.failure_reason("ghost")
            assert reason == "registration rejected: Target device 'ghost' is not connected"
    assert len(recorder.entered("ghost", "connecting")) == 1
    assert "backoff" not in [dest for _, _, dest in recorder.steps("ghost")]


async def test_server_restart_brings_every_device_back_to_idle() -> None:
    recorder = Recorder()
    ids = [f"dev{i}" for i in range(5)]
    with trio.fail_after(GUARD):
        async with running_server() as (nursery, server):
            url = ws_url(server.port)
            for i, device_id in enumerate(ids):
                await start_agent(nursery, url, device_id, seed=i)
            async with fast_manager() as manager:
                await nursery.start(recorder.run, manager)
                for device_id in ids:
                    manager.add_device(AgentProfile(device_id, url, max_retries=50))
                settled = await manager.wait_settled()
                assert {p.status for p in settled.values()} == {S.IDLE}

                async with manager.events() as events:
                    await server.stop()  # every socket closed with 1001; the port is free
                    await server.start()  # a fresh server, same port, empty registry
                    back: set[str] = set()
                    async for event in events:
                        assert event.kind is not EventKind.FAILED, event.reason
                        if event.kind is EventKind.READY:
                            back.add(event.device_id)
                        if back == set(ids):
                            break
                profiles = manager.get_all_devices()
                assert {p.status for p in profiles.values()} == {S.IDLE}
                assert all(p.connection_attempts == 0 for p in profiles.values())
    for device_id in ids:
        assert EventKind.CONNECTION_LOST in recorder.kinds(device_id)
        assert EventKind.FAILED not in recorder.kinds(device_id)


async def test_silent_server_is_lost_within_the_lease_then_reconnected(
    loopback_clock: trio.testing.MockClock,
) -> None:
    """Virtual time on real sockets (``loopback_clock``): a 0.3 s lease is exact here, and no
    stall of a loaded machine can make the manager miss a heartbeat before the silence."""
    recorder = Recorder()
    sockets: list[Silenceable] = []
    interval, miss_limit = 0.1, 3
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server = AgentServer(policy=PATIENT_SERVER)
            port = await nursery.start(
                serve_websocket, silenceable_handler(server, sockets), "127.0.0.1", 0
            )
            url = ws_url(port)
            await start_agent(nursery, url, "dev")
            async with fast_manager(
                timing=FAST.evolve(heartbeat_interval=interval, miss_limit=miss_limit)
            ) as manager:
                await nursery.start(recorder.run, manager)
                assert await manager.register_device("dev", url) is True
                ours = [s for s in sockets if not s.closed][-1]
                ours.silent = True
                silenced_at = trio.current_time()
                await manager.wait_for("dev", S.BACKOFF)
                lost_at = trio.current_time()
                final = await manager.wait_for("dev", S.IDLE)
                assert final.connection_attempts == 0
            await server.shutdown()
            nursery.cancel_scope.cancel()
    # Lost within one lease of the silence (counted from the last answer, at most one
    # interval earlier), in virtual seconds.
    assert lost_at - silenced_at <= interval * (miss_limit + 1)
    (event,) = [e for _, e in recorder.events if e.kind is EventKind.CONNECTION_LOST]
    assert event.reason is not None and "heartbeat lease expired" in event.reason
    assert len(recorder.times("dev", EventKind.READY)) == 2


async def test_a_hundred_devices_reach_idle_concurrently() -> None:
    count = 100
    # agent + constellation sockets, both ends
    require_descriptors(4 * count, f"{count} devices on real sockets")
    ids = [f"dev{i:03}" for i in range(count)]
    with trio.fail_after(GUARD):
        async with running_server() as (nursery, server):
            url = ws_url(server.port)
            async with trio.open_nursery() as starting:
                for i, device_id in enumerate(ids):
                    starting.start_soon(partial(start_agent, nursery, url, device_id, seed=i))
            async with fast_manager() as manager:
                for device_id in ids:
                    manager.add_device(AgentProfile(device_id, url))
                settled = await manager.wait_settled()
                assert {p.status for p in settled.values()} == {S.IDLE}
                assert all("system_info" in p.metadata for p in settled.values())
                constellations = [
                    e for e in server.server.registry if e.client_type is ClientType.CONSTELLATION
                ]
                assert len(constellations) == count
            assert not [
                e for e in server.server.registry if e.client_type is ClientType.CONSTELLATION
            ]
