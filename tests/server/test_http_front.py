"""The listener's front: its upgrade check agrees with wsproto, its replay stream replays.

``upgrade_problem`` decides on the parsed head what trio-websocket's wsproto will decide on the
bytes next. If the front let through an upgrade wsproto refuses, the connection would hang
until the handshake deadline (or, for non-ASCII headers, raise in trio-websocket's reader); if
it refused one wsproto accepts, a good client would be turned away. So the two must agree on
every request, which hypothesis checks on requests built from the headers that matter.
"""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import example, given
from hypothesis import strategies as st
from wsproto.connection import ConnectionType
from wsproto.events import RejectConnection, Request
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from stellate.adapters.http_front import (
    BadRequest,
    ReplayStream,
    RequestReader,
    Traffic,
    upgrade_problem,
)

GOOD = [
    (b"Host", b"127.0.0.1:5005"),
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"Sec-WebSocket-Version", b"13"),
]
NAMES = [name for name, _ in GOOD] + [b"Sec-WebSocket-Protocol", b"Sec-WebSocket-Extensions"]
VALUES = st.sampled_from(
    [
        b"websocket",
        b"WebSocket",
        b"Upgrade",
        b"keep-alive, upgrade",
        b"keep-alive",
        b"13",
        b"12",
        b"8, 13",
        b"",
        b"x",
        b"aip",
        b"\xff",
        b"caf\xe9",
        b"xn--",
        b"a..b",
        b"dGhlIHNhbXBsZSBub25jZQ==",
    ]
) | st.binary(max_size=12).filter(lambda v: b"\r" not in v and b"\n" not in v)


@st.composite
def upgrades(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"GET", b"POST", b"HEAD"]))
    headers = [h for h in GOOD if draw(st.integers(0, 9)) > 0]  # each dropped now and then
    for _ in range(draw(st.integers(0, 4))):  # replaced, repeated or added
        headers.insert(
            draw(st.integers(0, len(headers))), (draw(st.sampled_from(NAMES)), draw(VALUES))
        )
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))  # 1.0 needs no Host for h11
    lines = [method + b" /ws HTTP/" + version, *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def wsproto_verdict(raw: bytes) -> int | None:
    """What wsproto does with ``raw``: None (accepts), a status (refuses), or -1 (raises)."""
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        handshake.receive_data(raw)
        events = list(handshake.events())
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        return hint.status_code if isinstance(hint, RejectConnection) else 400
    except UnicodeError:
        return -1
    assert any(isinstance(event, Request) for event in events)
    return None


async def parsed(raw: bytes) -> object:
    stream = trio.testing.MemoryReceiveStream()
    stream.put_data(raw)
    stream.put_eof()
    return await RequestReader(stream, Traffic()).read()


@given(raw=upgrades())
@example(raw=b"GET /ws HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in GOOD) + b"\r\n")
@example(raw=b"GET /ws HTTP/1.1\r\nHost: \xff\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
def test_the_front_refuses_exactly_what_wsproto_refuses(raw: bytes) -> None:
    try:
        head = trio.run(parsed, raw)
    except BadRequest:
        return  # not even HTTP: the front answers 400 before any upgrade check
    ours = upgrade_problem(head)  # type: ignore[arg-type]
    theirs = wsproto_verdict(raw)
    if theirs is None:
        assert ours is None, ours
    else:
        assert ours is not None, f"wsproto refuses ({theirs}) what the front lets through"
        if theirs != -1:
            assert ours[0] == theirs


async def test_the_replay_stream_gives_back_what_was_read_then_reads_on() -> None:
    left, right = trio.testing.memory_stream_pair()
    traffic = Traffic()
    replay = ReplayStream(right, b"HEAD-BYTES", "127.0.0.1:1", traffic)
    assert repr(replay) == "127.0.0.1:1"
    assert await replay.receive_some(4) == b"HEAD"
    assert await replay.receive_some() == b"-BYTES"
    await left.send_all(b"frame")
    assert await replay.receive_some(100) == b"frame"
    await replay.send_all(b"answer")
    assert await left.receive_some(100) == b"answer"
    # Only what crossed the socket counts: the replayed bytes were counted when first read.
    assert (traffic.received, traffic.sent) == (5, 6)
    await replay.aclose()
