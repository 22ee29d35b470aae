"""Issue 21, class 9: every documented limit is the one enforced, tested at its boundary.

The HTTP head limit was documented as 16 KiB while heads of 17,082 and 20,082 bytes were
answered 200: h11 bounds only a head that is still incomplete, so a head that ended inside the
read crossing the limit passed. Here each limit the README states is read from the code (one
fact, one place) and checked twice: the README says that number, and the code accepts exactly
that much and refuses one more.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
import trio.testing
from byte_streams import receive_until
from hardening_support import FIGURES
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples
from real_time import HANG_GUARD

from stellate.adapters.http_front import (
    DEFAULT_MAX_HEAD_SIZE,
    BadRequest,
    RequestReader,
    Traffic,
)

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def readme_says(phrase: str) -> None:
    """The README's Security section states ``phrase`` (whitespace-insensitive)."""
    security = README[README.index("## Security") :]
    flat = re.sub(r"\s+", " ", security)
    assert phrase in flat, f"README Security does not say {phrase!r}"


def head_of(size: int, *, upgrade: bool = False) -> bytes:
    """A GET request head of exactly ``size`` bytes (request line to the final blank line)."""
    start = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if upgrade:
        start += b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    end = b"\r\n"
    filler = size - len(start) - len(end) - len(b"X-Pad: \r\n")
    assert filler >= 0
    return start + b"X-Pad: " + b"a" * filler + b"\r\n" + end


async def read_head(raw: bytes, cuts: list[int], max_head_size: int) -> object:
    """Feed ``raw`` to a reader in the pieces ``cuts`` makes, then whatever follows."""
    stream = trio.testing.MemoryReceiveStream()
    pieces, last = [], 0
    for cut in sorted({c % (len(raw) + 1) for c in cuts}):
        pieces.append(raw[last:cut])
        last = cut
    pieces.append(raw[last:])
    for piece in pieces:
        if piece:
            stream.put_data(piece)
    stream.put_eof()
    return await RequestReader(stream, Traffic(), max_head_size=max_head_size).read()


# -- the HTTP request head ----------------------------------------------------------------------


def test_the_readme_states_the_head_limit_in_bytes() -> None:
    readme_says(f"a request head of at most {DEFAULT_MAX_HEAD_SIZE:,} bytes")


@settings(max_examples=examples(200))
@given(
    extra=st.integers(-300, 300),
    cuts=st.lists(st.integers(0, 40_000), max_size=6),
    body=st.binary(max_size=64),
    upgrade=st.booleans(),
)
@example(extra=0, cuts=[], body=b"", upgrade=False)
@example(extra=1, cuts=[], body=b"", upgrade=False)
@example(extra=17_082 - DEFAULT_MAX_HEAD_SIZE, cuts=[], body=b"", upgrade=False)
@example(extra=20_082 - DEFAULT_MAX_HEAD_SIZE, cuts=[], body=b"", upgrade=False)
def test_a_head_is_accepted_up_to_the_limit_and_refused_one_byte_over(
    extra: int, cuts: list[int], body: bytes, upgrade: bool
) -> None:
    """Whatever the reads' sizes and whatever follows the head in the same read."""
    FIGURES["limit boundaries tried"] += 1
    size = DEFAULT_MAX_HEAD_SIZE + extra
    raw = head_of(size, upgrade=upgrade) + body
    try:
        trio.run(read_head, raw, cuts, DEFAULT_MAX_HEAD_SIZE)
    except BadRequest as refused:
        assert size > DEFAULT_MAX_HEAD_SIZE, f"a head of {size} bytes was refused: {refused}"
        assert refused.status == 431
    else:
        assert size <= DEFAULT_MAX_HEAD_SIZE, f"a head of {size} bytes was accepted"


@pytest.mark.parametrize("size", [DEFAULT_MAX_HEAD_SIZE, DEFAULT_MAX_HEAD_SIZE + 1, 17_082, 20_082])
async def test_a_real_listener_answers_heads_by_the_documented_limit(size: int) -> None:
    """On a socket: the whole head in one write, the way the outside run sent it."""
    from stellate.server import AgentServer

    FIGURES["limit boundaries tried"] += 1
    server = AgentServer()
    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(head_of(size))
                answer = await receive_until(stream, b"\r\n")
            nursery.cancel_scope.cancel()
    status = int(answer.split(b" ", 2)[1])
    assert status == (200 if size <= DEFAULT_MAX_HEAD_SIZE else 431), (size, answer[:80])


# -- peer JSON -----------------------------------------------------------------------------------


def test_the_readme_states_the_frame_depth_limit() -> None:
    from stellate.protocol.codec import MAX_DEPTH

    readme_says(f"| `stellate.protocol.codec.MAX_DEPTH` | {MAX_DEPTH} levels |")


# -- the fleet port ------------------------------------------------------------------------------


def test_the_readme_states_the_fleet_port_s_share() -> None:
    from stellate.manager.metrics import FLEET_DESCRIPTORS, MAX_FLEET_CONNECTIONS

    readme_says(f"it holds at most {MAX_FLEET_CONNECTIONS} connections at once")
    readme_says(f"({FLEET_DESCRIPTORS} descriptors, with its listening sockets)")


# -- the other documented limits: the README's number is the code's, and it holds at its edge ----


def test_the_readme_states_the_other_limits_as_the_code_enforces_them() -> None:
    from stellate.adapters.ws_handshake import MAX_RETRY_AFTER
    from stellate.config import LoadLimits
    from stellate.config.model import MAX_RETRIES
    from stellate.protocol.ids import MAX_ID_LENGTH
    from stellate.protocol.session_server import DEFAULT_MAX_SYSTEM_INFO_BYTES
    from stellate.server.agent_server import DEFAULT_MAX_MESSAGE_SIZE
    from stellate.text.escape import DEFAULT_LIMIT

    limits = LoadLimits()
    assert DEFAULT_MAX_MESSAGE_SIZE == 1 << 20
    readme_says("| frame size | `--max-message-size` / `max_message_size` | 1 MiB |")
    assert DEFAULT_MAX_SYSTEM_INFO_BYTES == 64 * 1024
    readme_says("| 64 KiB of compact JSON |")
    readme_says(f"1 to {MAX_ID_LENGTH} characters")
    readme_says(f"long text is cut ({DEFAULT_LIMIT} characters")
    readme_says(f"`max_retries` is at most {MAX_RETRIES:,}")
    assert MAX_RETRY_AFTER == 3600
    readme_says("at most 1 hour")
    assert (limits.max_bytes, limits.max_depth, limits.max_nodes) == (4 << 20, 64, 1_000_000)
    readme_says("A regular file of at most 4 MiB")
    readme_says(f"At most {limits.max_depth} nested levels and {limits.max_nodes:,} values")


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_system_info_is_kept_up_to_the_limit_and_not_one_byte_over(extra: int) -> None:
    import json

    from stellate.protocol.registry import ClientRegistry
    from stellate.protocol.session_server import DEFAULT_MAX_SYSTEM_INFO_BYTES, ServerSession

    FIGURES["limit boundaries tried"] += 1
    shell = len(json.dumps({"pad": ""}, separators=(",", ":")))
    info = {"pad": "x" * (DEFAULT_MAX_SYSTEM_INFO_BYTES + extra - shell)}
    assert len(json.dumps(info, separators=(",", ":"))) == DEFAULT_MAX_SYSTEM_INFO_BYTES + extra
    registry = ClientRegistry()
    frame = {
        "type": "register",
        "status": "ok",
        "client_id": "d",
        "metadata": {"system_info": info},
    }
    ServerSession(registry, 0.0).receive(json.dumps(frame), 0.0)
    entry = registry.get("d")
    assert entry is not None  # registered either way; only the system info is not kept
    assert (entry.system_info is not None) == (extra <= 0)


@pytest.mark.parametrize("extra", [0, 1])
def test_an_id_is_taken_up_to_its_length_limit_and_not_one_character_over(extra: int) -> None:
    import json

    from stellate.protocol.ids import MAX_ID_LENGTH
    from stellate.protocol.registry import ClientRegistry
    from stellate.protocol.session_server import ServerPhase, ServerSession

    FIGURES["limit boundaries tried"] += 1
    device_id = "d" * (MAX_ID_LENGTH + extra)
    session = ServerSession(ClientRegistry(), 0.0)
    session.receive(json.dumps({"type": "register", "status": "ok", "client_id": device_id}), 0.0)
    assert (session.phase is ServerPhase.REGISTERED) == (extra == 0)


@pytest.mark.parametrize("extra", [0, 1])
def test_max_retries_is_taken_up_to_its_limit_and_not_one_over(extra: int) -> None:
    from stellate.config import ConfigError, loads_config
    from stellate.config.model import MAX_RETRIES

    FIGURES["limit boundaries tried"] += 1
    text = (
        "devices:\n"
        f"  - {{device_id: d, server_url: 'ws://h:1/ws', max_retries: {MAX_RETRIES + extra}}}\n"
    )
    if extra == 0:
        assert loads_config(text).devices[0].max_retries == MAX_RETRIES
    else:
        with pytest.raises(ConfigError, match="max_retries"):
            loads_config(text)


@pytest.mark.parametrize("extra", [0, 1])
async def test_a_frame_is_taken_up_to_the_size_limit_and_closed_one_byte_over(
    extra: int,
) -> None:
    """The limit is the configured one, exactly (a small one here: the same code path)."""
    import json

    from stellate.adapters.websocket import WebSocketConnector
    from stellate.protocol.transport import ConnectionClosed
    from stellate.server import AgentServer

    FIGURES["limit boundaries tried"] += 1
    limit = 4096
    frame = json.dumps({"type": "register", "status": "ok", "client_id": "d", "pad": ""})
    frame = frame[:-2] + "x" * (limit + extra - len(frame)) + '"}'
    assert len(frame.encode()) == limit + extra
    server = AgentServer(max_message_size=limit)
    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with WebSocketConnector().open(f"ws://127.0.0.1:{port}/ws") as conn:
                await conn.send(frame)
                if extra == 0:
                    assert json.loads(await conn.receive())["type"] == "heartbeat"
                else:
                    with pytest.raises(ConnectionClosed) as closed:
                        await conn.receive()
                    assert closed.value.code == 1009
            nursery.cancel_scope.cancel()
