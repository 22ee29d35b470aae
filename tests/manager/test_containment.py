"""A bug in one device's task is contained: that device fails, the fleet runs on (and the
test suite's strict mode makes the same bug fail loudly)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from manager_support import URL, manager_on, memory_network, serve_on, start_agent

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import AgentProfile, DeviceStatus, IllegalTransition, Trigger
from stellate.fsm.lifecycle import DeviceLifecycle
from stellate.manager import EventKind
from stellate.protocol.transport import Connection
from stellate.server import AgentServer

S = DeviceStatus
IDS = ["dev0", "dev1", "dev2"]


class Faulty:
    """A connector with a bug for one device: opening its connection raises."""

    def __init__(self, net: MemoryNetwork, broken: str) -> None:
        self._net, self._broken = net, broken

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[Connection]:
        if f"/{self._broken}" in url:
            raise RuntimeError("boom (an injected bug)")
        async with self._net.open(url) as conn:
            yield conn


def url_of(device_id: str) -> str:
    return f"{URL}/{device_id}"


async def fleet(net: MemoryNetwork, nursery: trio.Nursery) -> None:
    server = AgentServer()
    for device_id in IDS:
        serve_on(net, server, url_of(device_id))
    for i, device_id in enumerate(IDS):
        await start_agent(nursery, url_of(device_id), device_id, connector=net, seed=i)


async def test_a_bug_in_one_device_fails_only_that_device(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    events = []
    async with memory_network() as net, trio.open_nursery() as nursery:
        await fleet(net, nursery)
        async with manager_on(Faulty(net, "dev1"), strict=False) as manager:
            async with manager.events() as stream:
                for device_id in IDS:
                    manager.add_device(AgentProfile(device_id, url_of(device_id)))
                settled = await manager.wait_settled()
                await trio.sleep(100)  # the others keep running (heartbeats)
                while True:
                    try:
                        events.append(stream.receive_nowait())
                    except trio.WouldBlock:
                        break
            assert {d: p.status for d, p in settled.items()} == {
                "dev0": S.IDLE,
                "dev1": S.FAILED,
                "dev2": S.IDLE,
            }
            reason = manager.failure_reason("dev1")
            assert reason == "internal error: RuntimeError: boom (an injected bug)"
            # The device task survived its bug: the owner can still retry it (and it fails
            # the same way, contained again).
            assert await manager.retry_device("dev1") is False
            assert manager.get_device_info("dev0").status is S.IDLE  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()
    (failed,) = [e for e in events if e.kind is EventKind.FAILED]
    assert failed.record.step == (Trigger.INTERNAL_ERROR, "connecting", "failed")
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "dev1" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # with its traceback


async def test_an_illegal_event_is_contained_too(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = DeviceLifecycle.heartbeat_seen

    def broken(self: DeviceLifecycle, at: Any = None) -> None:
        if self.device_id == "dev2":
            raise IllegalTransition(self.device_id, self.state, "made_up", "an injected bug")
        original(self, at)

    monkeypatch.setattr(DeviceLifecycle, "heartbeat_seen", broken)
    async with memory_network() as net, trio.open_nursery() as nursery:
        await fleet(net, nursery)
        async with manager_on(net, strict=False, timing=Timing(heartbeat_interval=10.0)) as manager:
            for device_id in IDS:
                manager.add_device(AgentProfile(device_id, url_of(device_id)))
            await manager.wait_for("dev2", S.FAILED)  # at its first heartbeat ack
            await trio.sleep(60)
            statuses = {d: p.status for d, p in manager.get_all_devices().items()}
            assert statuses == {"dev0": S.IDLE, "dev1": S.IDLE, "dev2": S.FAILED}
            reason = manager.failure_reason("dev2") or ""
            assert reason.startswith("internal error: IllegalTransition:")
        nursery.cancel_scope.cancel()


async def test_strict_mode_fails_loudly(autojump_clock: Any) -> None:
    """The test suite runs its managers strict (``manager_on`` passes strict=True): the same
    bug is re-raised."""
    with pytest.raises(BaseExceptionGroup) as info:
        async with memory_network() as net, trio.open_nursery() as nursery:
            await fleet(net, nursery)
            async with manager_on(Faulty(net, "dev1")) as manager:
                for device_id in IDS:
                    manager.add_device(AgentProfile(device_id, url_of(device_id)))
                await trio.sleep(1000)
    assert info.group_contains(RuntimeError, match="injected bug", depth=None)
