"""Snapshots: a device captured on one manager resumes on another as the rules say.

Round trips go through a real lifecycle (driven by the table), the JSON text, and
``stellate.fsm.resume`` on a second engine with its own clocks. A written version 1 snapshot is
kept in ``snapshots/v1.json``: every later stellate must still read it. Anything else —
corrupt text, wrong types, an unknown version, another device's snapshot — is refused with
``UnreadableSnapshot`` naming the device, and nothing else is ever raised.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellate.fsm import AgentProfile, DeviceStatus, Trigger
from stellate.fsm.event_data import (
    ConnectionFailed,
    RegistrationAnswer,
    TaskAssigned,
    TelemetryAnswer,
)
from stellate.fsm.lifecycle import DeviceLifecycle, LifecycleEngine
from stellate.fsm.resume import memory_of, resume, resumed_status
from stellate.protocol import RejectionKind
from stellate.store.snapshot import (
    FORMAT_VERSION,
    DeviceSnapshot,
    UnreadableSnapshot,
    decode,
    encode,
    snapshot_of,
)

HERE = Path(__file__).resolve().parent
WALL = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIGURED = AgentProfile(
    device_id="dev-1",
    server_url="ws://127.0.0.1:5005/ws?token=not-for-the-store",
    capabilities=("web",),
    max_retries=2,
)


class Mono:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lifecycle(mono: Mono, profile: AgentProfile = CONFIGURED) -> DeviceLifecycle:
    return LifecycleEngine().create(
        profile, rng=random.Random(1), clock=lambda: WALL, monotonic=mono
    )


def move(old: DeviceLifecycle, *, deadline_in: float | None, later: float) -> DeviceLifecycle:
    """Capture on the old manager, encode, decode ``later`` seconds on, resume on a new one."""
    text = encode(
        snapshot_of(old.profile, memory_of(old, deadline_in=deadline_in), now=WALL, since=WALL)
    )
    snapshot = decode(text, old.device_id)
    new_mono = Mono(5_000.0)  # the new manager's monotonic clock has nothing to do with the old
    return resume(
        LifecycleEngine(),
        snapshot.profile(CONFIGURED),
        snapshot.status,
        snapshot.memory(WALL + timedelta(seconds=later)),
        rng=random.Random(2),
        clock=lambda: WALL,
        monotonic=new_mono,
    )


def idle(mono: Mono) -> DeviceLifecycle:
    device = lifecycle(mono)
    device.fire(Trigger.CONNECT)
    device.fire(Trigger.CONNECTION_OPENED)
    device.fire(Trigger.REGISTER_SENT)
    device.fire(RegistrationAnswer(accepted=True))
    device.fire(TelemetryAnswer({"platform": "linux", "supported_features": ["gpu", "web"]}))
    assert device.state is DeviceStatus.IDLE
    return device


def test_a_failed_device_stays_failed_with_its_reason() -> None:
    device = lifecycle(Mono(100.0))
    device.fire(Trigger.CONNECT)
    device.fire(Trigger.CONNECTION_OPENED)
    device.fire(Trigger.REGISTER_SENT)
    device.fire(RegistrationAnswer(accepted=False, reason="no such target"))
    assert device.state is DeviceStatus.FAILED
    resumed = move(device, deadline_in=None, later=60)
    assert resumed.state is DeviceStatus.FAILED
    assert resumed.failure_reason == device.failure_reason
    assert "no such target" in (resumed.failure_reason or "")
    assert resumed.timeout is None
    assert resumed.accepts(Trigger.RETRY)  # until retried


def test_a_device_backing_off_waits_what_is_left_of_its_wait() -> None:
    mono = Mono(100.0)
    device = lifecycle(mono)
    device.fire(Trigger.CONNECT)
    device.fire(ConnectionFailed(reason="refused"))
    assert device.state is DeviceStatus.BACKOFF
    resumed = move(device, deadline_in=4.0, later=3.0)
    assert resumed.state is DeviceStatus.BACKOFF
    assert resumed.timeout == pytest.approx(1.0)
    assert resumed.last_error == "refused"
    assert resumed.consecutive_failures == device.consecutive_failures == 1
    assert resumed.profile.connection_attempts == 1
    late = move(device, deadline_in=4.0, later=30.0)
    assert late.timeout == 0.0  # overdue: connect at once


def test_an_activated_device_reconnects_at_once_keeping_what_it_learned() -> None:
    mono = Mono(100.0)
    device = idle(mono)
    mono.now += 90  # up for 90 s: past the stability window
    resumed = move(device, deadline_in=None, later=2.0)
    assert resumed.state is DeviceStatus.BACKOFF
    assert resumed.timeout == 0.0
    assert resumed.profile.capabilities == ("web", "gpu")  # merged, kept until refreshed
    assert resumed.profile.os == "linux"
    assert resumed.profile.metadata["system_info"]["platform"] == "linux"
    assert resumed.recovering_since == 5_000.0  # the move is a loss: a recovery starts
    assert resumed.profile.server_url == CONFIGURED.server_url  # the config's, not the store's
    resumed.fire(Trigger.TIMED_OUT)
    assert resumed.state is DeviceStatus.CONNECTING


def test_a_busy_device_s_task_ends_with_the_move() -> None:
    device = idle(Mono(100.0))
    device.fire(TaskAssigned("t-1"))
    resumed = move(device, deadline_in=None, later=1.0)
    assert resumed.state is DeviceStatus.BACKOFF
    assert resumed.profile.current_task_id is None


def test_an_attempt_cut_short_by_the_move_is_not_counted() -> None:
    device = lifecycle(Mono(100.0))
    device.fire(Trigger.CONNECT)
    assert device.profile.connection_attempts == 1
    resumed = move(device, deadline_in=20.0, later=1.0)
    assert resumed.state is DeviceStatus.BACKOFF
    assert resumed.profile.connection_attempts == 0
    resumed.fire(Trigger.TIMED_OUT)
    assert resumed.profile.connection_attempts == 1


def test_a_moved_device_s_first_attempt_backs_off_when_the_old_owner_still_holds_its_id() -> None:
    # Cut short in its first attempt, the device resumes with no attempt counted; the server
    # may not have processed the old owner's close yet. That refusal is the move's, not the
    # device's: it backs off (the table's transient_rejection), as after a failed attempt.
    held = RegistrationAnswer(
        accepted=False,
        reason="client_id 'stellate@dev-1' is already registered; duplicate registrations "
        "are not allowed",
        kind=RejectionKind.ID_STILL_HELD,
    )
    device = lifecycle(Mono(100.0))
    device.fire(Trigger.CONNECT)
    device.fire(Trigger.CONNECTION_OPENED)
    resumed = move(device, deadline_in=20.0, later=1.0)
    resumed.fire(Trigger.TIMED_OUT)
    resumed.fire(Trigger.CONNECTION_OPENED)
    resumed.fire(Trigger.REGISTER_SENT)
    resumed.fire(held)
    assert resumed.state is DeviceStatus.BACKOFF
    # The same refusal on a device that never moved, in its first attempt, is final.
    fresh = lifecycle(Mono(100.0))
    for event in (Trigger.CONNECT, Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, held):
        fresh.fire(event)
    assert fresh.state is DeviceStatus.FAILED
    # Once the moved device is activated again, the move is over: it is like any other.
    resumed.fire(Trigger.TIMED_OUT)
    for event in (
        Trigger.CONNECTION_OPENED,
        Trigger.REGISTER_SENT,
        RegistrationAnswer(accepted=True),
        TelemetryAnswer(None),
    ):
        resumed.fire(event)
    assert resumed.state is DeviceStatus.IDLE
    assert not resumed._moved


@pytest.mark.parametrize("status", list(DeviceStatus))
def test_every_status_resumes_in_a_state_without_a_socket(status: DeviceStatus) -> None:
    resumed = resumed_status(status)
    assert resumed in (status, DeviceStatus.BACKOFF)


def test_the_store_never_sees_the_configured_url() -> None:
    device = lifecycle(Mono(1.0))
    text = encode(
        snapshot_of(device.profile, memory_of(device, deadline_in=None), now=WALL, since=None)
    )
    assert "not-for-the-store" not in text and "server_url" not in text
    assert json.loads(text)["v"] == FORMAT_VERSION


def test_a_version_1_snapshot_written_earlier_is_still_read() -> None:
    text = (HERE / "snapshots" / "v1.json").read_text(encoding="utf-8")
    snapshot = decode(text, "windowsagent")
    assert snapshot.status is DeviceStatus.FAILED
    assert snapshot.failure_reason == "gave up after 5 attempts: connection refused"
    assert snapshot.capabilities == ("web_browsing", "office_applications")
    assert snapshot.deadline_at is None
    assert snapshot.since == datetime(2026, 12, 1, 11, 58, 30, tzinfo=UTC)


def valid() -> dict[str, Any]:
    device = lifecycle(Mono(1.0))
    return dict(
        json.loads(
            encode(
                snapshot_of(
                    device.profile, memory_of(device, deadline_in=3.0), now=WALL, since=WALL
                )
            )
        )
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"v": 2}, "unknown format version 2"),
        ({"v": "1"}, "unknown format version '1'"),
        ({"v": True}, "unknown format version True"),
        ({"v": None}, "unknown format version None"),
        ({"status": "dancing"}, "status: unknown status 'dancing'"),
        ({"connection_attempts": -1}, "connection_attempts: expected a count"),
        ({"capabilities": "web"}, "capabilities: expected a list of strings"),
        ({"since": "yesterday"}, "since: not an ISO 8601 time"),
        ({"since": "2026-12-01T12:00:00"}, "since: a time without its UTC offset"),
        ({"device_id": "dev-2"}, "another device ('dev-2')"),
    ],
)
def test_a_bad_snapshot_is_refused_saying_why(change: dict[str, Any], words: str) -> None:
    data = {**valid(), **change}
    with pytest.raises(UnreadableSnapshot) as caught:
        decode(json.dumps(data), "dev-1")
    assert caught.value.device_id == "dev-1"
    assert words in str(caught.value)
    assert str(caught.value).startswith("snapshot of device 'dev-1': ")


def test_a_missing_field_is_named() -> None:
    data = valid()
    del data["failure_reason"]
    with pytest.raises(UnreadableSnapshot, match="failure_reason: missing"):
        decode(json.dumps(data), "dev-1")


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", "\x00", "[" * 100_000])
def test_corrupt_text_is_refused(text: str) -> None:
    with pytest.raises(UnreadableSnapshot, match="corrupt"):
        decode(text, "dev-1")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(st.sampled_from(sorted(valid())), json_values, max_size=6)
    | st.text(max_size=40)
)
def test_nothing_but_unreadable_snapshot_is_ever_raised(damage: Any) -> None:
    text = json.dumps({**valid(), **damage}) if isinstance(damage, dict) else damage
    try:
        snapshot = decode(text, "dev-1")
    except UnreadableSnapshot:
        return
    assert isinstance(snapshot, DeviceSnapshot)
    encode(snapshot)  # what was read can be written again
