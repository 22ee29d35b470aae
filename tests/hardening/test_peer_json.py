"""Issue 21, classes 3 and 6: what a peer's JSON may be — as deep as it likes, numbers as big
as it likes — is bounded where a frame is decoded, so nothing downstream meets it.

Class 3: a device registering with ``system_info`` nested 450 levels (a 1 KB frame) made every
``device_info_request`` about it fail with a RecursionError traceback and a 1011 close: the
frame decoded, the encoder of the answer recursed. Class 6: ``1e400`` in telemetry decoded as
infinity, and the server sent it back as ``Infinity``, which its own codec refuses. Now a frame
nested more than ``MAX_DEPTH`` levels, or holding a number no double can hold, is refused where
it is decoded (a register frame: error frame and close 1008), and the encoder refuses the same,
so whatever the server keeps it can send, and whatever it sends decodes.

The server is driven here through its sans-IO sessions (a device and a constellation sharing a
registry), which is where every frame of the real server goes; one test runs the outside
run's exact frame through a live server in memory.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from aip_frames import device_register
from hardening_support import FIGURES, live_server
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.protocol import (
    ClientMessage,
    ClientMessageType,
    ClientType,
    ProtocolError,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
    decode_client,
    decode_server,
    encode_client,
    encode_server,
)
from stellate.protocol.codec import MAX_DEPTH
from stellate.protocol.registry import ClientRegistry
from stellate.protocol.session_server import Close, Send, ServerSession

DEVICE = "deep-dev"
CONSTELLATION = f"probe@{DEVICE}"


def nested(levels: int, kind: str, leaf: Any = 1) -> Any:
    """A value nesting ``levels`` arrays or objects (0: the leaf itself)."""
    value = leaf
    for _ in range(levels):
        value = [value] if kind == "array" else {"k": value}
    return value


def register_frame(system_info: Any) -> str:
    return device_register(DEVICE, system_info)


def frames_of(actions: list[Any]) -> list[str]:
    return [action.frame for action in actions if isinstance(action, Send)]


def ask_for_device_info(register: str) -> tuple[list[Any], list[str]]:
    """A device sends ``register``; a constellation for it asks for its device info.

    Returns the device's actions and every frame the constellation was sent.
    """
    registry = ClientRegistry()
    device = ServerSession(registry, 0.0)
    device_actions = device.receive(register, 0.0)
    constellation = ServerSession(registry, 0.0)
    sent = frames_of(
        constellation.receive(
            json.dumps(
                {
                    "type": "register",
                    "status": "ok",
                    "client_type": "constellation",
                    "client_id": CONSTELLATION,
                    "target_id": DEVICE,
                }
            ),
            0.0,
        )
    )
    sent += frames_of(
        constellation.receive(
            json.dumps(
                {
                    "type": "device_info_request",
                    "status": "ok",
                    "client_type": "constellation",
                    "target_id": DEVICE,
                    "request_id": "r1",
                }
            ),
            0.0,
        )
    )
    return device_actions, sent


# -- class 3: depth ------------------------------------------------------------------------------


@settings(max_examples=examples(150))
@given(levels=st.integers(0, 1_500), kind=st.sampled_from(["array", "object"]))
@example(levels=MAX_DEPTH - 3, kind="object")  # the deepest system_info a frame may carry
@example(levels=MAX_DEPTH - 2, kind="object")
@example(levels=450, kind="object")  # the outside run's frame
def test_a_frame_decodes_exactly_when_it_is_at_most_max_depth_deep(levels: int, kind: str) -> None:
    """``system_info`` sits at level 3: the frame nests ``levels + 2`` levels."""
    FIGURES["deep frames tried"] += 1
    frame = register_frame(nested(levels, kind))
    depth = levels + 2
    try:
        message = decode_client(frame)
    except ProtocolError as refused:
        assert depth > MAX_DEPTH, f"a frame {depth} levels deep was refused: {refused}"
        assert "nested more than" in str(refused)
    else:
        assert depth <= MAX_DEPTH, f"a frame {depth} levels deep was accepted"
        assert decode_client(encode_client(message)) == message  # and it goes out again


@settings(max_examples=examples(150))
@given(levels=st.integers(0, 1_000), kind=st.sampled_from(["array", "object"]))
@example(levels=450, kind="object")
@example(levels=MAX_DEPTH - 3, kind="array")
@example(levels=MAX_DEPTH - 2, kind="array")
def test_whatever_depth_a_device_registers_with_device_info_about_it_is_answered(
    levels: int, kind: str
) -> None:
    """The bug's path: the device's frame is taken or refused whole, and every frame the
    server sends the constellation decodes with its own codec (never a traceback). The
    ``system_info`` object holds the nested value: the frame nests ``levels + 3`` levels."""
    FIGURES["deep frames tried"] += 1
    device_actions, sent = ask_for_device_info(register_frame({"deep": nested(levels, kind)}))
    refused = any(isinstance(action, Close) for action in device_actions)
    assert refused == (levels + 3 > MAX_DEPTH)
    answers = [decode_server(frame) for frame in sent]
    if refused:  # no such device: the constellation is turned away
        assert "is not connected" in (answers[-1].error or "")
    else:
        assert answers[-1].type is ServerMessageType.DEVICE_INFO_RESPONSE
        assert answers[-1].result == {"deep": nested(levels, kind)}


def test_the_encoder_refuses_what_the_decoder_refuses() -> None:
    """One rule both ways: a message nested past the limit is not sent either."""
    deepest_ok = ServerMessage(
        type=ServerMessageType.DEVICE_INFO_RESPONSE,
        status=TaskStatus.OK,
        result=nested(MAX_DEPTH - 1, "object"),
    )
    assert decode_server(encode_server(deepest_ok)) == deepest_ok
    too_deep = ServerMessage(
        type=ServerMessageType.DEVICE_INFO_RESPONSE,
        status=TaskStatus.OK,
        result=nested(MAX_DEPTH, "object"),
    )
    with pytest.raises(ProtocolError, match="nested more than"):
        encode_server(too_deep)


async def test_the_outside_runs_frame_no_longer_breaks_device_info(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """450 levels in a 1 KB frame, through a live server: refused at registration with 1008,
    and a constellation for that device is told it is not connected (no 1011, no traceback)."""
    url = "ws://deep:5005/ws"
    async with live_server(url) as (network, server):
        frame = register_frame({"deep": nested(450, "array")})
        assert len(frame) < 1_100
        async with network.open(url) as device:
            await device.send(frame)
            error = json.loads(await device.receive())
            assert error["type"] == "error" and "nested more than 64" in error["error"]
        assert server.online_clients() == []


# -- class 6: numbers ----------------------------------------------------------------------------

numbers = st.one_of(
    st.builds(
        lambda sign, digits, fraction, exponent: f"{sign}{digits}{fraction}{exponent}",
        st.sampled_from(["", "-"]),
        st.from_regex(r"\A(0|[1-9][0-9]{0,30})\Z"),
        st.sampled_from(["", ".5", ".0", ".9999999999999999999"]),
        st.builds(
            lambda e, n: f"{e}{n}",
            st.sampled_from(["", "e", "E", "e+", "e-"]),
            st.integers(0, 400),
        ).map(lambda text: "" if text[-1:] == "" else text),
    ),
    st.sampled_from(["1e400", "-1e400", "1E309", "2e308", "1.8e308", "1.7976931348623157e308"]),
)


def _is_json_number(text: str) -> bool:
    try:
        json.loads(text, parse_constant=lambda name: 1 / 0)
    except (ValueError, ZeroDivisionError):
        return False
    return True


@settings(max_examples=examples(300))
@given(number=numbers, where=st.sampled_from(["system_info", "custom", "list"]))
@example(number="1e400", where="system_info")
@example(number="1.7976931348623157e308", where="system_info")
def test_a_number_a_double_cannot_hold_is_refused_and_every_other_goes_out_as_it_came(
    number: str, where: str
) -> None:
    FIGURES["non-JSON numbers tried"] += 1
    if not _is_json_number(number):
        return  # the strategy's "1e" shapes: not JSON at all, refused as such elsewhere
    holder = {
        "system_info": f'{{"memory_total_gb": {number}}}',
        "custom": f'{{"custom_metadata": {{"x": [{number}]}}}}',
        "list": f'{{"values": [{number}, 1]}}',
    }[where]
    frame = (
        f'{{"type": "register", "status": "ok", "client_id": "{DEVICE}", "metadata": '
        f'{{"system_info": {holder}}}}}'
    )
    device_actions, sent = ask_for_device_info(frame)
    fits = abs(float(number)) != float("inf")
    assert (not any(isinstance(a, Close) for a in device_actions)) == fits
    for text in frames_of(device_actions) + sent:
        # Every frame the server sends is strict JSON: no NaN, no Infinity.
        assert "Infinity" not in text and "NaN" not in text, text
        decode_server(text)
    answer = decode_server(sent[-1])
    if fits:
        assert answer.result == json.loads(holder)


def test_the_encoder_refuses_a_number_that_is_not_json() -> None:
    for value in (float("inf"), float("-inf"), float("nan")):
        message = ClientMessage(
            type=ClientMessageType.REGISTER,
            status=TaskStatus.OK,
            client_type=ClientType.DEVICE,
            client_id=DEVICE,
            metadata={"system_info": {"x": value}},
        )
        with pytest.raises(ProtocolError, match="cannot encode"):
            encode_client(message)
