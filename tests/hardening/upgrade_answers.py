"""Hypothesis strategies for a server's answer to a WebSocket upgrade, and a raw TCP server
that plays one: every way an upgrade can go wrong, from the bytes up.

An answer is a template: ``ACCEPT`` inside it is replaced, when played, by the correct
``Sec-WebSocket-Accept`` for the key the client sent (a server cannot know it in advance). It
is cut into chunks, each sent after a (virtual) delay, and ends by closing, resetting or
hanging the connection.

An answer is played over a real TCP connection (``raw_server``) or in memory
(``MemoryConnector``: the real connector with only its TCP connect replaced). Tests about how
bytes are parsed, and about deadlines, use memory: no bytes are ever in flight in a kernel, so an
autojumping ``MockClock`` cannot jump to a deadline while a valid answer is on its way.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import attrs
import trio
import trio.testing
from byte_streams import receive_until
from hypothesis import strategies as st

from stellate.adapters.websocket import WebSocketConnector
from stellate.adapters.ws_handshake import accept_token
from stellate.text.urls import WsUrl

ACCEPT = b"@@ACCEPT@@"
Ending = Literal["close", "reset", "hang"]

GOOD_HEADERS = [
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Accept", ACCEPT),
]


@attrs.frozen
class Answer:
    """What the server sends (``data`` cut at ``cuts``, each piece after one of ``delays``)
    and how it ends."""

    data: bytes
    cuts: tuple[int, ...]
    delays: tuple[float, ...]
    ending: Ending
    #: True when the answer is a complete, valid 101 (the client must connect).
    valid: bool
    #: The HTTP status of a well-formed refusal (``None`` otherwise).
    refusal: int | None = None

    def chunks(self, key: bytes) -> list[tuple[float, bytes]]:
        """The pieces to send, with the accept token for ``key`` in place."""
        data = self.data.replace(ACCEPT, accept_token(key))
        points = sorted({c % (len(data) + 1) for c in self.cuts} | {0, len(data)})
        pieces = [data[a:b] for a, b in itertools.pairwise(points)]
        return [
            (self.delays[i % len(self.delays)] if self.delays else 0.0, piece)
            for i, piece in enumerate(pieces)
        ]


def _head(status_line: bytes, headers: list[tuple[bytes, bytes]], eol: bytes = b"\r\n") -> bytes:
    lines = [status_line, *(name + b": " + value for name, value in headers)]
    return eol.join(lines) + eol + eol


header_names = st.sampled_from(
    [b"Server", b"X-Thing", b"Date", b"Set-Cookie", b"Cache-Control", b"Via", b"X-\xff"]
)
header_values = st.binary(max_size=40).filter(lambda v: b"\r" not in v and b"\n" not in v)
extra_headers = st.lists(st.tuples(header_names, header_values), max_size=4)
benign_extra_headers = st.lists(
    st.tuples(
        st.sampled_from([b"Server", b"X-Thing", b"Date"]),
        st.text("abcxyz0123 -/", max_size=20).map(str.encode).map(bytes.strip),
    ),
    max_size=3,
)


@st.composite
def valid_101(draw: st.DrawFn) -> bytes:
    """A valid 101: header name case, order and extra headers vary, nothing that matters."""
    headers = list(GOOD_HEADERS)
    case = draw(st.sampled_from([bytes.lower, bytes.upper, lambda b: b]))
    headers = [(case(name), value) for name, value in headers]
    if draw(st.booleans()):
        headers[1] = (headers[1][0], b"keep-alive, Upgrade")
    headers += draw(benign_extra_headers)
    if draw(st.booleans()):  # h11 lets control bytes other than NUL through: harmless here
        headers.append((b"X-Junk", draw(st.sampled_from([b"\x1b[2J", b"a\x7fb", b"\x01\xff"]))))
    order = draw(st.permutations(range(len(headers))))
    return _head(b"HTTP/1.1 101 Switching Protocols", [headers[i] for i in order])


@st.composite
def broken_101(draw: st.DrawFn) -> bytes:
    """A 101 that breaks one of RFC 6455's client rules (or HTTP's)."""
    headers = list(GOOD_HEADERS)
    breakage = draw(
        st.sampled_from(
            [
                "no upgrade",
                "no connection",
                "no accept",
                "wrong accept",
                "two accepts",
                "extension",
                "subprotocol",
                "upgrade other",
                "bad header line",
                "control in value",
                "oversize header",
                "bad status line",
            ]
        )
    )
    status = b"HTTP/1.1 101 Switching Protocols"
    if breakage == "no upgrade":
        headers = [h for h in headers if h[0] != b"Upgrade"]
    elif breakage == "no connection":
        headers = [h for h in headers if h[0] != b"Connection"]
    elif breakage == "no accept":
        headers = headers[:2]
    elif breakage == "wrong accept":
        wrong = draw(st.binary(min_size=1, max_size=30).map(lambda b: accept_token(b)))
        headers[2] = (b"Sec-WebSocket-Accept", wrong)
    elif breakage == "two accepts":
        headers.append((b"Sec-WebSocket-Accept", ACCEPT))
    elif breakage == "extension":
        headers.append((b"Sec-WebSocket-Extensions", b"permessage-deflate"))
    elif breakage == "subprotocol":
        headers.append((b"Sec-WebSocket-Protocol", draw(st.sampled_from([b"aip", b"\xff\xfe"]))))
    elif breakage == "upgrade other":
        headers[0] = (b"Upgrade", draw(st.sampled_from([b"h2c", b"websocket, h2c", b""])))
    elif breakage == "bad header line":
        headers.append((draw(st.sampled_from([b"no colon here", b" folded", b"Bad Name"])), b""))
    elif breakage == "control in value":
        headers.append((b"X-Evil", draw(st.sampled_from([b"\x00", b"a\x00b"]))))
    elif breakage == "oversize header":
        headers.append((b"X-Big", b"a" * draw(st.integers(16 * 1024, 40 * 1024))))
    else:
        status = draw(
            st.sampled_from(
                [
                    b"HTTP/1.1 1O1 Switching Protocols",
                    b"HTTP/2 101 Switching Protocols",
                    b"ICY 101 OK",
                    b"HTTP/1.1 101 Switching\x00Protocols",
                    b"GARBAGE",
                    b"",
                ]
            )
        )
    return _head(status, headers)


retry_after_values = st.one_of(
    st.integers(0, 10**15).map(lambda n: str(n).encode()),
    st.sampled_from(
        [
            b"Wed, 21 Oct 2015 07:28:00 GMT",
            b"Fri, 31 Dec 9999 23:59:59 GMT",
            b"soon",
            b"-5",
            b"1.5",
            b"",
            b"\xff",
        ]
    ),
)


@st.composite
def refusal(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """A non-101 answer: a status, maybe Retry-After, a body framed right or wrong."""
    status = draw(st.sampled_from([200, 301, 400, 401, 403, 404, 426, 429, 500, 502, 503]))
    reason = draw(st.sampled_from([b"", b"Service Unavailable", b"x\x1b[31mred", b"\xe9t\xe9"]))
    headers = draw(extra_headers)
    well_formed = all(b"\xff" not in name for name, _ in headers)
    if draw(st.booleans()):
        headers.append((b"Retry-After", draw(retry_after_values)))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "wrong length", "chunked", "bad chunked", "none"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "wrong length":
        headers.append((b"Content-Length", str(len(body) + 10).encode()))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    elif framing == "bad chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = b"zz\r\n" + body
    line = b"HTTP/1.1 %d" % status + (b" " + reason if reason else b"")
    return _head(line, headers) + body, status if well_formed else None


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    """Any answer: valid, broken, refused, random bytes, or cut short; sent in pieces."""
    kind = draw(st.sampled_from(["valid", "broken", "refusal", "random", "truncated"]))
    valid = refusal_status = None
    if kind == "valid":
        data, valid = draw(valid_101()), True
    elif kind == "broken":
        data = draw(broken_101())
    elif kind == "refusal":
        data, refusal_status = draw(refusal())
    elif kind == "random":
        data = draw(st.binary(max_size=200))
    else:
        full = draw(st.one_of(valid_101(), refusal().map(lambda r: r[0])))
        data = full[: draw(st.integers(0, max(0, full.index(b"\r\n\r\n") + 3)))]
    cuts = draw(st.lists(st.integers(0, 50_000), max_size=4))
    delays = draw(st.lists(st.sampled_from([0.0, 0.0, 0.5, 3.0]), max_size=4))
    ending: Ending = draw(st.sampled_from(["close", "reset", "hang"]))
    return Answer(data, tuple(cuts), tuple(delays), ending, bool(valid), refusal_status)


# -- the raw server ----------------------------------------------------------------------------


def _reset(stream: trio.SocketStream) -> None:
    """Close with RST instead of FIN (SO_LINGER 0)."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def play(
    stream: trio.abc.Stream, answer: Answer, *, reset: Callable[[], None] | None = None
) -> None:
    """Read the upgrade request, then play ``answer`` with the key's accept token in it.

    ``reset`` ends the connection with a reset instead of a close (default: ``SO_LINGER`` 0 on
    the socket ``stream``)."""
    request = await receive_until(stream, b"\r\n\r\n")
    if b"\r\n\r\n" not in request:
        return
    key = b""
    for line in request.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    try:
        for delay, chunk in answer.chunks(key):
            if delay:
                await trio.sleep(delay)
            await stream.send_all(chunk)
        if answer.ending == "hang" or answer.valid:
            await trio.sleep_forever()
        if answer.ending == "reset":
            if reset is None:
                assert isinstance(stream, trio.SocketStream)
                _reset(stream)
            else:
                reset()
    except trio.BrokenResourceError:
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def raw_server(nursery: trio.Nursery, handler: Callable[[trio.SocketStream], object]) -> int:
    """Serve ``handler`` on 127.0.0.1:0; return the port."""
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


# -- in memory ---------------------------------------------------------------------------------


class _ClientEnd(trio.abc.Stream):
    """The client's end of an in-memory connection, where the server's reset arrives as a real
    socket's does: the data sent before it, then ``BrokenResourceError`` caused by
    ``ConnectionResetError`` (instead of the end of file a close gives)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self._inner = inner
        self.was_reset = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._inner.receive_some(max_bytes)
        if not data and self.was_reset:
            cause = ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
            raise trio.BrokenResourceError(f"socket connection broken: {cause}") from cause
        return data

    async def aclose(self) -> None:
        await self._inner.aclose()


class MemoryConnector(WebSocketConnector):
    """The real ``WebSocketConnector`` with its TCP connect replaced: each connection is an
    in-memory stream to a server task (in ``nursery``) playing ``answer``. The upgrade check,
    trio-websocket and every deadline run exactly as on a socket."""

    def __init__(self, nursery: trio.Nursery, answer: Answer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server_nursery = nursery
        self._answer = answer

    async def _open_stream(self, target: WsUrl) -> Any:
        await trio.lowlevel.checkpoint()
        client, server = trio.testing.memory_stream_pair()
        end = _ClientEnd(client)

        def reset() -> None:
            end.was_reset = True

        self._server_nursery.start_soon(partial(play, server, self._answer, reset=reset))
        return end
