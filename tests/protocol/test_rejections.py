"""Rejection kinds: the server writes its refusals from the templates the client classifies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from golden_frames import frame_text
from hypothesis import given
from hypothesis import strategies as st

from stellate.protocol import (
    ClientMessage,
    ClientMessageType,
    ClientRegistry,
    ClientType,
    ConstellationSession,
    Rejected,
    RejectionKind,
    Send,
    ServerSession,
    TaskStatus,
    classify_close,
    classify_handshake,
    classify_text,
    encode_client,
)
from stellate.protocol import rejections as R

K = RejectionKind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("error_target_not_connected", K.TARGET_NOT_YET_KNOWN),
        ("error_duplicate_client_id", K.ID_STILL_HELD),
    ],
)
def test_reference_frames_classify(name: str, kind: RejectionKind) -> None:
    """The texts the reference server really sends (golden frames) get their kinds."""
    session = ConstellationSession("probe_galaxy", "ghost")
    session.register()
    (event,) = session.receive(frame_text(name))
    assert isinstance(event, Rejected) and event.kind is kind


def _register(session: ServerSession, client_id: str, client_type: ClientType, **kw: Any) -> str:
    frame = encode_client(
        ClientMessage(
            type=ClientMessageType.REGISTER,
            status=TaskStatus.OK,
            client_type=client_type,
            client_id=client_id,
            **kw,
        )
    )
    actions = session.receive(frame, at=0.0)
    sends = [a for a in actions if isinstance(a, Send)]
    return str(json.loads(sends[0].frame)["error"])


def test_server_texts_classify_as_their_kinds() -> None:
    """stellate's own server writes from the same templates: each refusal round-trips."""
    registry = ClientRegistry()
    absent = _register(
        ServerSession(registry, 0.0), "g@ghost", ClientType.CONSTELLATION, target_id="ghost"
    )
    assert absent == R.TARGET_NOT_CONNECTED.format(device_id="ghost")
    assert classify_text(absent) is K.TARGET_NOT_YET_KNOWN

    first = ServerSession(registry, 0.0)
    first.receive(
        encode_client(
            ClientMessage(
                type=ClientMessageType.REGISTER,
                status=TaskStatus.OK,
                client_type=ClientType.DEVICE,
                client_id="dev",
            )
        ),
        at=0.0,
    )
    held = _register(ServerSession(registry, 0.0), "dev", ClientType.DEVICE)
    assert held == R.ALREADY_REGISTERED.format(client_id="dev")
    assert classify_text(held) is K.ID_STILL_HELD


@given(st.text(max_size=60))
def test_templates_match_any_id(device_id: str) -> None:
    assert classify_text(R.TARGET_NOT_CONNECTED.format(device_id=device_id)) is (
        K.TARGET_NOT_YET_KNOWN
    )
    assert classify_text(R.ALREADY_REGISTERED.format(client_id=device_id)) is K.ID_STILL_HELD


@given(st.text(max_size=80))
def test_other_texts_are_final(text: str) -> None:
    """Nothing but the two templates is taken for a transient refusal."""
    kinds = {classify_text(text)}
    if not (text.startswith("Target device '") or text.startswith("client_id '")):
        assert kinds == {K.FINAL}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "registration rejected (no reason given)",
        "Target device 'x' is not connected!",  # not the template: no loose matching
        "prefix: client_id 'x' is already registered; duplicate registrations are not allowed",
        R.TARGET_DISCONNECTED.format(device_id="x"),
    ],
)
def test_near_misses_are_final(text: str) -> None:
    assert classify_text(text) is K.FINAL


def test_rejected_event_classifies_itself() -> None:
    assert Rejected(R.TARGET_NOT_CONNECTED.format(device_id="d")).kind is K.TARGET_NOT_YET_KNOWN
    assert Rejected("no").kind is K.FINAL


@pytest.mark.parametrize(
    ("status", "kind"), [(401, K.AUTH), (403, K.AUTH), (404, None), (503, None), (None, None)]
)
def test_handshake_statuses(status: int | None, kind: RejectionKind | None) -> None:
    assert classify_handshake(status) is kind


@pytest.mark.parametrize(
    ("code", "registered", "kind"),
    [
        (1008, False, K.AUTH),
        (1008, True, None),
        (1000, False, None),
        (1006, False, None),
        (None, False, None),
    ],
)
def test_close_codes(code: int | None, registered: bool, kind: RejectionKind | None) -> None:
    assert classify_close(code, registered=registered) is kind


def test_only_an_id_still_held_refusal_gets_a_hint() -> None:
    text = "client_id 't@d' is already registered; duplicate registrations are not allowed"
    assert R.explained(text, RejectionKind.ID_STILL_HELD) == f"{text} ({R.ID_HELD_HINT})"
    for kind in set(RejectionKind) - {RejectionKind.ID_STILL_HELD}:
        assert R.explained("no", kind) == "no"
