"""The manager under MockClock over the in-memory network: exact timing, no real time.

The server is the real ``AgentServer`` and the devices real ``DeviceAgent``s; only the sockets
are in memory. ``autojump_clock`` jumps to the next deadline, so a 90 s lease or a 30 s connect
timeout costs nothing and the assertions can name exact instants.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from manager_support import (
    PATIENT_SERVER,
    URL,
    Agent,
    Recorder,
    Silenceable,
    manager_on,
    memory_network,
    recording,
    serve_on,
    site,
    start_agent,
)
from seed_example import (
    SEED_CAPABILITIES,
    SEED_DEVICE,
    SEED_FINAL_SYSTEM_INFO,
    SEED_SYSTEM_INFO,
)

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import AgentProfile, DeviceStatus, Trigger
from stellate.manager import ConstellationDeviceManager, DeviceFailed, EventKind, UnknownDevice
from stellate.manager.runner import DeviceRunner
from stellate.protocol import (
    ClientMessageType,
    ClientType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
    decode_client,
    encode_server,
)
from stellate.protocol.transport import Connection, ConnectionClosed
from stellate.server import AgentServer

S = DeviceStatus
BACKOFF_FLOOR = 0.1  # RetryPolicy.jitter_floor


def profile(device_id: str = "dev", url: str = URL, **kwargs: Any) -> AgentProfile:
    return AgentProfile(device_id=device_id, server_url=url, **kwargs)


# -- the example scenario --------------------------------------------------------------------


async def test_seed_scenario_ends_with_the_seeds_final_profile(autojump_clock: Any) -> None:
    async with site() as (net, nursery, _):
        await start_agent(nursery, URL, "windowsagent", connector=net, system_info=SEED_SYSTEM_INFO)
        async with manager_on(net) as manager:
            assert await manager.register_device(server_url=URL, **SEED_DEVICE) is True
            p = manager.get_device_info("windowsagent")
            assert p is not None
            assert p.status is S.IDLE
            assert p.os == "windows"
            assert list(p.capabilities) == SEED_CAPABILITIES
            assert p.metadata["system_info"] == SEED_FINAL_SYSTEM_INFO
            assert list(p.metadata["system_info"]) == list(SEED_FINAL_SYSTEM_INFO)  # key order
            for key, value in SEED_DEVICE["metadata"].items():
                assert p.metadata[key] == value  # configured metadata kept
            assert p.connection_attempts == 0
            assert p.max_retries == 5
            assert p.current_task_id is None
            assert p.last_heartbeat is not None
            assert manager.get_all_devices() == {"windowsagent": p}


async def test_phases_in_order_and_event_kinds(autojump_clock: Any) -> None:
    recorder = Recorder()
    async with site("dev") as (net, nursery, _), manager_on(net) as manager:
        await nursery.start(recorder.run, manager)
        manager.add_device(profile())
        await manager.wait_for("dev", S.IDLE)
    assert recorder.steps("dev")[:5] == [
        (Trigger.CONNECT, "disconnected", "connecting"),
        (Trigger.CONNECTION_OPENED, "connecting", "connected"),
        (Trigger.REGISTER_SENT, "connected", "registering"),
        (Trigger.REGISTRATION_ANSWERED, "registering", "telemetry"),
        (Trigger.TELEMETRY_RECEIVED, "telemetry", "idle"),
    ]
    assert recorder.kinds("dev")[:6] == [EventKind.PHASE] * 4 + [
        EventKind.TELEMETRY_MERGED,
        EventKind.READY,
    ]


# -- phase 2: connection failures and retries -------------------------------------------------


async def test_unreachable_server_exactly_max_retries_then_failed(autojump_clock: Any) -> None:
    recorder = Recorder()
    # Nothing listens on the memory network: every connect is refused.
    async with (
        memory_network() as net,
        manager_on(net, timing=Timing(reconnect_delay=1.0, backoff_cap=8.0)) as m,
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run, m)
            ok = await m.register_device("dev", URL, max_retries=4)
            nursery.cancel_scope.cancel()
        assert ok is False
        p = m.get_device_info("dev")
        assert p is not None and p.status is S.FAILED
        assert p.connection_attempts == 4
        reason = m.failure_reason("dev")
        assert reason is not None and "gave up after 4 attempts" in reason
        assert "refused" in reason
        # FAILED stays FAILED: no further attempt however long we wait.
        await trio.sleep(10_000)
        assert m.get_device_info("dev") == p
    connects = recorder.entered("dev", "connecting")
    assert len(connects) == 4
    # Jittered exponential backoff between attempts: wait n in [0.1·d, d], d = min(8, 2**(n-1)).
    waits = [b - a for a, b in itertools.pairwise(connects)]
    for n, wait in enumerate(waits, start=1):
        ceiling = min(8.0, 1.0 * 2 ** (n - 1))
        assert BACKOFF_FLOOR * ceiling <= wait <= ceiling


async def test_backoff_is_capped(autojump_clock: Any) -> None:
    recorder = Recorder()
    async with (
        memory_network() as net,
        manager_on(net, timing=Timing(reconnect_delay=1.0, backoff_cap=3.0)) as manager,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(recorder.run, manager)
        assert await manager.register_device("dev", URL, max_retries=8) is False
        nursery.cancel_scope.cancel()
    connects = recorder.entered("dev", "connecting")
    waits = [b - a for a, b in itertools.pairwise(connects)]
    assert len(waits) == 7
    assert all(wait <= 3.0 for wait in waits)
    assert max(waits) > 1.0  # it did grow


async def test_max_retries_none_retries_until_the_server_appears(autojump_clock: Any) -> None:
    async with memory_network() as net, trio.open_nursery() as nursery:
        async with manager_on(net, timing=Timing(reconnect_delay=1.0, backoff_cap=2.0)) as manager:
            manager.add_device(profile(max_retries=None))
            await trio.sleep(500)  # ~250+ refused attempts, never FAILED
            p = manager.get_device_info("dev")
            assert p is not None and p.status in (S.BACKOFF, S.CONNECTING)
            assert p.connection_attempts > 100
            serve_on(net, AgentServer())
            await start_agent(nursery, URL, "dev", connector=net)
            final = await manager.wait_for("dev")
            assert final.status is S.IDLE and final.connection_attempts == 0
        nursery.cancel_scope.cancel()


async def test_connect_timeout_is_30_seconds(autojump_clock: Any) -> None:
    async with memory_network() as net:
        net.hang(URL)  # a black-holed address: the handshake never answers
        async with manager_on(net) as manager, recording(manager) as recorder:
            assert await manager.register_device("dev", URL, max_retries=1) is False
    (connecting,) = recorder.entered("dev", "connecting")
    (failed,) = recorder.entered("dev", "failed")
    assert failed - connecting == pytest.approx(30.0)
    assert recorder.steps("dev")[-1] == (Trigger.TIMED_OUT, "connecting", "failed")


# -- phase 3: rejections ----------------------------------------------------------------------


@pytest.mark.parametrize("retry_failed_after", [None, 300.0])
async def test_target_not_connected_fails_after_one_attempt_no_retry(
    autojump_clock: Any, retry_failed_after: float | None
) -> None:
    """The rejection is final for the run: no second attempt. With ``retry_failed_after``
    null nothing else ever happens; with the default, a fresh run starts 300 s later (and
    meets the same rejection)."""
    async with memory_network() as net:
        serve_on(net, AgentServer())  # a server, but no device agent "dev" on it
        timing = Timing(retry_failed_after=retry_failed_after)
        async with manager_on(net, timing=timing) as manager:
            assert await manager.register_device("dev", URL, max_retries=5) is False
            p = manager.get_device_info("dev")
            assert p is not None and p.status is S.FAILED and p.connection_attempts == 1
            assert manager.failure_reason("dev") == (
                "registration rejected: Target device 'dev' is not connected"
            )
            if retry_failed_after is None:
                await trio.sleep(10_000)
                assert net.connections == 1  # never retried
                assert manager.get_device_info("dev") == p
            else:
                await trio.sleep(retry_failed_after - 0.01)
                assert net.connections == 1  # not retried within its run
                await trio.sleep(0.02)
                assert net.connections == 2  # a fresh run, refused again at once
                assert manager.get_device_info("dev").status is S.FAILED  # type: ignore[union-attr]


async def test_duplicate_client_id_is_rejected_without_retry(autojump_clock: Any) -> None:
    async with (
        site("dev") as (net, _nursery, _),
        manager_on(net) as first,
        manager_on(net) as second,  # same task_name
    ):
        assert await first.register_device("dev", URL) is True
        assert await second.register_device("dev", URL) is False
        reason = second.failure_reason("dev")
        assert reason is not None and "already registered" in reason
        # The likely cause, said where the operator reads the failure.
        assert reason.endswith(
            "(another manager may be using this task_name: give each manager its own "
            "manager.task_name)"
        )
        assert second.get_device_info("dev").connection_attempts == 1  # type: ignore[union-attr]
        assert first.get_device_info("dev").status is S.IDLE  # type: ignore[union-attr]


async def test_failed_device_can_be_retried_explicitly(autojump_clock: Any) -> None:
    async with site() as (net, nursery, _), manager_on(net) as manager:
        assert await manager.register_device("dev", URL) is False  # agent not there yet
        await start_agent(nursery, URL, "dev", connector=net)
        assert await manager.retry_device("dev") is True
        p = manager.get_device_info("dev")
        assert p is not None and p.status is S.IDLE and p.connection_attempts == 0


async def test_waiting_for_idle_on_a_failed_device_raises_instead_of_hanging(
    autojump_clock: Any,
) -> None:
    """FAILED is left only by a retry: ``wait_for(IDLE)`` used to block forever there."""
    async with memory_network() as net, trio.open_nursery() as nursery:
        serve_on(net, AgentServer())
        async with manager_on(net) as manager:
            manager.add_device(AgentProfile("dev", URL, max_retries=2))  # no agent: rejected
            with pytest.raises(DeviceFailed) as failed:  # failing while waited for
                await manager.wait_for("dev", S.IDLE)
            assert failed.value.device_id == "dev" and failed.value.profile.status is S.FAILED
            assert failed.value.reason == manager.failure_reason("dev")
            assert str(failed.value) == (
                "device 'dev' failed while waited for: registration rejected: Target device "
                "'dev' is not connected"
            )
            with pytest.raises(DeviceFailed):  # already FAILED when the wait starts
                await manager.wait_for("dev", S.IDLE, S.BUSY)
            # Waiting for either outcome, or for FAILED itself, returns.
            assert (await manager.wait_for("dev")).status is S.FAILED
            assert (await manager.wait_for("dev", S.FAILED)).status is S.FAILED
            # Disconnecting a FAILED device waits for DISCONNECTED without tripping on FAILED.
            await manager.disconnect_device("dev")
            assert manager.get_device_info("dev").status is S.DISCONNECTED  # type: ignore[union-attr]
            await start_agent(nursery, URL, "dev", connector=net)
            assert await manager.connect_device("dev") is True
        nursery.cancel_scope.cancel()


async def test_retry_that_fails_again_at_once_returns_false(autojump_clock: Any) -> None:
    # A retry whose attempt fails within the same scheduling batch must not leave
    # connect_device waiting forever for the device to "leave FAILED".
    async with memory_network() as net, manager_on(net) as manager:
        assert await manager.register_device("dev", URL, max_retries=1) is False
        for _ in range(20):
            with trio.fail_after(60):
                assert await manager.retry_device("dev") is False
        assert manager.get_device_info("dev").connection_attempts == 1  # type: ignore[union-attr]


# -- phase 4: telemetry -----------------------------------------------------------------------


def serve_fake(
    net: MemoryNetwork, frames: list[dict[str, Any]], *, result: Any, answer_info: bool = True
) -> Callable[[Connection, Any], Awaitable[None]]:
    """A hand-written AIP server: confirms the registration, acks heartbeats, answers
    ``device_info_request`` with ``result`` (or never), and records every frame received.
    It listens on ``URL``; its handler is returned for wrapping."""

    async def handler(conn: Connection, _info: Any) -> None:
        try:
            while True:
                message = decode_client(str(await conn.receive()))
                frames.append({"type": message.type, "client_type": message.client_type,
                               "t": trio.current_time(), "client_id": message.client_id,
                               "target_id": message.target_id})  # fmt: skip
                if message.type is ClientMessageType.DEVICE_INFO_REQUEST:
                    if not answer_info:
                        continue
                    reply = ServerMessage(
                        type=ServerMessageType.DEVICE_INFO_RESPONSE,
                        status=TaskStatus.OK,
                        response_id=message.request_id,
                        result=result,
                    )
                else:  # register and heartbeats: the confirmation is a heartbeat frame
                    reply = ServerMessage(type=ServerMessageType.HEARTBEAT, status=TaskStatus.OK)
                await conn.send(encode_server(reply))
        except ConnectionClosed:
            pass

    net.listen(URL, handler)
    return handler


async def test_telemetry_not_found_degrades_gracefully(autojump_clock: Any) -> None:
    recorder = Recorder()
    frames: list[dict[str, Any]] = []
    async with memory_network() as net:
        serve_fake(net, frames, result={"error": "Device dev not found or no system info"})
        async with manager_on(net) as manager:
            await trio.lowlevel.checkpoint()
            async with trio.open_nursery() as nursery:
                await nursery.start(recorder.run, manager)
                assert await manager.register_device("dev", URL, os="linux", capabilities=["a"])
                nursery.cancel_scope.cancel()
            p = manager.get_device_info("dev")
            assert p is not None and p.status is S.IDLE
            assert p.os == "linux" and p.capabilities == ("a",) and p.metadata == {}
    assert EventKind.TELEMETRY_MERGED not in recorder.kinds("dev")
    assert recorder.kinds("dev")[-1] is EventKind.READY


async def test_telemetry_timeout_activates_after_10_seconds(autojump_clock: Any) -> None:
    frames: list[dict[str, Any]] = []
    async with memory_network() as net:
        serve_fake(net, frames, result=None, answer_info=False)
        async with manager_on(net) as manager, recording(manager) as recorder:
            assert await manager.register_device("dev", URL) is True
    (telemetry,) = recorder.entered("dev", "telemetry")
    (idle,) = recorder.entered("dev", "idle")
    assert idle - telemetry == pytest.approx(10.0)
    assert recorder.steps("dev")[-1] == (Trigger.TIMED_OUT, "telemetry", "idle")


async def test_every_frame_names_the_constellation(autojump_clock: Any) -> None:
    frames: list[dict[str, Any]] = []
    async with memory_network() as net:
        serve_fake(net, frames, result=dict(SEED_SYSTEM_INFO))
        async with manager_on(
            net, task_name="office", timing=Timing(heartbeat_interval=30.0)
        ) as manager:
            assert await manager.register_device("dev", URL) is True
            await trio.sleep(95)
    types = [f["type"] for f in frames]
    assert (
        types
        == [ClientMessageType.REGISTER, ClientMessageType.DEVICE_INFO_REQUEST]
        + [ClientMessageType.HEARTBEAT] * 3
    )
    assert all(f["client_type"] is ClientType.CONSTELLATION for f in frames)
    assert all(f["client_id"] == "office@dev" for f in frames)
    assert frames[0]["target_id"] == "dev"
    beats = [f["t"] for f in frames[2:]]
    assert [b - a for a, b in itertools.pairwise(beats)] == [30.0, 30.0]


# -- after activation: loss, lease, recovery --------------------------------------------------


@asynccontextmanager
async def registered_behind_silenceable_sockets(
    **manager_options: Any,
) -> AsyncIterator[tuple[ConstellationDeviceManager, list[Silenceable], Recorder]]:
    """ "dev" registered by a manager whose sockets the test can silence (the server's own
    lease is far away, so only the manager's can act), its events recorded from the start."""
    sockets: list[Silenceable] = []
    recorder = Recorder()
    async with (
        site("dev", server=AgentServer(policy=PATIENT_SERVER), sockets=sockets) as (net, tasks, _),
        manager_on(net, **manager_options) as manager,
    ):
        # In the scene's nursery, not the manager's block: the recorder reads on until the
        # manager has closed its stream, so no event is lost to the end of the block.
        await tasks.start(recorder.run, manager)
        assert await manager.register_device("dev", URL) is True
        yield manager, sockets, recorder


async def test_silent_server_is_lost_within_the_lease_then_reconnects(autojump_clock: Any) -> None:
    async with registered_behind_silenceable_sockets(
        timing=Timing(heartbeat_interval=30.0, miss_limit=3)
    ) as (
        manager,
        sockets,
        recorder,
    ):
        await trio.sleep(100)  # three heartbeats answered
        silenced_at = trio.current_time()
        constellation = sockets[-1]
        constellation.silent = True
        await manager.wait_for("dev", S.BACKOFF)
        lost_at = trio.current_time()
        assert constellation.closed  # our side closed the dead socket
        final = await manager.wait_for("dev", S.IDLE)
        assert final.connection_attempts == 0
    # The first unanswered heartbeat leaves within one interval of the silence; the device is
    # lost miss_limit intervals after it: between 3 and 4 intervals after the silence began.
    assert silenced_at + 90.0 <= lost_at <= silenced_at + 120.0
    (lost,) = recorder.times("dev", EventKind.CONNECTION_LOST)
    assert lost == lost_at
    (event,) = [e for _, e in recorder.events if e.kind is EventKind.CONNECTION_LOST]
    assert event.reason is not None and "heartbeat lease expired" in event.reason
    assert len(recorder.times("dev", EventKind.READY)) == 2


async def test_lease_counts_unanswered_heartbeats(autojump_clock: Any) -> None:
    # Silent from the moment of activation: the first heartbeat goes out one interval later,
    # and the device is lost once miss_limit heartbeats in a row went unanswered, i.e.
    # interval × miss_limit after that first one: 10 + 10 × 4 = 50 s after activation.
    async with registered_behind_silenceable_sockets(
        timing=Timing(heartbeat_interval=10.0, miss_limit=4)
    ) as (
        manager,
        sockets,
        recorder,
    ):
        sockets[-1].silent = True
        await manager.wait_for("dev", S.BACKOFF)
    (ready, *_) = recorder.times("dev", EventKind.READY)
    (lost,) = recorder.times("dev", EventKind.CONNECTION_LOST)
    assert lost - ready == pytest.approx(50.0)


async def test_recovery_treats_absent_target_as_transient(autojump_clock: Any) -> None:
    # The device agent leaves while the device is IDLE; on reconnecting, the server says
    # "target not connected". That is part of the loss being recovered from, not a final
    # rejection: back off (on the short rejoin schedule) and retry until the agent is back.
    recorder = Recorder()
    async with site() as (net, nursery, _):
        agent = Agent(nursery, net, "dev")
        await agent.start()
        async with manager_on(net, timing=Timing(reconnect_delay=1.0, backoff_cap=4.0)) as manager:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL, max_retries=100) is True
            agent.stop()  # the device goes away
            await manager.wait_for("dev", S.BACKOFF)
            await trio.sleep(20)  # several refused re-registrations
            p = manager.get_device_info("dev")
            assert p is not None and p.status in (S.BACKOFF, S.CONNECTING)
            await start_agent(nursery, URL, "dev", connector=net, seed=2)
            final = await manager.wait_for("dev", S.IDLE, S.FAILED)
            assert final.status is S.IDLE
    lost = [e for _, e in recorder.events if e.kind is EventKind.CONNECTION_LOST]
    assert len(lost) == 1
    absent = [
        (t, e)
        for t, e in recorder.events
        if e.record.step == (Trigger.REGISTRATION_ANSWERED, "registering", "backoff")
    ]
    assert absent, "expected at least one 'not connected' answer to back off"
    assert all("is not connected" in (e.reason or "") for _, e in absent)
    # The rejoin schedule does not climb: every such wait is at most rejoin_delay.
    connects = recorder.entered("dev", "connecting")
    for at, _ in absent:
        nxt = min(c for c in connects if c > at)
        assert nxt - at <= manager.timing.rejoin_delay
    assert EventKind.FAILED not in recorder.kinds("dev")


async def test_rejection_after_a_failed_connection_is_transient(autojump_clock: Any) -> None:
    # The first attempt is refused (the server is down); when the server comes up its device
    # agent has not re-joined yet. That "not connected" follows trouble, so it is retried.
    recorder = Recorder()
    async with memory_network() as net, trio.open_nursery() as nursery:
        async with manager_on(net, timing=Timing(reconnect_delay=1.0, backoff_cap=2.0)) as manager:
            await nursery.start(recorder.run, manager)
            manager.add_device(profile(max_retries=10))
            await manager.wait_for("dev", S.BACKOFF)  # refused
            async with manager.events() as events:
                serve_on(net, AgentServer())  # the server is back, the agent not yet
                async for event in events:
                    if "is not connected" in (event.reason or ""):
                        assert event.record.step == (
                            Trigger.REGISTRATION_ANSWERED,
                            "registering",
                            "backoff",
                        )
                        break
            assert manager.get_device_info("dev").status in (S.BACKOFF, S.CONNECTING)  # type: ignore[union-attr]
            # The owner's "connect now" only cuts the wait short: still the same run, so
            # still recovering (a fresh run is only connect from DISCONNECTED, or retry).
            await manager.wait_for("dev", S.BACKOFF)
            async with manager.events() as events:
                nursery.start_soon(manager.connect_device, "dev")
                async for event in events:
                    if event.record.source is S.REGISTERING:  # the answer to the new attempt
                        assert event.record.dest is S.BACKOFF
                        assert "is not connected" in (event.reason or "")
                        break
            await start_agent(nursery, URL, "dev", connector=net)
            final = await manager.wait_for("dev", S.IDLE, S.FAILED)
            assert final.status is S.IDLE
        nursery.cancel_scope.cancel()
    assert EventKind.FAILED not in recorder.kinds("dev")


async def test_without_a_recovery_window_recovery_is_bounded_by_max_retries(
    autojump_clock: Any,
) -> None:
    """recovery_window=0 is the reference's rule: reconnects after a loss spend max_retries."""
    async with site() as (net, nursery, _):
        agent = Agent(nursery, net, "dev")
        await agent.start()
        async with manager_on(
            net, timing=Timing(reconnect_delay=1.0, backoff_cap=2.0, recovery_window=0.0)
        ) as manager:
            assert await manager.register_device("dev", URL, max_retries=3) is True
            agent.stop()
            final = await manager.wait_for("dev", S.FAILED)
            assert final.connection_attempts == 3
            # After the owner's explicit retry, recovery is over: the rejection is final again.
            assert await manager.retry_device("dev") is False
            p = manager.get_device_info("dev")
            assert p is not None and p.connection_attempts == 1
            reason = manager.failure_reason("dev")
            assert reason is not None and reason.startswith("registration rejected")


async def test_server_restart_brings_every_device_back(autojump_clock: Any) -> None:
    recorder = Recorder()
    ids = [f"dev{i}" for i in range(5)]
    async with site() as (net, nursery, server):
        for i, device_id in enumerate(ids):
            await start_agent(nursery, URL, device_id, connector=net, seed=i)
        async with manager_on(net, timing=Timing(reconnect_delay=0.5, backoff_cap=2.0)) as manager:
            await nursery.start(recorder.run, manager)
            for device_id in ids:
                manager.add_device(profile(device_id, max_retries=20))
            await manager.wait_settled()
            async with manager.events() as events:
                # Restart: every socket closed (1001), down for a second, then a fresh server
                # with an empty registry.
                net.unlisten(URL)
                await server.shutdown()
                await trio.sleep(1)
                serve_on(net, AgentServer())
                back: set[str] = set()
                with trio.fail_after(120):
                    async for event in events:
                        if event.kind is EventKind.READY:
                            back.add(event.device_id)
                        if back == set(ids):
                            break
            assert all(p.status is S.IDLE for p in manager.get_all_devices().values())
    for device_id in ids:
        assert EventKind.CONNECTION_LOST in recorder.kinds(device_id)
        assert EventKind.FAILED not in recorder.kinds(device_id)


async def test_an_uninterpretable_frame_fails_one_attempt_not_the_manager(
    autojump_clock: Any,
) -> None:
    # One server answers a REGISTER with JSON nested beyond the recursion limit: that is a
    # bad frame on one socket (a failed attempt, retried), not a crash of every device task.
    frames: list[dict[str, Any]] = []
    async with memory_network() as net:
        normal = serve_fake(net, frames, result=dict(SEED_SYSTEM_INFO))
        poisoned = {"done": False}

        async def poison_first(conn: Connection, info: Any) -> None:
            if poisoned["done"]:
                return await normal(conn, info)
            poisoned["done"] = True
            await conn.receive()  # the REGISTER
            await conn.send("[" * 100_000 + "]" * 100_000)
            await trio.sleep_forever()

        net.listen(URL, poison_first)
        async with (
            manager_on(net, timing=Timing(reconnect_delay=1.0)) as manager,
            recording(manager) as recorder,
        ):
            manager.add_device(profile("other"))
            assert await manager.register_device("dev", URL) is True
            assert (await manager.wait_for("other")).status is S.IDLE
    # A frame the protocol forbids, while registering: the table's protocol_violation row
    # fails the attempt.
    failures = [e for _, e in recorder.events if e.record.trigger == Trigger.PROTOCOL_VIOLATION]
    assert len(failures) == 1
    assert failures[0].reason is not None and "nested more than" in failures[0].reason


# -- the API: commands, waiting, embedding, shutdown ------------------------------------------


async def test_disconnect_while_connecting_does_not_wait_for_the_handshake(
    autojump_clock: Any,
) -> None:
    async with memory_network() as net:
        net.hang(URL)
        async with manager_on(net) as manager:
            manager.add_device(profile())
            await manager.wait_for("dev", S.CONNECTING)
            started = trio.current_time()
            await manager.disconnect_device("dev")
            assert trio.current_time() - started < 1.0  # not the 30 s connect timeout
            assert manager.get_device_info("dev").status is S.DISCONNECTED  # type: ignore[union-attr]


async def test_connect_and_disconnect_device(autojump_clock: Any) -> None:
    async with site("dev") as (net, _nursery, _), manager_on(net) as manager:
        manager.add_device(profile(), auto_connect=False)
        await trio.sleep(100)
        assert manager.get_device_info("dev").status is S.DISCONNECTED  # type: ignore[union-attr]
        assert await manager.connect_device("dev") is True
        assert await manager.connect_device("dev") is True  # already IDLE: just reports
        await manager.disconnect_device("dev")
        assert net.connections == 2  # the agent's and ours
        assert await manager.connect_device("dev") is True


async def test_register_device_without_auto_connect_only_registers(autojump_clock: Any) -> None:
    async with memory_network() as net, manager_on(net) as manager:
        assert await manager.register_device("dev", URL, auto_connect=False) is True
        p = manager.get_device_info("dev")
        assert p is not None and p.status is S.DISCONNECTED and p.connection_attempts == 0
        with pytest.raises(ValueError, match="already registered"):
            await manager.register_device("dev", URL)
        assert net.connections == 0


async def test_remove_device_wakes_waiters_and_closes_the_socket(autojump_clock: Any) -> None:
    async with site("dev") as (net, nursery, server), manager_on(net) as manager:
        assert await manager.register_device("dev", URL) is True
        woken: list[BaseException] = []

        async def waiter() -> None:
            try:
                await manager.wait_for("dev", S.FAILED)
            except UnknownDevice as exc:
                woken.append(exc)

        nursery.start_soon(waiter)
        await trio.sleep(1)
        await manager.remove_device("dev")
        await trio.sleep(1)
        assert len(woken) == 1
        assert manager.get_device_info("dev") is None
        assert [e.client_type for e in server.registry] == [ClientType.DEVICE]
        with pytest.raises(UnknownDevice):
            await manager.connect_device("dev")


async def test_started_in_a_nursery_and_closed_gracefully(autojump_clock: Any) -> None:
    closes: list[int | None] = []
    async with memory_network() as net, trio.open_nursery() as nursery:
        server = AgentServer()

        async def handler(conn: Any, _info: Any) -> None:
            try:
                await server.handle_connection(conn)
            finally:
                closes.append(conn._link.code)

        net.listen(URL, handler)
        for i in range(3):
            await start_agent(nursery, URL, f"dev{i}", connector=net, seed=i)
        manager = await nursery.start(manager_on(net).run)
        assert isinstance(manager, ConstellationDeviceManager) and manager.running
        for i in range(3):
            manager.add_device(profile(f"dev{i}"))
        await manager.wait_settled()
        await manager.aclose()
        assert not manager.running
        await trio.sleep(1)
        constellations = [e for e in server.registry if e.client_type is ClientType.CONSTELLATION]
        assert constellations == []
        assert closes == [1000, 1000, 1000]  # a clean closing handshake for each
        with pytest.raises(RuntimeError):
            manager.add_device(profile("late"))
        with pytest.raises(RuntimeError, match="runs once"):
            await nursery.start(manager.run)
        with pytest.raises(RuntimeError, match="runs once"):
            async with manager:
                pass
        nursery.cancel_scope.cancel()


async def test_a_manager_cancelled_while_it_starts_leaves_no_scope_open() -> None:
    # Cancelled while `async with manager` starts it (a manager crashing at start-up, drawn by
    # the share simulation): its nursery must be exited before the cancellation goes on, or
    # trio's cancel-scope stack is corrupted for the rest of the run.
    manager = ConstellationDeviceManager(strict=True)
    with trio.CancelScope() as scope:
        scope.cancel()
        async with manager:
            pytest.fail("started although cancelled")
    assert scope.cancelled_caught
    await trio.lowlevel.checkpoint()  # trio still runs this task normally


async def test_a_graceful_stop_ends_every_device_task_without_cancelling_it(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Devices that closed (or held no socket) return from their task once the manager stops:
    no cancellation is raised through them (``DeviceRunner.finish``)."""
    ended: list[str] = []
    run = DeviceRunner.run

    async def recorded(self: DeviceRunner) -> None:
        try:
            await run(self)
        except trio.Cancelled:
            ended.append(f"{self.lc.device_id} cancelled")
            raise
        ended.append(f"{self.lc.device_id} returned")

    monkeypatch.setattr(DeviceRunner, "run", recorded)
    async with site("dev0", "dev1") as (net, _nursery, _server):
        async with manager_on(net) as manager:
            manager.add_device(profile("dev0"))
            manager.add_device(profile("dev1"))
            manager.add_device(profile("resting"), auto_connect=False)
            manager.add_device(AgentProfile("lost", "ws://nowhere.invalid/ws", max_retries=1))
            settled = await manager.wait_settled(["dev0", "dev1", "lost"])
            assert [p.status for p in settled.values()] == [S.IDLE, S.IDLE, S.FAILED]
        assert not manager.running
        statuses = {d: p.status for d, p in manager.get_all_devices().items()}
        assert statuses == dict.fromkeys(["dev0", "dev1", "resting", "lost"], S.DISCONNECTED)
        assert sorted(ended) == [f"{d} returned" for d in ("dev0", "dev1", "lost", "resting")]


async def test_cancelling_the_manager_leaves_no_task_and_no_socket(autojump_clock: Any) -> None:
    async with site() as (net, nursery, server):
        for i in range(3):
            await start_agent(nursery, URL, f"dev{i}", connector=net, seed=i)
        with trio.CancelScope() as scope:
            async with manager_on(net) as manager:
                for i in range(3):
                    manager.add_device(profile(f"dev{i}"))
                await manager.wait_settled()
                scope.cancel()
                await trio.sleep_forever()
        assert not manager.running
        await trio.sleep(1)
        assert [e for e in server.registry if e.client_type is ClientType.CONSTELLATION] == []


async def test_open_constellation_adds_the_config(autojump_clock: Any) -> None:
    from stellate.config import loads_config
    from stellate.manager import open_constellation

    config = loads_config(
        f"""
manager: {{task_name: tn, heartbeat_interval: 5.0, reconnect_delay: 1.0}}
devices:
  - {{device_id: a, server_url: "{URL}"}}
  - {{device_id: b, server_url: "{URL}", auto_connect: false}}
"""
    )
    async with (
        site("a") as (net, _nursery, _),
        open_constellation(config, connector=net, strict=True) as manager,
    ):
        assert manager.task_name == "tn"
        assert (await manager.wait_for("a")).status is S.IDLE
        assert manager.get_device_info("b").status is S.DISCONNECTED  # type: ignore[union-attr]


def test_manager_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        ConstellationDeviceManager(timing=Timing(heartbeat_interval=0), strict=True)
    with pytest.raises(ValueError):
        ConstellationDeviceManager(timing=Timing(miss_limit=0), strict=True)


async def test_wait_for_unknown_device_raises() -> None:
    manager = ConstellationDeviceManager(strict=True)
    with pytest.raises(UnknownDevice):
        await manager.wait_for("nope")
    assert math.isfinite(manager.shutdown_timeout)
