"""Golden and strictness tests of the codec against frames captured from the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden_frames import FRAMES, frame, frame_text

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

CLIENT_FRAMES = [
    "constellation_heartbeat_as_galaxy_sends_it",
    "constellation_register",
    "device_heartbeat",
    "device_info_request",
    "device_register",
]
SERVER_FRAMES = [
    "device_info_response",
    "device_info_response_not_found",
    "error_client_type_mismatch",
    "error_duplicate_client_id",
    "error_target_not_connected",
    "heartbeat_ack",
    "registration_confirmation",
]


def test_every_golden_frame_is_classified() -> None:
    assert sorted(p.stem for p in FRAMES.glob("*.json")) == sorted(CLIENT_FRAMES + SERVER_FRAMES)


@pytest.mark.parametrize("name", CLIENT_FRAMES)
def test_client_frames_round_trip_byte_for_byte_in_meaning(name: str) -> None:
    message = decode_client(frame_text(name))
    assert isinstance(message, ClientMessage)
    encoded = json.loads(encode_client(message))
    assert list(encoded) == list(frame(name))  # same keys, same order
    assert encoded == frame(name)


@pytest.mark.parametrize("name", SERVER_FRAMES)
def test_server_frames_round_trip(name: str) -> None:
    message = decode_server(frame_text(name))
    assert isinstance(message, ServerMessage)
    encoded = json.loads(encode_server(message))
    assert list(encoded) == list(frame(name))
    assert encoded == frame(name)


def test_minimal_message_emits_every_key_with_nulls() -> None:
    encoded = json.loads(
        encode_client(ClientMessage(type=ClientMessageType.HEARTBEAT, status=TaskStatus.OK))
    )
    assert list(encoded) == list(frame("device_heartbeat"))
    assert encoded["client_type"] == "device"
    assert encoded["metadata"] is None
    server = json.loads(
        encode_server(ServerMessage(type=ServerMessageType.HEARTBEAT, status=TaskStatus.OK))
    )
    assert list(server) == list(frame("heartbeat_ack"))
    assert server["result"] is None


def test_absent_client_type_means_device_and_unknown_keys_are_ignored() -> None:
    message = decode_client('{"type": "heartbeat", "status": "ok", "surprise": [1, 2]}')
    assert message.client_type is ClientType.DEVICE
    assert message.client_id is None


def test_bytes_holding_utf8_json_decode() -> None:
    assert decode_client(frame_text("device_heartbeat").encode()).client_id == "linux_dev_2"


def test_non_ascii_is_kept_as_text() -> None:
    text = encode_client(
        ClientMessage(type=ClientMessageType.HEARTBEAT, status=TaskStatus.OK, client_id="gerät")
    )
    assert "gerät" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "frame is not JSON"),
        (b"\xff\xfe", "frame is not JSON"),
        ("[1, 2]", "frame is not a JSON object: got array"),
        ('"register"', "frame is not a JSON object: got string"),
        ("{}", "required key missing @ $.type"),
        ('{"type": "register"}', "required key missing @ $.status"),
        ('{"type": "reg", "status": "ok"}', 'unknown value "reg"'),
        ('{"type": "register", "status": "fine"}', "@ $.status"),
        ('{"type": "register", "status": "ok", "client_type": "robot"}', "@ $.client_type"),
        ('{"type": "register", "status": "ok", "client_type": null}', "got null @ $.client_type"),
        ('{"type": "register", "status": "ok", "client_id": 5}', "expected string, got number 5"),
        ('{"type": "register", "status": "ok", "client_id": true}', "got boolean true"),
        ('{"type": "register", "status": "ok", "metadata": []}', "expected object, got array"),
        ('{"type": "register", "status": "ok", "metadata": "x"}', "@ $.metadata"),
        ('{"type": "task", "status": "ok", "action_results": {}}', "@ $.action_results"),
        ('{"type": 1, "status": "ok"}', "expected string, got number 1 @ $.type"),
    ],
)
def test_decode_client_rejects_with_a_clear_message(text: str | bytes, expected: str) -> None:
    with pytest.raises(ProtocolError, match=None) as info:
        decode_client(text)
    assert expected in str(info.value)


def test_strings_are_not_coerced() -> None:
    with pytest.raises(ProtocolError, match="expected string, got number 5"):
        decode_server('{"type": "heartbeat", "status": "ok", "response_id": 5}')


def test_server_result_accepts_any_json() -> None:
    for result in ("[1, 2]", '"text"', "3", "null", '{"a": 1}'):
        text = '{"type": "device_info_response", "status": "ok", "result": ' + result + "}"
        assert decode_server(text).result == json.loads(result)


def test_multiple_problems_are_all_reported() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client('{"type": "register", "status": "ok", "client_id": 1, "target_id": 2}')
    assert "$.client_id" in str(info.value) and "$.target_id" in str(info.value)


def test_long_values_are_cut_short_in_errors() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_client('{"type": "register", "status": "ok", "client_id": ' + "9" * 500 + "}")
    assert len(str(info.value)) < 200


def test_frames_dir_is_a_copy_of_the_shared_one() -> None:
    shared = Path("/work/shared/aip/frames")
    if not shared.exists():  # pragma: no cover - only on the project machine
        pytest.skip("shared frames not present")
    for path in shared.glob("*.json"):
        assert json.loads(path.read_text()) == json.loads((FRAMES / path.name).read_text())


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_refused(constant: str) -> None:
    text = '{"type": "register", "status": "ok", "metadata": {"x": ' + constant + "}}"
    with pytest.raises(ProtocolError, match=f"{constant} is not valid JSON"):
        decode_client(text)
