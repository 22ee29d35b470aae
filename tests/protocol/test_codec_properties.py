"""Codec properties: encoding round-trips; bad input only ever raises ProtocolError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import attrs
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
    session_id=texts,
    task_name=texts,
    client_id=texts,
    target_id=texts,
    request=texts,
    action_results=arrays,
    timestamp=texts,
    request_id=texts,
    prev_response_id=texts,
    error=texts,
    metadata=objects,
)
server_messages = st.builds(
    ServerMessage,
    type=st.sampled_from(ServerMessageType),
    status=st.sampled_from(TaskStatus),
    user_request=texts,
    agent_name=texts,
    process_name=texts,
    root_name=texts,
    actions=arrays,
    messages=arrays,
    error=texts,
    session_id=texts,
    task_name=texts,
    timestamp=texts,
    response_id=texts,
    result=json_values,
)


@given(client_messages)
def test_client_messages_round_trip(message: ClientMessage) -> None:
    assert decode_client(encode_client(message)) == message


@given(server_messages)
def test_server_messages_round_trip(message: ServerMessage) -> None:
    assert decode_server(encode_server(message)) == message


@given(json_values)
def test_any_json_decodes_or_raises_protocol_error(value: Any) -> None:
    text = json.dumps(value)
    for decode in (decode_client, decode_server):
        with contextlib.suppress(ProtocolError):
            decode(text)


@given(st.dictionaries(st.sampled_from([f.name for f in attrs.fields(ClientMessage)]), json_values))
def test_any_object_with_known_keys_decodes_or_raises_protocol_error(data: dict[str, Any]) -> None:
    try:
        message = decode_client(json.dumps(data))
    except ProtocolError:
        return
    assert json.loads(encode_client(message))["type"] == data["type"]


@given(st.binary(max_size=50))
def test_any_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_client(data)
