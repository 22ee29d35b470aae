"""The client sessions, phase by phase: the same frame means different things in each phase."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from golden_frames import VOLATILE_KEYS, frame, frame_text

from stellate.protocol import (
    ConstellationSession,
    DeviceInfo,
    DeviceSession,
    HeartbeatAck,
    Ignored,
    PeerError,
    ProtocolViolation,
    Registered,
    Rejected,
    Reply,
    SessionPhase,
    SessionStateError,
)

NOW = "2026-11-23T09:11:23.565264+00:00"


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"req-{next(counter)}"


def constellation() -> ConstellationSession:
    return ConstellationSession("probe_galaxy", "linux_dev_2", now=lambda: NOW, new_id=ids())


def registered_constellation() -> ConstellationSession:
    session = constellation()
    session.register()
    assert session.receive(frame_text("registration_confirmation")) == [Registered()]
    return session


def device() -> DeviceSession:
    info = frame("device_register")["metadata"]["system_info"]
    return DeviceSession("linux_dev_2", info, "linux", now=lambda: NOW, new_id=ids())


def registered_device() -> DeviceSession:
    session = device()
    session.register()
    assert session.receive(frame_text("registration_confirmation")) == [Registered()]
    return session


def without_volatile(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in VOLATILE_KEYS}


def server_frame(**fields: Any) -> str:
    base: dict[str, Any] = {"type": "heartbeat", "status": "ok"}
    base.update(fields)
    return json.dumps(base)


# --- what the sessions send ---------------------------------------------------------------


def test_constellation_register_matches_the_reference_frame() -> None:
    ours = json.loads(constellation().register())
    theirs = frame("constellation_register")
    assert list(ours) == list(theirs)
    assert without_volatile(ours) == without_volatile(theirs)
    assert ours["timestamp"] == NOW


def test_constellation_heartbeat_names_its_client_type() -> None:
    ours = json.loads(registered_constellation().heartbeat())
    theirs = frame("constellation_heartbeat_as_galaxy_sends_it")
    assert list(ours) == list(theirs)
    assert ours["client_type"] == "constellation"  # the reference's bug: it sends "device"
    assert without_volatile({**ours, "client_type": "device"}) == without_volatile(theirs)


def test_device_info_request_matches_the_reference_frame() -> None:
    session = registered_constellation()
    ours = json.loads(session.request_device_info())
    theirs = frame("device_info_request")
    assert list(ours) == list(theirs)
    assert without_volatile(ours) == without_volatile(theirs)
    assert ours["request_id"] == session.pending_request_id == "req-1"


def test_device_register_matches_the_reference_frame() -> None:
    ours = json.loads(device().register())
    theirs = frame("device_register")
    assert list(ours) == list(theirs)
    assert list(ours["metadata"]) == list(theirs["metadata"])
    assert without_volatile(ours) == {
        **without_volatile(theirs),
        "metadata": {**theirs["metadata"], "registration_time": NOW},
    }


def test_device_heartbeat_matches_the_reference_frame() -> None:
    ours = json.loads(registered_device().heartbeat())
    theirs = frame("device_heartbeat")
    assert list(ours) == list(theirs)
    assert without_volatile(ours) == without_volatile(theirs)


def test_client_id_is_task_at_device() -> None:
    assert constellation().client_id == "probe_galaxy@linux_dev_2"


def test_default_clock_and_ids_are_sane() -> None:
    session = ConstellationSession("t", "d")
    sent = json.loads(session.register())
    assert sent["timestamp"].endswith("+00:00")
    session.receive(frame_text("registration_confirmation"))
    assert len(json.loads(session.request_device_info())["request_id"]) == 36


# --- misuse -------------------------------------------------------------------------------


def test_register_twice_is_refused() -> None:
    session = constellation()
    session.register()
    with pytest.raises(SessionStateError, match="cannot register in phase registering"):
        session.register()


@pytest.mark.parametrize("action", ["heartbeat", "request_device_info"])
def test_nothing_but_register_before_registration(action: str) -> None:
    session = constellation()
    with pytest.raises(SessionStateError):
        getattr(session, action)()
    session.register()
    with pytest.raises(SessionStateError):  # an ack would be taken for the confirmation
        getattr(session, action)()


def test_device_heartbeat_needs_registration() -> None:
    with pytest.raises(SessionStateError):
        device().heartbeat()


# --- phase-dependent meaning --------------------------------------------------------------


def test_heartbeat_frame_confirms_then_acks() -> None:
    session = constellation()
    assert session.phase is SessionPhase.NEW
    assert isinstance(session.receive(frame_text("heartbeat_ack"))[0], ProtocolViolation)
    session.register()
    assert session.phase is SessionPhase.REGISTERING
    assert session.receive(frame_text("heartbeat_ack")) == [Registered()]
    assert session.phase is SessionPhase.REGISTERED
    assert session.receive(frame_text("heartbeat_ack")) == [HeartbeatAck()]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("error_target_not_connected", "Target device 'ghost' is not connected"),
        (
            "error_duplicate_client_id",
            "client_id 'probe_dev' is already registered; duplicate registrations are not allowed",
        ),
    ],
)
def test_error_while_registering_is_a_rejection(name: str, reason: str) -> None:
    session = constellation()
    session.register()
    assert session.receive(frame_text(name)) == [Rejected(reason)]
    assert session.phase is SessionPhase.REJECTED
    assert isinstance(session.receive(frame_text("heartbeat_ack"))[0], ProtocolViolation)


def test_error_without_text_is_still_a_rejection() -> None:
    session = constellation()
    session.register()
    (event,) = session.receive(server_frame(type="error", status="error"))
    assert isinstance(event, Rejected) and event.reason


def test_a_heartbeat_with_an_error_status_refuses_the_registration() -> None:
    """Either an error frame or an error status answers REGISTER with a refusal."""
    session = constellation()
    session.register()
    (event,) = session.receive(server_frame(type="heartbeat", status="error", error="no"))
    assert event == Rejected("no") and session.phase is SessionPhase.REJECTED


def test_error_after_registration_is_a_peer_error() -> None:
    session = registered_constellation()
    text = server_frame(type="error", status="error", error="Device 'linux_dev_2' disconnected")
    assert session.receive(text) == [PeerError("Device 'linux_dev_2' disconnected")]
    assert session.phase is SessionPhase.REGISTERED


def test_unexpected_frame_while_registering_is_a_violation() -> None:
    session = constellation()
    session.register()
    (event,) = session.receive(frame_text("device_info_response"))
    assert isinstance(event, ProtocolViolation)
    assert "while registering" in event.reason


@pytest.mark.parametrize("garbage", [b"\x00binary", "not json", "[]", '{"type": "nope"}'])
def test_garbage_is_a_violation_in_every_phase(garbage: str | bytes) -> None:
    for session in (constellation(), registered_constellation()):
        (event,) = session.receive(garbage)
        assert isinstance(event, ProtocolViolation)


# --- device info --------------------------------------------------------------------------


def answer(request_id: str, result: Any) -> str:
    return server_frame(type="device_info_response", response_id=request_id, result=result)


def test_device_info_for_the_outstanding_request() -> None:
    session = registered_constellation()
    session.request_device_info()
    response = frame("device_info_response")
    response["response_id"] = "req-1"
    assert session.receive(json.dumps(response)) == [DeviceInfo(response["result"])]
    assert session.pending_request_id is None


def test_not_found_result_means_no_telemetry() -> None:
    session = registered_constellation()
    session.request_device_info()
    response = frame("device_info_response_not_found")
    response["response_id"] = "req-1"
    assert session.receive(json.dumps(response)) == [DeviceInfo(None)]


@pytest.mark.parametrize("result", [None, [1, 2], "text", 3])
def test_non_dict_result_means_no_telemetry(result: Any) -> None:
    session = registered_constellation()
    session.request_device_info()
    assert session.receive(answer("req-1", result)) == [DeviceInfo(None)]


def test_response_for_another_request_is_a_violation() -> None:
    session = registered_constellation()
    session.request_device_info()
    (event,) = session.receive(answer("someone-else", {"cpu_count": 2}))
    assert isinstance(event, ProtocolViolation)
    assert session.pending_request_id == "req-1"  # still waiting for ours


def test_response_with_nothing_outstanding_is_a_violation() -> None:
    session = registered_constellation()
    (event,) = session.receive(answer("req-1", {"cpu_count": 2}))
    assert isinstance(event, ProtocolViolation)
    session.request_device_info()
    session.receive(answer("req-1", {"cpu_count": 2}))
    (event,) = session.receive(answer("req-1", {"cpu_count": 2}))  # answered twice
    assert isinstance(event, ProtocolViolation)


def test_task_frames_are_violations_for_a_registration_only_constellation() -> None:
    (event,) = registered_constellation().receive(server_frame(type="task", status="continue"))
    assert isinstance(event, ProtocolViolation)


# --- device specifics ---------------------------------------------------------------------


def test_device_rejected_as_duplicate() -> None:
    session = device()
    session.register()
    (event,) = session.receive(frame_text("error_duplicate_client_id"))
    assert isinstance(event, Rejected)


def test_device_answers_a_server_info_request_with_its_telemetry() -> None:
    session = registered_device()
    (event,) = session.receive(server_frame(type="device_info_request", response_id="srv-9"))
    assert isinstance(event, Reply)
    sent = json.loads(event.frame)
    assert sent["type"] == "device_info_response"
    assert sent["request_id"] == "srv-9"
    assert sent["metadata"]["system_info"]["cpu_count"] == 2


def test_device_ignores_tasks_and_flags_stray_responses() -> None:
    session = registered_device()
    (event,) = session.receive(server_frame(type="task", status="continue"))
    assert isinstance(event, Ignored)
    (event,) = session.receive(frame_text("device_info_response"))
    assert isinstance(event, ProtocolViolation)
    assert session.receive(frame_text("heartbeat_ack")) == [HeartbeatAck()]
    (event,) = session.receive(b"\x01")
    assert isinstance(event, ProtocolViolation)
