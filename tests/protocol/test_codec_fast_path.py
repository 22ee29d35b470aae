"""The codec's fast paths give exactly what its general (cattrs) path gives.

Decoding: any object whose keys are message fields decodes to the same message, or fails with
the same error text. Encoding: the same text for any message, and a ``FrameTemplate`` filled
with any strings is the same text as encoding the message with those strings.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_codec_properties import client_messages, json_values, server_messages

from stellate.protocol import (
    ClientMessage,
    ClientMessageType,
    ClientRegistry,
    ClientType,
    ConstellationSession,
    DeviceSession,
    ProtocolError,
    Send,
    ServerMessage,
    ServerMessageType,
    ServerSession,
    TaskStatus,
    codec,
    decode_client,
    decode_server,
    encode_client,
    encode_server,
)
from stellate.protocol.codec import FrameTemplate

#: Values that hit each check's edges: right and wrong types, enum strings and near misses.
edgy_values: st.SearchStrategy[Any] = (
    json_values
    | st.sampled_from([v.value for e in (ClientMessageType, TaskStatus, ClientType) for v in e])
    | st.sampled_from([v.value for v in ServerMessageType])
    | st.sampled_from(["OK", "Heartbeat", "", 1.5, True, [], {}])
)
#: Strings a peer or a config could put in a frame: ASCII, any Unicode, lone surrogates.
any_text = st.text(max_size=12) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3
)


def _outcome(decode: Any, data: dict[str, Any]) -> object:
    try:
        return decode(data)
    except ProtocolError as exc:
        return ("error", str(exc))


def _objects(cls: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from([f.name for f in attrs.fields(cls)]), edgy_values)


@given(_objects(ClientMessage))
def test_client_objects_decode_as_the_strict_path_decides(data: dict[str, Any]) -> None:
    strict = _outcome(lambda d: codec._structure_strictly(d, ClientMessage), data)
    assert _outcome(decode_client, json.dumps(data)) == strict


@given(_objects(ServerMessage))
def test_server_objects_decode_as_the_strict_path_decides(data: dict[str, Any]) -> None:
    strict = _outcome(lambda d: codec._structure_strictly(d, ServerMessage), data)
    assert _outcome(decode_server, json.dumps(data)) == strict


@given(client_messages, any_text)
def test_a_client_template_fills_to_the_encoded_message(message: ClientMessage, now: str) -> None:
    template = FrameTemplate(lambda at: attrs.evolve(message, timestamp=at))
    assert template.fill(now) == encode_client(attrs.evolve(message, timestamp=now))


@given(server_messages, any_text, any_text, any_text)
def test_a_server_template_fills_to_the_encoded_message(
    message: ServerMessage, now: str, response_id: str, nested: str
) -> None:
    def build(at: str, key: str, value: str) -> ServerMessage:
        return attrs.evolve(message, timestamp=at, result={key: [value, 1]})

    template = FrameTemplate(build)
    assert template.fill(now, response_id, nested) == encode_server(build(now, response_id, nested))


@given(any_text)
def test_a_template_with_a_lone_surrogate_in_its_fixed_part_still_encodes_exactly(
    now: str,
) -> None:
    def build(at: str) -> ClientMessage:
        return ClientMessage(
            type=ClientMessageType.HEARTBEAT,
            status=TaskStatus.OK,
            client_id="d\ud800",
            timestamp=at,
        )

    assert FrameTemplate(build).fill(now) == encode_client(build(now))


def test_a_template_needs_one_value_per_slot() -> None:
    template = FrameTemplate(
        lambda at: ServerMessage(
            type=ServerMessageType.HEARTBEAT, status=TaskStatus.OK, timestamp=at
        )
    )
    with pytest.raises(TypeError):
        template.fill("now", "extra")


@given(any_text, any_text, any_text)
def test_a_constellation_heartbeat_is_the_reference_frame_encoded(
    task_name: str, device_id: str, now: str
) -> None:
    session = ConstellationSession(task_name, device_id, now=lambda: now)
    session.register()
    session.receive('{"type": "heartbeat", "status": "ok"}')
    expected = ClientMessage(
        type=ClientMessageType.HEARTBEAT,
        status=TaskStatus.OK,
        client_type=ClientType.CONSTELLATION,
        client_id=f"{task_name}@{device_id}",
        timestamp=now,
        metadata={"device_id": device_id},
    )
    assert session.heartbeat() == encode_client(expected)


@given(any_text, any_text)
def test_a_device_heartbeat_is_the_reference_frame_encoded(device_id: str, now: str) -> None:
    session = DeviceSession(device_id, {}, "linux", now=lambda: now)
    session.register()
    session.receive('{"type": "heartbeat", "status": "ok"}')
    expected = ClientMessage(
        type=ClientMessageType.HEARTBEAT,
        status=TaskStatus.OK,
        client_id=device_id,
        timestamp=now,
    )
    assert session.heartbeat() == encode_client(expected)


@given(any_text, any_text)
def test_a_server_ack_is_the_reference_frame_encoded(now: str, response_id: str) -> None:
    session = ServerSession(ClientRegistry(), 0.0, now=lambda: now, new_id=lambda: response_id)
    register = '{"type": "register", "status": "ok", "client_id": "d"}'
    (ack,) = session.receive(register, 0.0)
    expected = ServerMessage(
        type=ServerMessageType.HEARTBEAT,
        status=TaskStatus.OK,
        timestamp=now,
        response_id=response_id,
    )
    assert ack == Send(encode_server(expected))


@given(json_values)
def test_shared_strings_keep_the_value(value: Any) -> None:
    assert codec.share_strings(value) == value


def test_telemetry_strings_are_shared_between_devices() -> None:
    frame = '{"platform": "linux", "supported_features": ["gui", "cli"], "tags": {"rack": "a1"}}'
    first, second = (codec.share_strings(json.loads(frame)) for _ in range(2))
    assert first == second
    assert first["platform"] is second["platform"]
    assert first["supported_features"][1] is second["supported_features"][1]
    assert next(iter(first["tags"])) is next(iter(second["tags"]))


def test_the_shared_table_is_bounded_and_long_or_deep_values_are_kept_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec, "_SHARED", {})
    monkeypatch.setattr(codec, "SHARED_STRINGS_CAP", 2)
    assert codec.share_strings(["a", "b", "c", "d"]) == ["a", "b", "c", "d"]
    assert sorted(codec._SHARED) == ["a", "b"]
    long = "x" * 1000
    assert codec.share_strings(long) is long
    deep: Any = "leaf"
    for _ in range(2000):  # deeper than the interpreter's recursion limit
        deep = [deep]
    assert codec.share_strings(deep) == deep


def test_a_device_info_answer_shares_its_strings() -> None:
    sessions = [ConstellationSession("t", f"d{i}", new_id=lambda: "r1") for i in range(2)]
    infos = []
    for session in sessions:
        session.register()
        session.receive('{"type": "heartbeat", "status": "ok"}')
        session.request_device_info()
        answer = '{"type": "device_info_response", "status": "ok", "response_id": "r1", '
        answer += '"result": {"platform": "linux", "os_version": "6.1"}}'
        (info,) = session.receive(answer)
        infos.append(info)
    assert infos[0] == infos[1]
    assert infos[0].system_info["os_version"] is infos[1].system_info["os_version"]
