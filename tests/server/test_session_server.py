"""The sans-IO server session: reference answers, and each docs/aip.md fix, without sockets."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from golden_frames import assert_like, client_frame, frame
from server_support import error_of

from stellate import Timing
from stellate.protocol.messages import ClientType
from stellate.protocol.registry import ClientEntry, ClientRegistry
from stellate.protocol.session_server import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_UNSUPPORTED_DATA,
    Close,
    Evict,
    Send,
    ServerAction,
    ServerPhase,
    ServerPolicy,
    ServerSession,
)

DEVICE = "linux_dev_2"
CONSTELLATION = "probe_galaxy@linux_dev_2"
POLICY = ServerPolicy(
    timing=Timing(registration_timeout=10.0, heartbeat_interval=30.0, miss_limit=3)
)


class Server:
    """A registry and a factory of sessions sharing it, with deterministic ids."""

    def __init__(self) -> None:
        self.registry = ClientRegistry()
        self._ids = itertools.count(1)

    def session(self, at: float = 0.0) -> ServerSession:
        return ServerSession(
            self.registry,
            at,
            policy=POLICY,
            now=lambda: "2026-11-23T09:09:24+00:00",
            new_id=lambda: f"id-{next(self._ids)}",
        )

    def device(self, at: float = 0.0, device_id: str = DEVICE) -> ServerSession:
        session = self.session(at)
        register = frame("device_register")
        register["client_id"] = device_id
        (confirmation,) = session.receive(json.dumps(register), at)
        assert isinstance(confirmation, Send)
        return session

    def constellation(self, at: float = 0.0, **overrides: Any) -> ServerSession:
        session = self.session(at)
        (confirmation,) = session.receive(client_frame("constellation_register", **overrides), at)
        assert isinstance(confirmation, Send)
        assert session.phase is ServerPhase.REGISTERED
        return session


def sent(actions: list[ServerAction]) -> list[str]:
    return [a.frame for a in actions if isinstance(a, Send)]


def closes(actions: list[ServerAction]) -> list[Close]:
    return [a for a in actions if isinstance(a, Close)]


def evictions(actions: list[ServerAction]) -> list[Evict]:
    return [a for a in actions if isinstance(a, Evict)]


# --- copied from the reference --------------------------------------------------------------


def test_device_registration_is_confirmed_with_a_heartbeat_frame() -> None:
    server = Server()
    session = server.session()
    actions = session.receive(client_frame("device_register"), 0.0)
    (confirmation,) = sent(actions)
    assert_like(confirmation, "registration_confirmation")
    entry = server.registry.get(DEVICE)
    assert entry is not None
    assert entry.system_info == frame("device_register")["metadata"]["system_info"]
    assert entry.platform == "linux"


def test_device_heartbeat_is_acked() -> None:
    session = Server().device()
    (ack,) = sent(session.receive(client_frame("device_heartbeat"), 1.0))
    assert_like(ack, "heartbeat_ack")
    assert json.loads(ack)["response_id"] == "id-2"  # fresh each time


def test_constellation_gets_the_stored_system_info() -> None:
    server = Server()
    server.device()
    constellation = server.constellation()
    (response,) = sent(constellation.receive(client_frame("device_info_request"), 1.0))
    data = assert_like(response, "device_info_response")
    assert data["response_id"] == frame("device_info_request")["request_id"]


def test_device_info_without_system_info_is_the_reference_not_found_answer() -> None:
    server = Server()
    bare = server.session()
    bare.receive(json.dumps({"type": "register", "status": "ok", "client_id": "bare_dev"}), 0.0)
    constellation = server.constellation(client_id="probe@bare_dev", target_id="bare_dev")
    request = client_frame(
        "device_info_request", client_id="probe@bare_dev", target_id="bare_dev", request_id="req-5"
    )
    (response,) = sent(constellation.receive(request, 1.0))
    data = assert_like(response, "device_info_response_not_found")
    assert data["response_id"] == "req-5"


def test_constellation_for_an_absent_device_is_refused_and_closed() -> None:
    session = Server().session()
    register = client_frame("constellation_register", client_id="p@ghost", target_id="ghost")
    actions = session.receive(register, 0.0)
    (error,) = sent(actions)
    assert_like(error, "error_target_not_connected")
    assert closes(actions) == [Close(CLOSE_NORMAL, "Target device 'ghost' is not connected")]
    assert session.phase is ServerPhase.CLOSED


def test_constellation_for_a_constellation_is_refused() -> None:
    server = Server()
    server.device()
    server.constellation()
    session = server.session()
    register = client_frame("constellation_register", client_id="x@y", target_id=CONSTELLATION)
    text = error_of(sent(session.receive(register, 0.0))[0])
    # A constellation's id names its target, and a constellation's id cannot be a device part.
    assert text.startswith("invalid constellation id") and "target_id" in text
    assert session.phase is ServerPhase.CLOSED


def test_live_duplicate_is_refused_and_the_first_is_untouched() -> None:
    server = Server()
    first = server.device()
    second = server.session()
    actions = second.receive(client_frame("device_register", client_id=DEVICE), 1.0)
    (error,) = sent(actions)
    refusal = f"client_id '{DEVICE}' is already registered; duplicate registrations are not allowed"
    assert error_of(error) == refusal
    assert_like(error, "error_duplicate_client_id", error=error_of(error))
    assert closes(actions) == [Close(CLOSE_NORMAL, refusal)] and not evictions(actions)
    entry = server.registry.get(DEVICE)
    assert entry is not None and entry.owner is first
    assert second.connection_lost(2.0) == []
    assert server.registry.get(DEVICE) is not None


def test_identity_is_pinned_to_the_socket() -> None:
    server = Server()
    server.device()
    constellation = server.constellation()
    spoof = client_frame("device_info_request", client_type="device")
    (error,) = sent(constellation.receive(spoof, 1.0))
    assert_like(error, "error_client_type_mismatch")
    other_id = client_frame("device_info_request", client_id="someone@else")
    assert error_of(sent(constellation.receive(other_id, 1.0))[0]) == (
        "client_id does not match the registered connection"
    )
    assert constellation.phase is ServerPhase.REGISTERED  # an error, not a disconnection


# --- docs/aip.md fixes --------------------------------------------------------------------


def test_fix1_reference_constellation_heartbeat_is_acked() -> None:
    server = Server()
    server.device()
    constellation = server.constellation()
    heartbeat = client_frame("constellation_heartbeat_as_galaxy_sends_it")  # claims "device"
    (ack,) = sent(constellation.receive(heartbeat, 1.0))
    assert_like(ack, "heartbeat_ack")


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ("not json", "invalid first frame: frame is not JSON"),
        ('{"type": "register", "status": "ok"}', "register frame without client_id"),
        ('{"type": "register", "status": "ok", "client_id": ""}', "without client_id"),
        (client_frame("device_heartbeat"), "first frame must be a register frame, got 'heartbeat'"),
        ('{"type": "register", "status": "ok", "client_id": 7}', "expected string, got number 7"),
    ],
)
def test_fix2_bad_first_frame_gets_an_error_and_a_1008_close(first: str, why: str) -> None:
    server = Server()
    session = server.session()
    actions = session.receive(first, 0.0)
    assert why in error_of(sent(actions)[0])
    (close,) = closes(actions)
    assert close.code == CLOSE_POLICY_VIOLATION
    assert len(close.reason.encode()) <= 123
    assert len(server.registry) == 0


def test_fix2_silent_socket_hits_the_registration_deadline() -> None:
    session = Server().session(at=100.0)
    assert session.deadline == 110.0
    assert session.deadline_passed(109.9) == []  # not due yet
    actions = session.deadline_passed(110.0)
    assert error_of(sent(actions)[0]) == "no register frame within 10 s"
    assert closes(actions)[0].code == CLOSE_POLICY_VIOLATION
    assert session.deadline == float("inf")


def test_fix3_binary_after_registration_closes_1003_and_deregisters() -> None:
    server = Server()
    session = server.device()
    actions = session.receive(b"\x00\x01", 1.0)
    assert closes(actions) == [Close(CLOSE_UNSUPPORTED_DATA, "binary frames are not supported")]
    assert server.registry.get(DEVICE) is None
    assert session.receive(client_frame("device_heartbeat"), 2.0) == []


def test_fix3_binary_first_frame_closes_1003() -> None:
    assert closes(Server().session().receive(b"x", 0.0))[0].code == CLOSE_UNSUPPORTED_DATA


def test_fix4_constellations_are_told_when_their_device_leaves() -> None:
    server = Server()
    device = server.device()
    one = server.constellation()
    two = server.constellation(client_id="other@linux_dev_2")
    server.device(device_id="bystander")
    unrelated = server.constellation(client_id="x@bystander", target_id="bystander")
    actions = device.connection_lost(5.0)
    told = evictions(actions)
    assert {e.session for e in told} == {one, two}
    assert unrelated not in {e.session for e in told}
    for eviction in told:
        assert eviction.frame is not None
        assert error_of(eviction.frame) == f"Target device '{DEVICE}' disconnected"
        assert eviction.code == CLOSE_NORMAL
    assert server.registry.get(DEVICE) is None


def test_fix4_also_when_the_device_is_closed_by_the_server() -> None:
    server = Server()
    device = server.device()
    constellation = server.constellation()
    actions = device.receive(b"binary", 1.0)
    assert [e.session for e in evictions(actions)] == [constellation]


def test_fix5_duplicate_with_an_expired_lease_is_replaced() -> None:
    server = Server()
    old = server.device(at=0.0)
    constellation = server.constellation(at=0.0)
    new = server.session(at=95.0)
    actions = new.receive(client_frame("device_register"), 95.0)  # lease was 90 s
    (eviction,) = evictions(actions)
    assert eviction.session is old
    assert_like(sent(actions)[0], "registration_confirmation")
    entry = server.registry.get(DEVICE)
    assert entry is not None and entry.owner is new
    # The old socket's departure must not deregister its successor or alarm constellations.
    assert old.connection_lost(96.0) == []
    assert server.registry.get(DEVICE) is not None
    assert server.registry.constellations_of(DEVICE)[0].owner is constellation


def test_fix5_duplicate_whose_socket_is_gone_is_replaced() -> None:
    server = Server()
    old = server.device(at=0.0)
    entry = server.registry.get(DEVICE)
    assert entry is not None
    entry.connection_lost = True
    new = server.session(at=1.0)
    actions = new.receive(client_frame("device_register"), 1.0)
    assert [e.session for e in evictions(actions)] == [old]
    assert new.phase is ServerPhase.REGISTERED


def test_fix6_device_info_only_for_the_registered_target() -> None:
    server = Server()
    server.device()
    server.device(device_id="secret_box")
    constellation = server.constellation()
    other = client_frame("device_info_request", target_id="secret_box")
    (error,) = sent(constellation.receive(other, 1.0))
    assert "only available for this connection's target" in error_of(error)


def test_fix6_constellation_without_target_is_refused() -> None:
    """The reference accepts it (and answers it any device's telemetry); stellate refuses it:
    ``TASK@D`` must name ``target_id`` ``D`` (issue 21: such an id squatted the one a manager
    needs once ``D`` connects)."""
    server = Server()
    server.device()
    session = server.session()
    register = json.dumps(
        {"type": "register", "status": "ok", "client_type": "constellation", "client_id": "t@nt"}
    )
    (error,) = sent(session.receive(register, 0.0))
    assert "must name its target_id" in error_of(error)
    assert session.phase is ServerPhase.CLOSED and server.registry.get("t@nt") is None


def test_fix6_devices_cannot_ask_for_device_info() -> None:
    server = Server()
    device = server.device()
    request = client_frame("device_info_request", client_id=DEVICE, client_type="device")
    (error,) = sent(device.receive(request, 1.0))
    assert error_of(error) == "only constellation clients may request device info"


def test_fix7_heartbeats_renew_the_device_lease_until_it_runs_out() -> None:
    server = Server()
    device = server.device(at=0.0)
    assert device.deadline == 90.0
    device.receive(client_frame("device_heartbeat"), 60.0)
    assert device.deadline == 150.0
    entry = server.registry.get(DEVICE)
    assert entry is not None and entry.lease_expires == 150.0
    assert device.deadline_passed(90.0) == []  # the old deadline no longer counts
    actions = device.deadline_passed(150.0)
    assert "no heartbeat for 90 s" in error_of(sent(actions)[0])
    assert closes(actions)[0].code == CLOSE_POLICY_VIOLATION
    assert server.registry.get(DEVICE) is None


def test_fix7_an_expired_device_is_not_connected_for_constellations() -> None:
    server = Server()
    server.device(at=0.0)
    late = server.session(at=100.0)
    actions = late.receive(client_frame("constellation_register"), 100.0)
    assert "is not connected" in error_of(sent(actions)[0])


def test_constellations_have_an_idle_limit_renewed_by_any_frame() -> None:
    server = Server()
    server.device()
    constellation = server.constellation()
    assert constellation.deadline == POLICY.constellation_lease == 2 * POLICY.timing.lease
    constellation.receive(client_frame("device_info_request"), 5.0)
    assert constellation.deadline == 5.0 + POLICY.constellation_lease


# --- other frames -------------------------------------------------------------------------


def test_garbage_after_registration_is_answered_not_fatal() -> None:
    session = Server().device()
    (error,) = sent(session.receive("{oops", 1.0))
    assert error_of(error).startswith("invalid message: frame is not JSON")
    assert session.phase is ServerPhase.REGISTERED


def test_second_register_on_a_registered_socket_is_an_error() -> None:
    session = Server().device()
    (error,) = sent(session.receive(client_frame("device_register"), 1.0))
    assert error_of(error) == "this connection is already registered"


def test_unsupported_and_quiet_frame_types() -> None:
    session = Server().device()
    task = json.dumps({"type": "task", "status": "continue", "client_id": DEVICE})
    assert "not supported" in error_of(sent(session.receive(task, 1.0))[0])
    error = json.dumps({"type": "error", "status": "error", "client_id": DEVICE})
    assert session.receive(error, 1.0) == []


def test_connection_lost_is_idempotent() -> None:
    server = Server()
    session = server.device()
    session.connection_lost(1.0)
    assert session.connection_lost(2.0) == []
    assert session.deadline_passed(1e9) == []


def test_only_an_entry_s_owner_removes_it() -> None:
    """A closing socket removes its own registration, never one that replaced it."""
    registry = ClientRegistry()
    first, second = object(), object()
    registry.add(ClientEntry("dev", ClientType.DEVICE, first))
    assert registry.remove("ghost", first) is None  # nothing registered under that id
    assert registry.remove("dev", second) is None  # not its owner: kept
    assert registry.get("dev") is not None
    removed = registry.remove("dev", first)
    assert removed is not None and removed.owner is first and registry.get("dev") is None
