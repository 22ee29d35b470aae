"""One connect timeout, end to end: the configured ``connect_timeout`` holds, whatever it is.

A real listener on 127.0.0.1 accepts the TCP connection and never answers the WebSocket
upgrade. The manager's default connector (real trio-websocket) must give up exactly when the
configured timeout says, with ``timed_out``: before, the connector's own 10 s default cut a
longer setting short and ended as ``connection_failed``. Virtual time (``loopback_clock``: it
jumps only once every task has been blocked ``LOOPBACK_AUTOJUMP`` real seconds, so never while
the TCP connect is still in flight in the kernel) lets a 60 s setting take a second.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from manager_support import Recorder

from stellate import Timing
from stellate.fsm import DeviceStatus, Trigger
from stellate.manager import ConstellationDeviceManager

S = DeviceStatus


async def silent_listener(
    accepted: list[trio.SocketStream], *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Accept TCP connections on 127.0.0.1 and never say a word (the upgrade hangs)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    async with listeners[0]:
        while True:
            accepted.append(await listeners[0].accept())


@pytest.mark.parametrize("connect_timeout", [3.0, 60.0])
async def test_the_configured_connect_timeout_holds(
    loopback_clock: trio.testing.MockClock, connect_timeout: float
) -> None:
    recorder = Recorder()
    accepted: list[trio.SocketStream] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(silent_listener, accepted)
        manager = ConstellationDeviceManager(
            timing=Timing(connect_timeout=connect_timeout), strict=True
        )  # real connector
        async with manager:
            await nursery.start(recorder.run, manager)
            ok = await manager.register_device("dev", f"ws://127.0.0.1:{port}/ws", max_retries=1)
            assert ok is False
            reason = manager.failure_reason("dev")
        for stream in accepted:
            await stream.aclose()
        nursery.cancel_scope.cancel()
    assert accepted, "the listener accepted the TCP connection"
    (connecting,) = recorder.entered("dev", "connecting")
    (failed,) = recorder.entered("dev", "failed")
    assert failed - connecting == pytest.approx(connect_timeout, abs=0.01)
    assert [s for s in recorder.steps("dev") if s[2] == "failed"] == [
        (Trigger.TIMED_OUT, "connecting", "failed")
    ]
    assert reason == "gave up after 1 attempts: timed out while connecting"
