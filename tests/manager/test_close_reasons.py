"""What a row gives the runner: the close frame of its CloseConnection, and a deadline that
an ignored event does not restart.

The manager closes each socket with the code and reason its row gave the CloseConnection.

A hand-written AIP server on the memory network (under MockClock) registers the constellation,
then does what each test needs, and records the close frame the manager sent: its code and
its reason, which the peer logs (so it must be escaped, redacted and at most 123 bytes).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from manager_support import URL, manager_on, memory_network

from stellate.fsm import AgentProfile, DeviceStatus, Meaning, Timing
from stellate.protocol import (
    ClientMessageType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
    decode_client,
    encode_server,
)
from stellate.protocol.closing import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    MAX_REASON_BYTES,
    close_reason,
)
from stellate.protocol.transport import Connection, ConnectionClosed

CONFIRMED = encode_server(ServerMessage(type=ServerMessageType.HEARTBEAT, status=TaskStatus.OK))


class Server:
    """Confirms the REGISTER (or answers it with ``on_register``), then sends ``after`` once
    registered; records how each socket was closed by the manager."""

    def __init__(self, *, on_register: str | bytes | None = None, after: str | None = None):
        self.on_register = on_register
        self.after = after
        self.closes: list[tuple[int | None, str | None]] = []

    async def handler(self, conn: Connection, _info: Any) -> None:
        try:
            while True:
                message = decode_client(str(await conn.receive()))
                if message.type is ClientMessageType.REGISTER:
                    if self.on_register is not None:
                        await conn.send(self.on_register)
                        continue
                    await conn.send(CONFIRMED)
                    if self.after is not None:
                        await conn.send(self.after)
                elif message.type is ClientMessageType.HEARTBEAT:
                    await conn.send(CONFIRMED)
        except ConnectionClosed as closed:
            self.closes.append((closed.code, closed.reason))


def error_frame(text: str) -> str:
    return encode_server(
        ServerMessage(type=ServerMessageType.ERROR, status=TaskStatus.ERROR, error=text)
    )


async def test_the_owners_disconnect_closes_normally(autojump_clock: Any) -> None:
    server = Server()
    async with memory_network() as net:
        net.listen(URL, server.handler)
        async with manager_on(net, timing=Timing(telemetry_timeout=1.0)) as manager:
            manager.add_device(AgentProfile("dev", URL))
            await manager.wait_for("dev", DeviceStatus.IDLE)
            await manager.disconnect_device("dev")
            await trio.sleep(1)
    assert server.closes == [(1000, "stellate: disconnect")]


async def test_a_protocol_violation_closes_with_1002_and_says_why(autojump_clock: Any) -> None:
    server = Server(on_register="nope")  # no answer to a REGISTER at all
    async with memory_network() as net:
        net.listen(URL, server.handler)
        async with manager_on(net) as manager:
            manager.add_device(AgentProfile("dev", URL, max_retries=1))
            await manager.wait_for("dev", DeviceStatus.FAILED)
            await trio.sleep(1)
            reason = manager.failure_reason("dev") or ""
    assert reason.startswith("gave up after 1 attempts: protocol violation")
    ((code, text),) = server.closes
    assert code == 1002 and text == close_reason(f"stellate: {reason}")
    assert text.startswith("stellate: gave up after 1 attempts: protocol violation")


async def test_a_peers_text_comes_back_escaped_redacted_and_cut(autojump_clock: Any) -> None:
    """A server's error after registration is a loss; the close frame repeats the reason the
    device backs off with, made safe: one line, no secret, at most 123 bytes."""
    hostile = "é" * 20 + "\n\x1b[2J see ws://h/ws?token=s3cret " + "ü" * 100
    server = Server(after=error_frame(hostile))
    async with memory_network() as net:
        net.listen(URL, server.handler)
        async with manager_on(net, timing=Timing(telemetry_timeout=1.0)) as manager:
            manager.add_device(AgentProfile("dev", URL))
            await manager.wait_for("dev", DeviceStatus.BACKOFF)
            await trio.sleep(0.1)
    code, text = server.closes[0]
    assert code == 1000 and text is not None
    assert text.startswith("stellate: server error: " + "é" * 20 + "\\n\\x1b[2J see ws://h/ws?")
    assert "s3cret" not in text and "token=***" in text
    assert "\n" not in text and "\x1b" not in text
    assert len(text.encode("utf-8")) <= MAX_REASON_BYTES
    assert text.endswith("ü")  # cut on a character boundary, not inside one


async def test_a_manager_cancelled_says_it_goes_away(autojump_clock: Any) -> None:
    server = Server()
    async with memory_network() as net:
        net.listen(URL, server.handler)
        with trio.CancelScope() as scope:
            async with manager_on(net, timing=Timing(telemetry_timeout=1.0)) as manager:
                manager.add_device(AgentProfile("dev", URL))
                await manager.wait_for("dev", DeviceStatus.IDLE)
                scope.cancel()
        await trio.sleep(1)
    assert server.closes == [(1001, "stellate: manager stopped")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\nb\x1b", "a\\nb\\x1b"),
        ("see ws://u:p@h/ws?token=abc", "see ws://***@h/ws?token=***"),
        ("x" * 200, "x" * 123),  # RFC 6455 §5.5: a 125-byte payload, 2 of them the code
        ("x" * 123, "x" * 123),
        ("€" * 50, "€" * 41),  # 3 bytes each: 41 fit in 123
    ],
)
def test_close_reason_fits_a_close_frame(text: str, expected: str) -> None:
    assert close_reason(text) == expected
    assert len(close_reason(text).encode("utf-8")) <= MAX_REASON_BYTES == 123


@given(
    before=st.text(alphabet="abc xyz:/.", max_size=100),
    length=st.integers(0, 6000),
    after=st.text(alphabet="abc xyz/.", max_size=20),
)
def test_a_password_in_a_url_never_reaches_a_close_frame_however_long(
    before: str, length: int, after: str
) -> None:
    """However long a URL's userinfo (past the part of a peer's text that is looked at, too),
    none of it is in the reason: an authority the cut runs through is masked whole."""
    reason = close_reason(f"{before}ws://user:S3CRET{'k' * length}@host/ws{after}")
    assert "S3CRET" not in reason and "user" not in reason
    assert "ws://***" in reason or len(before.encode()) + 8 > MAX_REASON_BYTES


def test_the_close_codes_are_rfc_6455_s() -> None:
    """§7.4.1: normal closure, going away, protocol error, internal error."""
    assert (CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_INTERNAL_ERROR) == (
        1000,
        1001,
        1002,
        1011,
    )


async def test_ignored_frames_do_not_restart_the_telemetry_deadline(autojump_clock: Any) -> None:
    """A registered server that never answers the telemetry request but sends a frame the
    protocol forbids every 4 s: each is ignored (an internal row), and the device activates
    without telemetry when the deadline entered with the state passes, 10 s later (the frames
    used to restart it: the device never activated)."""
    garbage = encode_server(ServerMessage(type=ServerMessageType.TASK, status=TaskStatus.OK))

    async def handler(conn: Connection, _info: Any) -> None:
        await conn.receive()  # REGISTER
        await conn.send(CONFIRMED)
        await conn.receive()  # device_info_request: never answered
        with suppress(ConnectionClosed):
            while True:
                await trio.sleep(4)
                await conn.send(garbage)

    entered = None
    async with memory_network() as net:
        net.listen(URL, handler)
        manager = manager_on(net, timing=Timing(telemetry_timeout=10.0, heartbeat_interval=60.0))
        # Virtual seconds: a deadline restarted by each frame would never pass.
        with trio.fail_after(100):
            async with manager, manager.events() as events:
                manager.add_device(AgentProfile("dev", URL))
                async for event in events:
                    if event.record.dest is DeviceStatus.TELEMETRY:
                        entered = trio.current_time()
                    if event.record.dest is DeviceStatus.IDLE:
                        break
    assert entered is not None and trio.current_time() - entered == pytest.approx(10.0)
    assert Meaning.NO_TELEMETRY in event.meanings
