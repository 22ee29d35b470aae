"""Recovery after a loss, flapping, refused keys and Retry-After, under MockClock.

The rules are the table's (stellate/fsm/table.py); these tests run them through the real
manager, runner, protocol and AgentServer over the in-memory network, and name the instants.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from manager_support import URL, Agent, Recorder, manager_on, memory_network, serve_on, site

from stellate.adapters.memory import MemoryConnection, MemoryNetwork
from stellate.fsm import AgentProfile, DeviceStatus, Timing, Trigger
from stellate.manager import EventKind
from stellate.protocol import (
    ClientMessageType,
    ConnectError,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
    decode_client,
    encode_server,
)
from stellate.protocol.transport import Connection, ConnectionClosed
from stellate.server import AgentServer

S = DeviceStatus


async def restart(net: MemoryNetwork, server: AgentServer, down_for: float) -> AgentServer:
    """Every socket closed (1001), down for a while, then a fresh server (empty registry)."""
    net.unlisten(URL)
    await server.shutdown()
    await trio.sleep(down_for)
    fresh = AgentServer()
    serve_on(net, fresh)
    return fresh


# -- item 2: a routine server restart never strands a fleet -----------------------------------


@pytest.mark.parametrize(("window", "back"), [(60.0, True), (0.0, False)])
async def test_server_restart_with_max_retries_2(
    autojump_clock: Any, window: float, back: bool
) -> None:
    """Three devices with max_retries=2; the server restarts. Two agents re-join 20 s later,
    the third never does. With a recovery window the two are IDLE again and the third fails
    naming the window; without one (the reference's rule) reconnects spend max_retries and
    all three are FAILED before the agents are back."""
    recorder = Recorder()
    async with site() as (net, nursery, server):
        agents = [Agent(nursery, net, f"dev{i}") for i in range(3)]
        for i, agent in enumerate(agents):
            await agent.start(seed=i)
        async with manager_on(net, timing=Timing(recovery_window=window)) as manager:
            await nursery.start(recorder.run, manager)
            for agent in agents:
                assert await manager.register_device(agent.device_id, URL, max_retries=2)
            for agent in agents:
                agent.stop()  # their sockets go with the server; they come back later
            lost_at = trio.current_time()
            await restart(net, server, down_for=5.0)
            await trio.sleep(15.0)
            for i, agent in enumerate(agents[:2]):
                await agent.start(seed=10 + i)
            final = await manager.wait_settled()
            await trio.sleep(window + 60.0)  # nothing changes afterwards
            later = manager.get_all_devices()
            assert {d: p.status for d, p in later.items()} == {
                d: p.status for d, p in final.items()
            }
    statuses = {d: p.status for d, p in final.items()}
    if back:
        assert statuses == {"dev0": S.IDLE, "dev1": S.IDLE, "dev2": S.FAILED}
        (failed,) = [e for _, e in recorder.events if e.kind is EventKind.FAILED]
        assert failed.device_id == "dev2" and failed.reason is not None
        assert failed.reason.startswith("recovery window of 60s passed without reconnecting")
        # attempts in the window spent no max_retries
        assert final["dev2"].connection_attempts > 2
        (failed_at,) = recorder.times("dev2", EventKind.FAILED)
        assert failed_at - lost_at == pytest.approx(window, abs=0.01)
    else:
        assert set(statuses.values()) == {S.FAILED}
        for device_id, profile in final.items():
            assert profile.connection_attempts == 2, device_id
            assert max(recorder.times(device_id, EventKind.FAILED)) - lost_at < 20.0


@pytest.mark.parametrize(("returns_after", "status"), [(55.0, S.IDLE), (65.0, S.FAILED)])
async def test_both_sides_of_the_recovery_window(
    autojump_clock: Any, returns_after: float, status: S
) -> None:
    """The agent leaves with the device IDLE and comes back 55 s / 65 s later: inside a 60 s
    window the device is IDLE again, past it the device has already FAILED (and stays so)."""
    async with site() as (net, nursery, _):
        agent = Agent(nursery, net, "dev")
        await agent.start()
        async with manager_on(
            net, timing=Timing(recovery_window=60.0, reconnect_delay=1.0)
        ) as manager:
            assert await manager.register_device("dev", URL, max_retries=1)
            agent.stop()
            await manager.wait_for("dev", S.BACKOFF)
            await trio.sleep(returns_after)
            await agent.start(seed=2)
            await trio.sleep(30.0)
            assert manager.get_device_info("dev").status is status  # type: ignore[union-attr]


async def test_absent_target_is_retried_on_a_short_flat_schedule(autojump_clock: Any) -> None:
    """While the server answers but does not know the target yet, waits stay short (at most
    rejoin_delay) and do not climb, so the device is IDLE within seconds of its agent."""
    recorder = Recorder()
    async with site() as (net, nursery, _):
        agent = Agent(nursery, net, "dev")
        await agent.start()
        timing = Timing(reconnect_delay=5.0, backoff_cap=60.0, recovery_window=300.0)
        async with manager_on(net, timing=timing) as manager:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL, max_retries=1)
            agent.stop()
            await trio.sleep(100.0)  # dozens of "not connected" answers
            await agent.start(seed=3)
            agent_back = trio.current_time()
            await manager.wait_for("dev", S.IDLE)
            assert trio.current_time() - agent_back <= timing.rejoin_delay
    connects = recorder.entered("dev", "connecting")
    waits = [b - a for a, b in itertools.pairwise(connects)]
    assert len(waits) > 30
    assert max(waits[1:]) <= timing.rejoin_delay  # after the first (exponential) wait: flat
    assert EventKind.FAILED not in recorder.kinds("dev")


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        # recovering: the loss's wait from reconnect_delay (5), then 1, 2, 4 from rejoin_delay
        (300.0, [5.0, 1.0, 2.0, 4.0]),
        # no window (the reference's rule): the whole schedule climbs from reconnect_delay
        (0.0, [5.0, 5.0, 10.0, 20.0]),
    ],
)
async def test_a_server_restart_is_retried_on_the_short_schedule(
    autojump_clock: Any, window: float, expected: list[float]
) -> None:
    """The server is down for 45 s after the loss: attempts that meet it down climb from the
    shorter step (min(rejoin_delay, reconnect_delay)) while recovering, so the device is not
    left sitting out the schedule's long steps once its server is back (the restart storm's
    tail). No jitter here, to name each wait exactly."""
    timing = Timing(
        reconnect_delay=5.0,
        rejoin_delay=1.0,
        backoff_cap=60.0,
        jitter_floor=1.0,
        recovery_window=window,
        stability_window=0.0,
    )
    recorder = Recorder()
    async with site() as (net, nursery, server):
        agent = Agent(nursery, net, "dev")
        await agent.start()
        async with manager_on(net, timing=timing) as manager:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL, max_retries=10)
            agent.stop()
            (lost_at,) = [trio.current_time()]
            await restart(net, server, down_for=45.0)
            nursery.cancel_scope.cancel()
    connects = [lost_at] + [t for t in recorder.entered("dev", "connecting") if t > lost_at]
    waits = [b - a for a, b in itertools.pairwise(connects)]
    assert waits[: len(expected)] == pytest.approx(expected)


# -- item 3: backoff that remembers flapping ----------------------------------------------------


def flapping_server(net: MemoryNetwork, stays: list[float | None]) -> list[float]:
    """A server that confirms, answers telemetry and heartbeats, then drops connection n after
    ``stays[n]`` seconds (None: never). Returns the list it appends each accept time to."""
    accepted: list[float] = []

    async def handler(conn: Connection, _info: Any) -> None:
        stay = stays[len(accepted)] if len(accepted) < len(stays) else None
        accepted.append(trio.current_time())
        assert isinstance(conn, MemoryConnection)
        with trio.move_on_after(stay if stay is not None else float("inf")):
            try:
                while True:
                    message = decode_client(str(await conn.receive()))
                    if message.type is ClientMessageType.DEVICE_INFO_REQUEST:
                        reply = ServerMessage(
                            type=ServerMessageType.DEVICE_INFO_RESPONSE,
                            status=TaskStatus.OK,
                            response_id=message.request_id,
                            result={"platform": "linux"},
                        )
                    else:
                        reply = ServerMessage(
                            type=ServerMessageType.HEARTBEAT, status=TaskStatus.OK
                        )
                    await conn.send(encode_server(reply))
            except ConnectionClosed:
                return
        conn.abort()

    net.listen(URL, handler)
    return accepted


async def waits_after_losses(
    timing: Timing, stays: list[float | None]
) -> tuple[Recorder, list[float]]:
    """Run one device against ``flapping_server(stays)`` until it is IDLE on the connection
    after the last drop; return its events and the wait after each loss."""
    recorder = Recorder()
    async with memory_network() as net:
        accepted = flapping_server(net, stays)
        async with manager_on(net, timing=timing) as manager, trio.open_nursery() as nursery:
            await nursery.start(recorder.run, manager)
            manager.add_device(AgentProfile("dev", URL))
            while len(accepted) <= len(stays):
                await manager.wait_for("dev", S.BACKOFF)
                await manager.wait_for("dev", S.IDLE)
            nursery.cancel_scope.cancel()
    lost = recorder.times("dev", EventKind.CONNECTION_LOST)
    connects = recorder.entered("dev", "connecting")
    return recorder, [min(c for c in connects if c > at) - at for at in lost]


async def test_flaps_keep_the_backoff_climbing_until_a_stable_spell(autojump_clock: Any) -> None:
    """Four connections that each drop a second after activation: the reconnect delay climbs
    1, 2, 4, 8 s (no jitter here, to name it exactly); a connection that then stays up past
    the stability window brings it back to reconnect_delay. connection_attempts stays the
    Galaxy's: 0 at IDLE and right after each loss."""
    timing = Timing(
        reconnect_delay=1.0,
        backoff_cap=60.0,
        jitter_floor=1.0,
        stability_window=30.0,
        heartbeat_interval=10.0,
    )
    recorder, waits = await waits_after_losses(timing, [1.0, 1.0, 1.0, 1.0, 100.0])
    assert waits == pytest.approx([1.0, 2.0, 4.0, 8.0, 1.0])
    for _, event in recorder.events:
        if event.kind in (EventKind.READY, EventKind.CONNECTION_LOST):
            assert event.profile.connection_attempts == 0


async def test_flaps_climb_to_the_cap_and_stay_jittered(autojump_clock: Any) -> None:
    timing = Timing(reconnect_delay=1.0, backoff_cap=8.0, jitter_floor=0.5, stability_window=30.0)
    _recorder, waits = await waits_after_losses(timing, [0.5] * 8)
    for n, wait in enumerate(waits, start=1):
        ceiling = min(8.0, 2.0 ** (n - 1))
        assert 0.5 * ceiling <= wait <= ceiling
    assert max(waits) > 4.0  # it did climb


# -- a refused key is final; Retry-After is honoured --------------------------------------------


async def test_a_refused_key_at_the_handshake_fails_at_once(autojump_clock: Any) -> None:
    recorder = Recorder()
    async with memory_network() as net:
        net.listen(URL, lambda conn, info: AgentServer().handle_connection(conn), api_key="k")
        async with manager_on(net, api_key="wrong") as manager, trio.open_nursery() as nursery:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL, max_retries=5) is False
            await trio.sleep(1000.0)  # never retried
            p = manager.get_device_info("dev")
            assert p is not None and p.status is S.FAILED and p.connection_attempts == 1
            # The reason names where the key came from, never the key.
            assert manager.failure_reason("dev") == (
                "server rejected the API key (the manager's api_key)"
            )
            assert net.connections == 0
            nursery.cancel_scope.cancel()
    assert recorder.steps("dev")[-1] == (Trigger.AUTH_REJECTED, "connecting", "failed")


async def test_a_policy_close_before_registration_is_a_refused_key(autojump_clock: Any) -> None:
    async def refuse(conn: Connection, _info: Any) -> None:
        await conn.receive()  # the REGISTER
        await conn.aclose(1008, "invalid API key")

    async with memory_network() as net:
        net.listen(URL, refuse)
        async with manager_on(net) as manager:
            assert await manager.register_device("dev", URL, max_retries=5) is False
            assert manager.failure_reason("dev") == "server rejected the API key (no key was given)"
            assert manager.get_device_info("dev").connection_attempts == 1  # type: ignore[union-attr]


class RetryAfterOnce:
    """A connector whose first connect is refused with 503 + Retry-After."""

    def __init__(self, net: MemoryNetwork, retry_after: float) -> None:
        self._net, self._retry_after, self.calls = net, retry_after, 0

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[Connection]:
        self.calls += 1
        if self.calls == 1:
            raise ConnectError("HTTP 503", status=503, retry_after=self._retry_after)
        async with self._net.open(url) as conn:
            yield conn


async def test_retry_after_is_a_lower_bound_on_the_next_wait(autojump_clock: Any) -> None:
    recorder = Recorder()
    async with site("dev") as (net, nursery, _):
        connector = RetryAfterOnce(net, retry_after=30.0)
        async with manager_on(connector, timing=Timing(reconnect_delay=1.0)) as manager:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL) is True
    first, second = recorder.entered("dev", "connecting")[:2]
    assert second - first >= 30.0
    (backoff,) = [e for _, e in recorder.events if e.record.dest is S.BACKOFF]
    assert backoff.reason == "HTTP 503"


# -- a way back from FAILED: no device stranded in a long-running manager ----------------------


@pytest.mark.parametrize("retry_failed_after", [300.0, None])
async def test_an_agent_away_longer_than_the_window_comes_back(
    autojump_clock: Any, retry_failed_after: float | None
) -> None:
    """The agent leaves for 3 minutes, past the 120 s recovery window: the device FAILS at the
    window's end. With the default ``retry_failed_after`` (300 s) it starts a fresh run by
    itself 300 s after giving up and is IDLE again, its agent back since; with null it stays
    FAILED (the flow's manual intervention) until the owner retries it."""
    recorder = Recorder()
    timing = Timing(retry_failed_after=retry_failed_after)
    assert timing.recovery_window == 120.0  # the defaults, as an operator has them
    async with site() as (net, nursery, _):
        agent = Agent(nursery, net, "dev")
        await agent.start()
        async with manager_on(net, timing=timing) as manager:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL, max_retries=5)
            agent.stop()
            lost_at = trio.current_time()
            await trio.sleep(180.0)
            await agent.start(seed=2)
            (failed_at,) = recorder.times("dev", EventKind.FAILED)
            assert failed_at - lost_at == pytest.approx(120.0, abs=0.01)
            (failed,) = [e for _, e in recorder.events if e.kind is EventKind.FAILED]
            assert failed.retry_in == retry_failed_after  # what a watcher is told
            await trio.sleep(460.0 - 180.0)  # past 120 + 300 s, and its fresh run
            profile = manager.get_device_info("dev")
            assert profile is not None
            if retry_failed_after is None:
                assert profile.status is S.FAILED
                assert await manager.retry_device("dev")  # the owner's way back
            else:
                assert profile.status is S.IDLE
                (again,) = [t for t, e in recorder.events if e.record.source is S.FAILED]
                assert again - failed_at == pytest.approx(retry_failed_after, abs=0.01)
                steps = recorder.steps("dev")
                gave_up = next(i for i, step in enumerate(steps) if step[2] == "failed")
                assert steps[gave_up + 1] == (Trigger.TIMED_OUT, "failed", "connecting")
            assert manager.get_device_info("dev").status is S.IDLE  # type: ignore[union-attr]
