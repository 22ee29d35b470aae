"""In-memory transport: pair semantics and MemoryNetwork, under an autojumping MockClock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from stellate.adapters.memory import MemoryNetwork, memory_connection_pair
from stellate.adapters.websocket import AcceptedRequest
from stellate.protocol.transport import ConnectError, Connection, ConnectionClosed

LIMIT = 60.0  # virtual seconds under autojump_clock; a hang fails in no real time


async def test_pair_round_trip_keeps_types(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        a, b = memory_connection_pair()
        await a.send("text")
        await a.send(b"bytes")
        assert await b.receive() == "text"
        assert await b.receive() == b"bytes"
        await b.send("back")
        assert await a.receive() == "back"


async def test_close_drains_then_raises_with_code(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        a, b = memory_connection_pair()
        await a.send("one")
        await a.send("two")
        await a.aclose(4001, "going")
        assert a.closed and b.closed
        assert await b.receive() == "one"
        assert await b.receive() == "two"
        with pytest.raises(ConnectionClosed) as closed:
            await b.receive()
        assert (closed.value.code, closed.value.reason) == (4001, "going")
        with pytest.raises(ConnectionClosed) as refused:
            await b.send("late")
        assert refused.value.code == 4001


async def test_closer_discards_unread_and_cannot_send(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        a, b = memory_connection_pair()
        await b.send("unread")
        await a.aclose()
        with pytest.raises(ConnectionClosed) as closed:
            await a.receive()
        assert closed.value.code == 1000
        with pytest.raises(ConnectionClosed):
            await a.send("x")


async def test_aclose_is_idempotent_and_first_code_wins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(LIMIT):
        a, b = memory_connection_pair()
        await a.aclose(1001)
        await a.aclose(1011)
        await b.aclose(1000)
        await b.aclose()
        with pytest.raises(ConnectionClosed) as closed:
            await b.receive()
        assert closed.value.code == 1001


async def test_close_wakes_a_blocked_receiver(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        a, b = memory_connection_pair()
        result: list[int | None] = []

        async def reader() -> None:
            try:
                await b.receive()
            except ConnectionClosed as exc:
                result.append(exc.code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(1)
            a.abort()
        assert result == [1006]


async def test_buffer_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        a, b = memory_connection_pair(buffer=2)
        await a.send("1")
        await a.send("2")
        with trio.move_on_after(1) as blocked:
            await a.send("3")
        assert blocked.cancelled_caught
        assert await b.receive() == "1"
        await a.send("3")


async def test_peer_close_fails_a_blocked_sender(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        a, b = memory_connection_pair(buffer=0)
        async with trio.open_nursery() as nursery:

            async def close_later() -> None:
                await trio.sleep(1)
                await b.aclose(1001)

            nursery.start_soon(close_later)
            with pytest.raises(ConnectionClosed) as closed:
                await a.send("never read")
        assert closed.value.code == 1001


async def test_send_rejects_other_types(autojump_clock: trio.testing.MockClock) -> None:
    a, _ = memory_connection_pair()
    with pytest.raises(TypeError):
        await a.send(123)  # type: ignore[arg-type]


# -- MemoryNetwork ----------------------------------------------------------------------------

URL = "ws://agent.test:5005/ws"


async def echo(conn: Connection, info: AcceptedRequest) -> None:
    while True:
        await conn.send(await conn.receive())


async def test_network_echo(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with MemoryNetwork() as net:
            net.listen(URL, echo)
            async with net.connector.open(URL + "?token=k") as conn:
                await conn.send("hi")
                assert await conn.receive() == "hi"
            assert net.connections == 1


async def test_network_refusals(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with MemoryNetwork() as net:
            net.listen(URL, echo, api_key="k")
            with pytest.raises(ConnectError) as refused:
                async with net.open("ws://nobody.test:1/ws"):
                    pass
            assert refused.value.status is None
            with pytest.raises(ConnectError) as not_found:
                async with net.open("ws://agent.test:5005/nope?token=k"):
                    pass
            assert not_found.value.status == 404
            with pytest.raises(ConnectError) as forbidden:
                async with net.open(URL + "?token=wrong"):
                    pass
            assert forbidden.value.status == 403
            assert "wrong" not in str(forbidden.value)
            net.unlisten(URL)
            with pytest.raises(ConnectError):
                async with net.open(URL + "?token=k"):
                    pass


async def test_network_hang_is_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with MemoryNetwork() as net:
            net.listen(URL, echo)
            net.hang(URL)
            with trio.move_on_after(10) as timeout:
                async with net.open(URL):
                    pytest.fail("must hang")
            assert timeout.cancelled_caught
            assert trio.current_time() == pytest.approx(10)
            net.hang(URL, False)
            async with net.open(URL):
                pass


async def test_handler_sees_client_close_and_crash_gives_1011(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[int | None] = []

    async def handler(conn: Connection, info: AcceptedRequest) -> None:
        assert info.path == "/ws"
        message = await conn.receive()
        if message == "crash":
            raise RuntimeError("handler bug")
        try:
            await conn.receive()
        except ConnectionClosed as exc:
            seen.append(exc.code)

    with trio.fail_after(LIMIT):
        async with MemoryNetwork() as net:
            net.listen(URL, handler)
            async with net.open(URL) as conn:
                await conn.send("hello")
                await conn.aclose(4002)
            async with net.open(URL) as conn:
                await conn.send("crash")
                with pytest.raises(ConnectionClosed) as closed:
                    await conn.receive()
                assert closed.value.code == 1011
            await trio.testing.wait_all_tasks_blocked()
    assert seen == [4002]


async def test_network_run_in_a_nursery(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            net = await nursery.start(MemoryNetwork().run)
            net.listen(URL, echo)
            async with net.open(URL) as conn:
                await conn.send(b"x")
                assert await conn.receive() == b"x"
            nursery.cancel_scope.cancel()


async def test_not_running_is_an_error() -> None:
    net = MemoryNetwork()
    net.listen(URL, echo)
    with pytest.raises(RuntimeError, match="not running"):
        async with net.open(URL):
            pass


async def test_body_exception_is_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(KeyError):
        async with MemoryNetwork() as net:
            net.listen(URL, echo)
            async with net.open(URL):
                raise KeyError("x")


async def test_raise_handler_errors(autojump_clock: trio.testing.MockClock) -> None:
    async def crash(conn: Connection, info: AcceptedRequest) -> None:
        raise RuntimeError("loud")

    with pytest.raises(BaseExceptionGroup) as group:
        async with MemoryNetwork(raise_handler_errors=True) as net:
            net.listen(URL, crash)
            async with net.open(URL):
                await trio.sleep(1)
    assert group.group_contains(RuntimeError, match="loud")
