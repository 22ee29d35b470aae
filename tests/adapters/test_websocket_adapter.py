"""trio-websocket adapter over real sockets on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
import trio
import trustme
from real_time import HANG_GUARD, PATIENCE

from stellate.adapters.websocket import (
    AcceptedRequest,
    WebSocketConnector,
    serve_websocket,
)
from stellate.protocol.transport import ConnectError, Connection, ConnectionClosed

KEY = "s3cret-KEY-never-shown"
LIMIT = HANG_GUARD  # real seconds: only catches a hanging test (real_time.py)

Handler = Callable[[Connection, AcceptedRequest], Awaitable[None]]


async def echo(conn: Connection, info: AcceptedRequest) -> None:
    while True:
        await conn.send(await conn.receive())


async def start_server(nursery: trio.Nursery, handler: Handler = echo, **kwargs: Any) -> int:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("max_message_size", 1024)
    port: int = await nursery.start(partial(serve_websocket, handler, "127.0.0.1", 0, **kwargs))
    return port


def url(port: int, path: str = "/ws", token: str | None = KEY, scheme: str = "ws") -> str:
    query = "" if token is None else f"?token={token}"
    return f"{scheme}://127.0.0.1:{port}{path}{query}"


connector = WebSocketConnector(connect_timeout=PATIENCE, close_timeout=1.0)


async def test_echo_text_and_binary_keep_their_type(nursery: trio.Nursery) -> None:
    with trio.fail_after(LIMIT):
        port = await start_server(nursery)
        async with connector.open(url(port)) as conn:
            assert not conn.closed
            await conn.send('{"type": "register"}')
            assert await conn.receive() == '{"type": "register"}'
            await conn.send(b"\x00\xffbinary")
            assert await conn.receive() == b"\x00\xffbinary"


async def test_handler_sees_remote_and_path_without_token(nursery: trio.Nursery) -> None:
    seen: list[AcceptedRequest] = []

    async def record(conn: Connection, info: AcceptedRequest) -> None:
        seen.append(info)
        await conn.send("hello")

    with trio.fail_after(LIMIT):
        port = await start_server(nursery, record)
        async with connector.open(url(port)) as conn:
            assert await conn.receive() == "hello"
            # the handler returned: the server closes normally after what it sent
            with pytest.raises(ConnectionClosed) as closed:
                await conn.receive()
            assert closed.value.code == 1000
            assert conn.closed
    assert seen[0].path == "/ws"
    assert seen[0].remote.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [("/ws", "wrong", 403), ("/ws", None, 403), ("/ws", "", 403), ("/other", KEY, 404)],
)
async def test_handshake_refusals_carry_the_http_status(
    nursery: trio.Nursery, path: str, token: str | None, status: int
) -> None:
    with trio.fail_after(LIMIT):
        port = await start_server(nursery)
        with pytest.raises(ConnectError) as refused:
            async with connector.open(url(port, path, token)):
                pytest.fail("the handshake must be refused")
    assert refused.value.status == status
    assert f"HTTP {status}" in str(refused.value)
    assert KEY not in str(refused.value)


async def test_no_token_required_without_api_key(nursery: trio.Nursery) -> None:
    with trio.fail_after(LIMIT):
        port = await start_server(nursery, api_key=None)
        async with connector.open(url(port, token=None)) as conn:
            await conn.send("x")
            assert await conn.receive() == "x"


async def test_oversize_message_closes_with_1009(nursery: trio.Nursery) -> None:
    with trio.fail_after(LIMIT):
        port = await start_server(nursery, max_message_size=1024)
        async with connector.open(url(port)) as conn:
            await conn.send("x" * 1024)  # exactly the limit is fine
            assert len(await conn.receive()) == 1024
            await conn.send("x" * 1025)
            with pytest.raises(ConnectionClosed) as closed:
                await conn.receive()
            assert closed.value.code == 1009
            assert conn.closed
            with pytest.raises(ConnectionClosed):
                await conn.send("after")


async def test_client_limit_applies_to_received_messages(nursery: trio.Nursery) -> None:
    async def big(conn: Connection, info: AcceptedRequest) -> None:
        await conn.send("y" * 100)
        await trio.sleep_forever()

    small = WebSocketConnector(max_message_size=10, connect_timeout=PATIENCE, close_timeout=1.0)
    with trio.fail_after(LIMIT):
        port = await start_server(nursery, big)
        async with small.open(url(port)) as conn:
            with pytest.raises(ConnectionClosed) as closed:
                await conn.receive()
            assert closed.value.code == 1009


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_closed_port_fails_fast_without_the_token() -> None:
    port = free_port()
    # Fast = refused at once, not after the connect timeout: with a timeout far beyond the
    # hang guard, waiting for it would trip the guard (a bound that only catches a hang).
    patient = WebSocketConnector(connect_timeout=LIMIT * 20)
    with trio.fail_after(LIMIT), pytest.raises(ConnectError) as refused:
        async with patient.open(url(port)):
            pytest.fail("nothing listens there")
    assert refused.value.status is None
    message = str(refused.value)
    assert KEY not in message and message == f"connection refused (127.0.0.1:{port})"


@pytest.mark.parametrize("bad", ["http://127.0.0.1/ws", "ws:///ws", "ws://host:notaport/ws"])
async def test_invalid_urls_are_connect_errors(bad: str) -> None:
    with trio.fail_after(LIMIT), pytest.raises(ConnectError):
        async with connector.open(bad + f"?token={KEY}"):
            pass


async def test_silent_server_times_out_as_connect_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    held: list[trio.SocketStream] = []

    async def accept_and_ignore(listener: trio.SocketListener) -> None:
        while True:
            held.append(await listener.accept())

    async with trio.open_nursery() as inner:
        inner.start_soon(accept_and_ignore, listeners[0])
        impatient = WebSocketConnector(connect_timeout=0.3)
        with trio.fail_after(LIMIT), pytest.raises(ConnectError) as timed_out:
            async with impatient.open(url(port)):
                pass
        inner.cancel_scope.cancel()
    for resource in [*held, *listeners]:
        await resource.aclose()
    assert "timed out" in str(timed_out.value)
    assert KEY not in str(timed_out.value)


async def test_aclose_is_idempotent(nursery: trio.Nursery) -> None:
    with trio.fail_after(LIMIT):
        port = await start_server(nursery)
        async with connector.open(url(port)) as conn:
            await conn.aclose()
            await conn.aclose(1001, "again")
            assert conn.closed
            with pytest.raises(ConnectionClosed):
                await conn.send("x")
            with pytest.raises(ConnectionClosed):
                await conn.receive()
        await conn.aclose()  # after the block too


async def test_server_sees_the_client_close_code(nursery: trio.Nursery) -> None:
    codes: list[int | None] = []
    done = trio.Event()

    async def watch(conn: Connection, info: AcceptedRequest) -> None:
        try:
            await conn.receive()
        except ConnectionClosed as exc:
            codes.append(exc.code)
            done.set()
            raise

    with trio.fail_after(LIMIT):
        port = await start_server(nursery, watch)
        async with connector.open(url(port)) as conn:
            await conn.aclose(4000, "bye")
        await done.wait()
    assert codes == [4000]


async def test_body_exceptions_propagate_unwrapped(nursery: trio.Nursery) -> None:
    with trio.fail_after(LIMIT):
        port = await start_server(nursery)
        with pytest.raises(ValueError, match="boom"):
            async with connector.open(url(port)):
                raise ValueError("boom")
        with pytest.raises(ConnectionClosed):
            async with connector.open(url(port)) as conn:
                await conn.aclose()
                await conn.receive()


async def test_cancelling_the_owner_leaves_nothing_behind(nursery: trio.Nursery) -> None:
    closed = trio.Event()

    async def wait_close(conn: Connection, info: AcceptedRequest) -> None:
        try:
            await conn.receive()
        finally:
            closed.set()

    with trio.fail_after(LIMIT):
        port = await start_server(nursery, wait_close)
        with trio.CancelScope() as scope:
            async with connector.open(url(port)) as conn:
                # Cancelled while it waits on the open connection (a deadline set before the
                # connect could, on a loaded machine, cancel the connect itself instead).
                scope.deadline = trio.current_time() + 0.2
                await conn.receive()
        assert scope.cancelled_caught
        await closed.wait()  # the server noticed: the socket is gone


async def test_handler_crash_closes_1011_and_server_survives(nursery: trio.Nursery) -> None:
    async def crash(conn: Connection, info: AcceptedRequest) -> None:
        if await conn.receive() == "crash":
            raise RuntimeError("handler bug")
        await conn.send("fine")

    with trio.fail_after(LIMIT):
        port = await start_server(nursery, crash)
        async with connector.open(url(port)) as conn:
            await conn.send("crash")
            with pytest.raises(ConnectionClosed) as closed:
                await conn.receive()
            assert closed.value.code == 1011
        async with connector.open(url(port)) as conn:
            await conn.send("hello")
            assert await conn.receive() == "fine"


async def test_the_token_never_reaches_the_logs(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(LIMIT):
        port = await start_server(nursery)
        async with connector.open(url(port)) as conn:
            await conn.send("x")
            await conn.receive()
        for token in ("bad", None):
            with pytest.raises(ConnectError):
                async with connector.open(url(port, token=token)):
                    pass
        with pytest.raises(ConnectError):
            async with connector.open(url(free_port())):
                pass
    assert caplog.records
    for record in caplog.records:
        assert KEY not in record.getMessage()


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture
async def tls_port(nursery: trio.Nursery, server_context: ssl.SSLContext) -> int:
    return await start_server(nursery, ssl_context=server_context)


async def test_wss_with_trusted_ca(tls_port: int, ca: trustme.CA) -> None:
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    trusting = WebSocketConnector(ssl_context=client_context, connect_timeout=PATIENCE)
    with trio.fail_after(LIMIT):
        async with trusting.open(url(tls_port, scheme="wss")) as conn:
            await conn.send("over tls")
            assert await conn.receive() == "over tls"


async def test_wss_with_cafile(tls_port: int, cafile: str) -> None:
    trusting = WebSocketConnector(cafile=cafile, connect_timeout=PATIENCE)
    with trio.fail_after(LIMIT):
        async with trusting.open(url(tls_port, scheme="wss")) as conn:
            await conn.send("x")
            assert await conn.receive() == "x"


async def test_untrusted_certificate_fails_fast_with_reason(tls_port: int) -> None:
    # Not at the connect timeout: it lies far beyond the hang guard (which only catches a hang).
    patient = WebSocketConnector(connect_timeout=LIMIT * 20)
    with trio.fail_after(LIMIT), pytest.raises(ConnectError) as failed:
        async with patient.open(url(tls_port, scheme="wss")):
            pass
    message = str(failed.value)
    assert "TLS" in message and KEY not in message
