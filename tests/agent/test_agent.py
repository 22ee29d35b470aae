"""The device agent: registration, heartbeats, reconnection with jittered backoff, the CLI."""

from __future__ import annotations

import itertools
import logging
import random
import re
from collections.abc import AsyncIterator
from typing import Any

import psutil
import pytest
import trio
import trio.lowlevel
from real_time import HANG_GUARD

from stellate.adapters.listener import LOG_INTERVAL
from stellate.adapters.memory import MemoryNetwork
from stellate.adapters.websocket import WebSocketConnector
from stellate.agent import AgentRefused, DeviceAgent, run_fleet
from stellate.cli import build_parser
from stellate.cli.agent import parse_metadata
from stellate.fsm import RetryPolicy
from stellate.protocol import (
    ConstellationSession,
    DeviceInfo,
    Registered,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
    decode_client,
    encode_server,
)
from stellate.protocol.rejections import ALREADY_REGISTERED, RejectionKind
from stellate.protocol.transport import Connection, ConnectionClosed
from stellate.server import AgentServer
from stellate.text.urls import with_token

URL = "ws://memory-server:5005/ws"
RETRY = RetryPolicy(reconnect_delay=1.0, backoff_cap=30.0, jitter_floor=0.1)
SYSTEM_INFO = {"device_id": "dev", "platform": "linux", "cpu_count": 4, "custom_metadata": {}}


class FakeProvider:
    def __init__(self) -> None:
        self.calls = 0

    def collect_system_info(
        self, client_id: str, custom_metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.calls += 1
        return {**SYSTEM_INFO, "device_id": client_id, "custom_metadata": custom_metadata or {}}


def ack() -> str:
    return encode_server(ServerMessage(type=ServerMessageType.HEARTBEAT, status=TaskStatus.OK))


@pytest.fixture
async def network() -> AsyncIterator[MemoryNetwork]:
    async with MemoryNetwork(raise_handler_errors=True) as net:
        yield net


def agent_on(network: MemoryNetwork, **kwargs: Any) -> DeviceAgent:
    options: dict[str, Any] = {
        "connector": network,
        "info_provider": FakeProvider(),
        "timing": RETRY.evolve(heartbeat_interval=30.0),
        "rng": random.Random(7),
    }
    options.update(kwargs)
    return DeviceAgent(URL, "dev", **options)


def serve_agent_server(network: MemoryNetwork) -> AgentServer:
    server = AgentServer()

    async def handler(conn: Any, _info: Any) -> None:
        await server.handle_connection(conn)

    network.listen(URL, handler)
    return server


# --- with the real AgentServer, in memory -------------------------------------------------


async def test_start_returns_once_registered(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = serve_agent_server(network)
    agent = agent_on(network, custom_metadata={"room": "lab"})
    await nursery.start(agent.run)
    assert agent.registered and agent.registrations == 1
    entry = server.registry.get("dev")
    assert entry is not None and entry.system_info is not None
    assert entry.system_info["custom_metadata"] == {"room": "lab"}
    assert entry.platform == "linux"


async def test_heartbeats_keep_the_agent_registered_for_hours(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = serve_agent_server(network)
    agent = agent_on(network)
    await nursery.start(agent.run)
    await trio.sleep(3 * 3600)
    assert agent.registrations == 1  # never dropped
    assert server.registry.get("dev") is not None


async def test_constellation_reads_the_agents_telemetry(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    serve_agent_server(network)
    await nursery.start(agent_on(network).run)
    session = ConstellationSession("galaxy", "dev")
    async with network.open(URL) as conn:
        await conn.send(session.register())
        assert session.receive(await conn.receive()) == [Registered()]
        await conn.send(session.request_device_info())
        (event,) = session.receive(await conn.receive())
        assert isinstance(event, DeviceInfo) and event.system_info is not None
        assert event.system_info["cpu_count"] == 4


# --- against scripted servers -------------------------------------------------------------


class ScriptedServer:
    """Records what agents send and when; answers per ``mode``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connects: list[float] = []
        self.heartbeats: list[float] = []

    async def __call__(self, conn: Connection, _info: Any) -> None:
        self.connects.append(trio.current_time())
        register = decode_client(await conn.receive())
        assert register.type.value == "register"
        if self.mode == "hangup":
            return
        if self.mode == "reject":
            error = ServerMessage(
                type=ServerMessageType.ERROR, status=TaskStatus.ERROR, error="duplicate"
            )
            await conn.send(encode_server(error))
            return
        await conn.send(ack())
        if self.mode == "drop":
            return
        while True:
            message = decode_client(await conn.receive())
            if message.type.value == "heartbeat":
                self.heartbeats.append(trio.current_time())
                if self.mode == "ack":
                    await conn.send(ack())


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_heartbeats_are_sent_every_interval(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = ScriptedServer("ack")
    network.listen(URL, script)
    await nursery.start(agent_on(network, timing=RETRY.evolve(heartbeat_interval=5.0)).run)
    await trio.sleep(26.0)
    assert gaps(script.heartbeats) == pytest.approx([5.0] * 4)
    assert len(script.connects) == 1


async def test_a_silent_server_is_left_after_miss_limit_heartbeats(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = ScriptedServer("silent")  # confirms, then never acks a heartbeat
    network.listen(URL, script)
    await nursery.start(
        agent_on(network, timing=RETRY.evolve(heartbeat_interval=10.0, miss_limit=3)).run
    )
    # Heartbeats at 10, 20, 30 go unanswered; 3 × 10 s after the first one (t=40) the agent
    # gives up and reconnects after its backoff.
    await trio.sleep(42.0)
    assert len(script.connects) == 2
    wait = script.connects[1] - script.connects[0]
    low, high = RETRY.backoff_bounds(1)
    assert 40.0 + low <= wait <= 40.0 + high


async def test_reconnects_with_jittered_exponential_backoff_and_resets_on_success(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = ScriptedServer("hangup")  # closes without answering: every attempt fails
    network.listen(URL, script)
    registered = trio.Event()
    agent = agent_on(network, on_registered=lambda _agent: registered.set())
    nursery.start_soon(agent.run)
    await trio.sleep(120.0)
    waits = gaps(script.connects)
    assert len(waits) >= 6
    for n, wait in enumerate(waits, start=1):
        low, high = RETRY.backoff_bounds(n)
        assert low <= wait <= high + 1e-9, (n, wait)
    assert waits[5] > waits[0]  # it grows (bounds [3.2, 32] vs [0.1, 1])
    assert len(set(waits)) == len(waits)  # and it is jittered

    # The server comes back: the agent registers and its failure count resets.
    script.mode = "ack"
    await registered.wait()
    assert agent.failures == 0 and agent.registered


async def test_a_refused_connection_is_retried(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    registered = trio.Event()
    agent = agent_on(network, on_registered=lambda _agent: registered.set())
    nursery.start_soon(agent.run)  # nothing listens yet: connects are refused
    await trio.sleep(50.0)
    assert agent.failures >= 4 and not agent.registered
    serve_agent_server(network)
    await registered.wait()
    assert agent.failures == 0


async def test_a_refused_connection_says_once_that_it_keeps_retrying(
    network: MemoryNetwork,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="stellate.agent")
    agent = agent_on(network)
    nursery.start_soon(agent.run)  # nothing listens: connects are refused
    await trio.sleep(50.0)
    refusals = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(refusals) == agent.failures >= 4
    loud = [r.getMessage() for r in refusals if r.levelno == logging.WARNING]
    assert len(loud) == 1  # the first; the same again at DEBUG, so nothing warns forever
    assert re.search(
        r"; retrying in \d+\.\d s \(the same failure again is logged at DEBUG\)$", loud[0]
    )
    assert all(r.levelno == logging.DEBUG for r in refusals[1:])
    assert all(re.search(r"; retrying in \d+\.\d s$", r.getMessage()) for r in refusals[1:])


class Outage:
    """A server that confirms and answers heartbeats until ``drop`` closes its connections."""

    def __init__(self) -> None:
        self.open: list[Connection] = []

    async def __call__(self, conn: Connection, _info: Any) -> None:
        decode_client(await conn.receive())  # the REGISTER
        await conn.send(ack())
        self.open.append(conn)
        try:
            while True:
                decode_client(await conn.receive())
                await conn.send(ack())
        except ConnectionClosed:
            pass

    async def drop(self) -> None:
        for conn in self.open:
            await conn.aclose(1001, "server restarting")
        self.open.clear()


async def test_one_info_line_per_loss_and_per_rejoin(
    network: MemoryNetwork,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An operator reading the agent's log sees when it lost its server and when it was back."""
    caplog.set_level(logging.DEBUG, logger="stellate.agent")
    server = Outage()
    network.listen(URL, server)
    agent = agent_on(network)
    await nursery.start(agent.run)
    network.unlisten(URL)
    await server.drop()  # lost; reconnects are refused for three minutes
    await trio.sleep(180.0)
    network.listen(URL, server)
    await trio.sleep(60.0)
    assert agent.registered and agent.registrations == 2
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(info) == 3, info
    assert info[0] == f"dev registered on {URL}"
    assert re.fullmatch(f"dev: lost the server {URL}: .*1001.*; reconnecting", info[1]), info[1]
    rejoined = re.fullmatch(
        rf"dev: rejoined {URL} after (\d+\.\d) s away \((\d+) failed attempt\(s\)\)", info[2]
    )
    assert rejoined, info[2]
    assert 180.0 <= float(rejoined.group(1)) <= 240.0 and int(rejoined.group(2)) >= 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot connect" in warnings[0]  # the outage, said once


async def test_a_fleet_meeting_one_failure_writes_a_few_lines_and_a_count(
    network: MemoryNetwork,
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``stellate agent --count 200`` against a wrong URL printed 200 identical warnings."""
    caplog.set_level(logging.INFO, logger="stellate.agent")
    agents = [agent_on(network, rng=random.Random(i)) for i in range(200)]
    for i, agent in enumerate(agents):
        agent.device_id = f"dev{i}"
    nursery.start_soon(run_fleet, agents)  # nothing listens: every connect is refused
    await trio.sleep(LOG_INTERVAL + 1.0)
    assert all(agent.failures >= 1 for agent in agents)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings
    summaries = [r.getMessage() for r in caplog.records if "more like these" in r.getMessage()]
    assert summaries and summaries[0].startswith("197 more like these within 60 s")


async def test_an_unanswered_registration_is_retried_with_backoff(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = ScriptedServer("hangup")  # takes the register frame, closes without an answer
    network.listen(URL, script)
    agent = agent_on(network)
    nursery.start_soon(agent.run)
    await trio.sleep(100.0)
    assert not agent.registered
    waits = gaps(script.connects)
    assert len(waits) >= 4
    for n, wait in enumerate(waits, start=1):
        low, high = RETRY.backoff_bounds(n)
        assert low <= wait <= high + 1e-6


async def test_a_registration_refused_at_the_first_attempt_stops_the_agent(
    network: MemoryNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    script = ScriptedServer("reject")  # a refusal no retry fixes (here: "duplicate")
    network.listen(URL, script)
    with pytest.raises(AgentRefused) as refused:
        await agent_on(network).run()
    assert refused.value.kind is RejectionKind.FINAL
    assert refused.value.reason == "registration rejected: duplicate"
    assert len(script.connects) == 1


async def test_an_id_still_held_after_a_first_success_is_retried(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Registered once and dropped, then told our id is still held (our old socket, not yet
    # gone on the server): that fixes itself, so the agent retries instead of stopping.
    answers = iter(["ack-then-drop", "still-held", "ack"])
    agent = agent_on(network)

    async def handler(conn: Connection, _info: Any) -> None:
        await conn.receive()  # the register frame
        answer = next(answers, "ack")
        if answer == "still-held":
            text = ALREADY_REGISTERED.format(client_id=agent.device_id)
            error = ServerMessage(type=ServerMessageType.ERROR, status=TaskStatus.ERROR, error=text)
            await conn.send(encode_server(error))
            return
        await conn.send(ack())
        if answer == "ack":
            await trio.sleep_forever()

    network.listen(URL, handler)
    nursery.start_soon(agent.run)
    await trio.sleep(60.0)
    assert agent.registered and agent.registrations == 2


async def test_repeated_drops_after_success_do_not_grow_the_wait(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    script = ScriptedServer("drop")  # confirms, then closes: every attempt succeeds first
    network.listen(URL, script)
    nursery.start_soon(agent_on(network).run)
    await trio.sleep(60.0)
    low, high = RETRY.backoff_bounds(1)
    assert all(low <= wait <= high for wait in gaps(script.connects))
    assert len(script.connects) > 10


async def test_the_token_is_added_and_never_shown(
    network: MemoryNetwork, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = AgentServer()

    async def handler(conn: Any, _info: Any) -> None:
        await server.handle_connection(conn)

    network.listen(URL, handler, api_key="k3y")
    agent = agent_on(network, api_key="k3y")
    await nursery.start(agent.run)
    assert "k3y" not in repr(agent)


# --- helpers and CLI ----------------------------------------------------------------------


def test_with_token() -> None:
    assert with_token("ws://h:1/ws", None) == "ws://h:1/ws"
    assert with_token("ws://h:1/ws", "a b") == "ws://h:1/ws?token=a+b"
    assert with_token("ws://h:1/ws?x=1", "k") == "ws://h:1/ws?x=1&token=k"
    assert with_token("ws://h:1/ws?token=mine", "k") == "ws://h:1/ws?token=mine"


def test_parse_metadata() -> None:
    assert parse_metadata(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ValueError, match="key=value"):
        parse_metadata(["novalue"])
    with pytest.raises(ValueError):
        parse_metadata(["=v"])


def test_cli_parses_agent_and_serve() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["agent", "--server", "ws://h:1/ws", "--count", "3", "--device-id-prefix", "p"]
    )
    assert args.count == 3 and args.device_id_prefix == "p"
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 5005, None)


def test_cli_agent_needs_a_device_id(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["agent", "--server", "ws://h:1/ws"])
    assert args.handler(args) == 2
    assert "--device-id is required" in capsys.readouterr().err


# --- real sockets -------------------------------------------------------------------------


@pytest.fixture
async def real_url(nursery: trio.Nursery) -> str:
    port = await nursery.start(AgentServer().serve, "127.0.0.1", 0)
    return f"ws://127.0.0.1:{port}/ws"


async def test_constellation_gets_this_machines_cpu_count_and_memory(
    real_url: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(HANG_GUARD):
        await nursery.start(DeviceAgent(real_url, "this_machine").run)
        session = ConstellationSession("galaxy", "this_machine")
        async with WebSocketConnector().open(real_url) as conn:
            await conn.send(session.register())
            assert session.receive(await conn.receive()) == [Registered()]
            await conn.send(session.request_device_info())
            (event,) = session.receive(await conn.receive())
    assert isinstance(event, DeviceInfo) and event.system_info is not None
    assert event.system_info["cpu_count"] == psutil.cpu_count()
    memory = round(psutil.virtual_memory().total / 1024**3, 2)
    assert event.system_info["memory_total_gb"] == memory
    assert event.system_info["device_id"] == "this_machine"


async def test_a_fleet_shares_one_collection(real_url: str, nursery: trio.Nursery) -> None:
    provider = FakeProvider()
    base = provider.collect_system_info("fleet0")
    agents = [
        DeviceAgent(real_url, f"fleet{i}", system_info={**base, "device_id": f"fleet{i}"})
        for i in range(5)
    ]
    done = trio.Event()
    with trio.fail_after(HANG_GUARD):
        nursery.start_soon(lambda: run_fleet(agents, on_all_registered=done.set))
        await done.wait()
    assert provider.calls == 1
    assert all(agent.registered for agent in agents)
    assert agents[0].system_info is not None and agents[1].system_info is not None
    assert agents[0].system_info["device_id"] == "fleet0"
    assert agents[1].system_info["device_id"] == "fleet1"


async def test_a_stopped_agent_says_goodbye_with_1001(
    network: MemoryNetwork, autojump_clock: trio.testing.MockClock
) -> None:
    closes: list[int | None] = []

    async def handler(conn: Connection, _info: Any) -> None:
        await conn.receive()
        await conn.send(ack())
        try:
            while True:
                await conn.receive()
        except ConnectionClosed as exc:
            closes.append(exc.code)

    network.listen(URL, handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent_on(network).run)
        nursery.cancel_scope.cancel()
    await trio.testing.wait_all_tasks_blocked()
    assert closes == [1001]


def test_failures_differing_only_in_numbers_share_one_kind() -> None:
    """A fleet's log limits and counts failures by kind: the kinds stay few over months."""
    from stellate.agent.device_agent import KIND_LIMIT, _kind

    first = "cannot connect: closed in the middle of its answer (after 12 bytes), retry after 5 s"
    later = (
        "cannot connect: closed in the middle of its answer (after 3400 bytes), retry after 7.5 s"
    )
    assert _kind(first) == _kind(later)
    assert _kind("cannot connect: refused") != _kind("registration rejected: x")
    assert len(_kind("x" * 10_000)) == KIND_LIMIT
