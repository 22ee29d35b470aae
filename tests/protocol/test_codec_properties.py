"""Codec properties: encoding round-trips; bad input only ever raises ProtocolError."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

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

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
texts = st.none() | st.text(max_size=20)
objects = st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3)
arrays = st.none() | st.lists(json_values, max_size=3)

client_messages = st.builds(
    ClientMessage,
    type=st.sampled_from(ClientMessageType),
    status=st.sampled_from(TaskStatus),
    client_type=st.sampled_from(ClientType),
    action_results=arrays,
    metadata=objects,
    **dict.fromkeys(
        [
            "session_id",
            "task_name",
            "client_id",
            "target_id",
            "request",
            "timestamp",
            "request_id",
            "prev_response_id",
            "error",
        ],
        texts,
    ),
)
server_messages = st.builds(
    ServerMessage,
    type=st.sampled_from(ServerMessageType),
    status=st.sampled_from(TaskStatus),
    actions=arrays,
    messages=arrays,
    result=json_values,
    **dict.fromkeys(
        [
            "user_request",
            "agent_name",
            "process_name",
            "root_name",
            "error",
            "session_id",
            "task_name",
            "timestamp",
            "response_id",
        ],
        texts,
    ),
)


@given(client_messages)
def test_client_messages_round_trip(message: ClientMessage) -> None:
    assert decode_client(encode_client(message)) == message


@given(server_messages)
def test_server_messages_round_trip(message: ServerMessage) -> None:
    assert decode_server(encode_server(message)) == message


@st.composite
def _damaged_frames(draw: st.DrawFn, messages: st.SearchStrategy[Any], encode: Any) -> Any:
    """A valid frame's JSON object with up to three keys replaced by any JSON value or removed.

    Returns ``(original, damaged, untouched keys)``.
    """
    original: dict[str, Any] = json.loads(encode(draw(messages)))
    keys = sorted(original)
    damaged = dict(original)
    changed = draw(st.lists(st.sampled_from(keys), unique=True, max_size=3))
    for key in changed:
        if draw(st.booleans()):
            damaged[key] = draw(json_values)
        else:
            del damaged[key]
    return original, damaged, [k for k in keys if k not in changed]


_CODECS = [
    (decode_client, encode_client, client_messages),
    (decode_server, encode_server, server_messages),
]


def assert_both_outcomes(values: st.SearchStrategy[Any], attempt: Any) -> None:
    """Runs ``attempt`` on drawn values: it checks one value and returns the outcomes it saw
    ("decoded" or "rejected", one per decoder tried). Both outcomes must occur: a property
    whose one branch never runs proves nothing."""
    outcomes: Counter[str] = Counter()

    @given(values)
    def check(value: Any) -> None:
        outcomes.update(attempt(value))

    check()
    assert outcomes["decoded"] and outcomes["rejected"], outcomes


@pytest.mark.parametrize(("decode", "encode", "messages"), _CODECS)
def test_a_damaged_frame_decodes_to_what_it_says_or_raises_protocol_error(
    decode: Any, encode: Any, messages: st.SearchStrategy[Any]
) -> None:
    """Either a ProtocolError, or a message that keeps every untouched field and round-trips;
    both occur."""

    def attempt(frame: tuple[dict[str, Any], dict[str, Any], list[str]]) -> list[str]:
        original, damaged, untouched = frame
        try:
            message = decode(json.dumps(damaged))
        except ProtocolError:
            assert damaged != original, "an undamaged frame was rejected"
            return ["rejected"]
        again = json.loads(encode(message))
        assert {k: again[k] for k in untouched} == {k: original[k] for k in untouched}
        assert decode(encode(message)) == message
        return ["decoded"]

    assert_both_outcomes(_damaged_frames(messages, encode), attempt)


def test_any_json_value_decodes_or_raises_protocol_error() -> None:
    """Any JSON at all: a ProtocolError, or a message of the type the object names."""
    frames = st.one_of(
        json_values,
        _damaged_frames(client_messages, encode_client).map(lambda frame: frame[1]),
    )

    def attempt(value: Any) -> list[str]:
        seen = []
        for decode, encode, _messages in _CODECS:
            try:
                message = decode(json.dumps(value))
            except ProtocolError:
                seen.append("rejected")
                continue
            seen.append("decoded")
            assert isinstance(value, dict) and message.type.value == value["type"]
            assert decode(encode(message)) == message
        return seen

    assert_both_outcomes(frames, attempt)


def test_any_bytes_decode_as_their_text_or_raise_protocol_error() -> None:
    """Bytes decode exactly as the UTF-8 text they hold would, or raise ProtocolError."""
    frames = st.one_of(
        st.binary(max_size=50),
        client_messages.map(encode_client).map(str.encode),
        st.text(max_size=20).map(lambda t: t.encode("utf-16")),
    )

    def attempt(data: bytes) -> list[str]:
        try:
            message = decode_client(data)
        except ProtocolError:
            return ["rejected"]
        assert message == decode_client(data.decode())
        return ["decoded"]

    assert_both_outcomes(frames, attempt)
