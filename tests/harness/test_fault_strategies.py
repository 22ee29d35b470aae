"""The harness's own pieces, without trio: frames, the oracle, and path → schedule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.config.model import DeviceConfig
from stellate.fsm import RetryPolicy
from stellate.protocol import (
    ConstellationSession,
    ProtocolViolation,
    decode_client,
    decode_server,
    encode_server,
)
from stellate.protocol.ids import device_id_problem
from stellate.protocol.messages import ClientMessageType
from stellate.testing.fault_strategies import (
    EDGE_IDS,
    client_frames,
    device_ids,
    invalid_server_frames,
    schedule_for_path,
    server_frames,
)
from stellate.testing.faults import (
    DropAfterIdle,
    Forbidden,
    HangConnect,
    Healthy,
    NoTelemetryAnswer,
    Outage,
    Refuse,
    Reject,
    SilentAfterIdle,
    expected_path,
    normalize,
)
from stellate.testing.strategies import legal_paths

#: No recovery window: the enumerated paths are those of the reference's rule.
POLICY = RetryPolicy(recovery_window=0.0)


def _registering() -> ConstellationSession:
    session = ConstellationSession("stellate", "dev")
    session.register()
    return session


@given(frame=invalid_server_frames("registering"))
def test_garbage_while_registering_is_a_protocol_violation(frame: str | bytes) -> None:
    assert [type(e) for e in _registering().receive(frame)] == [ProtocolViolation]


@given(frame=invalid_server_frames("registered"))
def test_garbage_after_registration_is_a_protocol_violation(frame: str | bytes) -> None:
    session = _registering()
    session.receive(_confirmation())
    session.request_device_info()
    assert [type(e) for e in session.receive(frame)] == [ProtocolViolation]
    assert session.pending_request_id is not None  # still waiting for the real answer


def _confirmation() -> str:
    return '{"type": "heartbeat", "status": "ok", "response_id": "r1"}'


@given(frame=server_frames())
def test_valid_server_frames_decode(frame: str) -> None:
    assert encode_server(decode_server(frame)) == frame


@given(frame=client_frames([ClientMessageType.REGISTER, ClientMessageType.HEARTBEAT]))
def test_valid_client_frames_decode(frame: str) -> None:
    assert decode_client(frame).type in (ClientMessageType.REGISTER, ClientMessageType.HEARTBEAT)


@settings(max_examples=examples(200))
@given(data=st.data(), max_retries=st.integers(1, 6), losses=st.integers(0, 3))
def test_the_forced_schedule_predicts_the_path(
    data: st.DataObject, max_retries: int, losses: int
) -> None:
    """The oracle (written from the rules) agrees with the table's enumeration on every path."""
    path = data.draw(legal_paths(max_retries, losses=losses))
    schedule = data.draw(schedule_for_path(path, POLICY))
    assert expected_path(schedule, max_retries=max_retries, policy=POLICY) == path


def test_oracle_by_hand() -> None:
    def steps(schedule: list[object], max_retries: int | None) -> list[str]:
        path = expected_path(schedule, max_retries=max_retries, policy=POLICY)  # type: ignore[arg-type]
        return [f"{s.trigger}:{s.dest}" for s in path]

    healthy = [
        "connection_opened:connected",
        "register_sent:registering",
        "registration_answered:telemetry",
        "telemetry_received:idle",
    ]
    assert steps([Refuse(), HangConnect()], 2) == [
        "connect:connecting",
        "connection_failed:backoff",
        "timed_out:connecting",
        "timed_out:failed",
    ]
    assert steps([Reject.duplicate()], None)[-1] == "registration_answered:failed"
    # After a failed attempt, the reference's texts are transient: back off and retry.
    assert steps([Refuse(), Reject.duplicate()], 5)[1:] == [
        "connection_failed:backoff",
        "timed_out:connecting",
        "connection_opened:connected",
        "register_sent:registering",
        "registration_answered:backoff",
        "timed_out:connecting",
        *healthy,
    ]
    # A refused key is final at once, however many retries are left.
    assert steps([Forbidden()], 5)[1:] == ["auth_rejected:failed"]
    assert steps([NoTelemetryAnswer()], 1)[1:] == [*healthy[:3], "timed_out:idle"]
    # A loss after IDLE: attempts were reset, so even max_retries=1 reconnects.
    assert steps([DropAfterIdle()], 1)[1:] == [
        *healthy,
        "connection_failed:backoff",
        "timed_out:connecting",
        *healthy,
    ]


def test_standalone_behaviours_mean_healthy_attempts() -> None:
    assert normalize(SilentAfterIdle()) == Healthy(idle=SilentAfterIdle())
    assert normalize(NoTelemetryAnswer()) == Healthy(telemetry=NoTelemetryAnswer())
    with pytest.raises(ValueError, match="Outage"):
        expected_path([Outage(10.0)], max_retries=None, policy=POLICY)
    with pytest.raises(TypeError):
        normalize("Refuse")  # type: ignore[arg-type]


@given(device_id=device_ids())
def test_drawn_ids_are_ids_the_config_accepts(device_id: str) -> None:
    assert device_id_problem(device_id) is None
    DeviceConfig(device_id=device_id, server_url="ws://127.0.0.1:5005/ws")


def test_edge_ids_are_accepted_and_distinct() -> None:
    assert len(set(EDGE_IDS)) == len(EDGE_IDS)
    assert [i for i in EDGE_IDS if device_id_problem(i) is not None] == []
