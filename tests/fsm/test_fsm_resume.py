"""The resume rule of ``stellate.fsm.resume``, checked on the lifecycle itself (no snapshot).

The rule (the module's docstring): a device neither holding a socket nor attempting one
(``disconnected``, ``backoff``, ``failed``) resumes where it was, with what is left of its
wait; any other resumes in ``backoff`` with nothing left to wait, an activated one as a loss
(a recovery starts, or continues), an attempt cut short not counted, a task over; a moved
device meets its server in flux until it is next activated. What the lifecycle remembers
travels as durations. The expectations below are written from that text, state by state.
"""

from __future__ import annotations

import random

import attrs
import pytest

from stellate.fsm import AgentProfile, DeviceStatus, Trigger
from stellate.fsm.event_data import RegistrationAnswer
from stellate.fsm.lifecycle import DeviceLifecycle, LifecycleEngine
from stellate.fsm.resume import LifecycleMemory, memory_of, resume, resume_fresh, resumed_status
from stellate.protocol import RejectionKind

S = DeviceStatus
#: Where each state resumes, from the rule's text (not from the states' tags).
RESUMES_IN = {
    S.DISCONNECTED: S.DISCONNECTED,
    S.BACKOFF: S.BACKOFF,
    S.FAILED: S.FAILED,
    S.CONNECTING: S.BACKOFF,
    S.CONNECTED: S.BACKOFF,
    S.REGISTERING: S.BACKOFF,
    S.TELEMETRY: S.BACKOFF,
    S.IDLE: S.BACKOFF,
    S.BUSY: S.BACKOFF,
}
STAYS = [s for s, r in RESUMES_IN.items() if s is r]
ATTEMPTS = [S.CONNECTING, S.CONNECTED, S.REGISTERING, S.TELEMETRY]
ACTIVE = [S.IDLE, S.BUSY]
NOW = 1_000.0
HELD = RegistrationAnswer(
    accepted=False,
    reason="client_id 'dev-1' is already registered",
    kind=RejectionKind.ID_STILL_HELD,
)


def profile(status: DeviceStatus, attempts: int = 2, task: str | None = None) -> AgentProfile:
    return AgentProfile(
        device_id="dev-1",
        server_url="ws://127.0.0.1:1/ws",
        max_retries=5,
        status=status,
        connection_attempts=attempts,
        current_task_id=task,
    )


def resumed(
    status: DeviceStatus, memory: LifecycleMemory, attempts: int = 2, task: str | None = None
) -> DeviceLifecycle:
    return resume(
        LifecycleEngine(),
        profile(status, attempts, task),
        status,
        memory,
        rng=random.Random(3),
        monotonic=lambda: NOW,
    )


MEMORY = LifecycleMemory(
    failure_reason="refused",
    last_error="connection reset",
    consecutive_failures=3,
    recovering_for=4.5,
    active_for=30.25,
    deadline_in=2.5,
)


def test_every_state_resumes_where_the_rule_says() -> None:
    assert set(RESUMES_IN) == set(DeviceStatus)
    for status, expected in RESUMES_IN.items():
        assert resumed_status(status) is expected, status
        assert resumed(status, LifecycleMemory()).state is expected, status


@pytest.mark.parametrize("status", STAYS)
def test_a_device_that_stays_keeps_everything_it_remembered(status: DeviceStatus) -> None:
    """Durations in, durations out: resuming where it was loses and shifts nothing."""
    device = resumed(status, MEMORY, attempts=2)
    assert device.profile.connection_attempts == 2
    assert device.timeout == 2.5  # what was left of the state's deadline
    assert device.recovering_since == NOW - 4.5
    assert memory_of(device, deadline_in=device.timeout) == MEMORY


def test_a_deadline_already_past_is_due_at_once_and_none_stays_none() -> None:
    late = attrs.evolve(MEMORY, deadline_in=-3.0)
    assert resumed(S.BACKOFF, late).timeout == 0.0
    assert resumed(S.FAILED, attrs.evolve(MEMORY, deadline_in=None)).timeout is None


@pytest.mark.parametrize("status", ATTEMPTS + ACTIVE)
def test_a_moved_device_reconnects_at_once(status: DeviceStatus) -> None:
    device = resumed(status, MEMORY)  # a deadline was left: the move makes it moot
    assert device.state is S.BACKOFF and device.timeout == 0.0
    assert device.failure_reason == "refused" and device.last_error == "connection reset"
    assert device.consecutive_failures == 3


@pytest.mark.parametrize("status", ATTEMPTS)
def test_an_attempt_cut_short_is_not_counted_and_is_no_loss(status: DeviceStatus) -> None:
    assert resumed(status, LifecycleMemory(), attempts=2).profile.connection_attempts == 1
    assert resumed(status, LifecycleMemory(), attempts=0).profile.connection_attempts == 0
    assert resumed(status, LifecycleMemory()).recovering_since is None


@pytest.mark.parametrize("status", ACTIVE)
def test_the_move_of_an_activated_device_is_a_loss(status: DeviceStatus) -> None:
    fresh = resumed(status, LifecycleMemory(), attempts=2, task="t-1")
    assert fresh.recovering_since == NOW  # a recovery starts with the move
    assert fresh.profile.connection_attempts == 2  # no attempt was under way
    assert fresh.profile.current_task_id is None  # the task is over
    already = resumed(status, attrs.evolve(MEMORY, recovering_for=7.0))
    assert already.recovering_since == NOW - 7.0  # a recovery under way continues


def test_memory_is_taken_in_durations_on_the_lifecycle_s_clock() -> None:
    clock = [100.0]
    device = LifecycleEngine().create(
        profile(S.DISCONNECTED), rng=random.Random(1), monotonic=lambda: clock[0]
    )
    assert memory_of(device, deadline_in=None) == LifecycleMemory(consecutive_failures=0)
    device._activated_at, device._lost_at = 99.75, 99.5
    memory = memory_of(device, deadline_in=1.5)
    assert (memory.active_for, memory.recovering_for, memory.deadline_in) == (0.25, 0.5, 1.5)


@pytest.mark.parametrize("status", [*STAYS, *ATTEMPTS, *ACTIVE])
def test_a_moved_device_s_refusal_saying_its_id_is_held_backs_off(status: DeviceStatus) -> None:
    """Until it is next activated, or the owner starts a new run, a moved device meets its
    server in flux wherever it resumed (its own count of attempts says nothing: the move reset
    it). A new run (connect from disconnected, retry from failed) is like any other: the
    refusal in its first attempt is final."""
    device = resumed(status, LifecycleMemory(), attempts=0)
    new_run = status in (S.DISCONNECTED, S.FAILED)
    device.fire(Trigger.RETRY if status is S.FAILED else Trigger.CONNECT)
    if device.state is S.BACKOFF:
        device.fire(Trigger.TIMED_OUT)
    assert device.state is S.CONNECTING
    for event in (Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, HELD):
        device.fire(event)
    assert device.state is (S.FAILED if new_run else S.BACKOFF)


def test_a_device_taken_over_without_a_snapshot_connects_at_once_expecting_flux() -> None:
    device = resume_fresh(
        LifecycleEngine(), profile(S.DISCONNECTED, attempts=0), monotonic=lambda: NOW
    )
    assert device.state is S.BACKOFF and device.timeout == 0.0
    assert device.recovering_since is None and device.profile.connection_attempts == 0
    assert (device.consecutive_failures, device.failure_reason, device.last_error) == (
        0,
        None,
        None,
    )
    for event in (Trigger.TIMED_OUT, Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, HELD):
        device.fire(event)
    assert device.state is S.BACKOFF


def test_a_duration_read_back_is_never_negative() -> None:
    """A snapshot written by a manager whose wall clock runs ahead gives times in the future;
    what the lifecycle then remembers is a duration of 0, not a negative one."""
    device = resumed(S.BACKOFF, LifecycleMemory(recovering_for=-2.0, active_for=-3.0))
    memory = memory_of(device, deadline_in=None)
    assert (memory.recovering_for, memory.active_for) == (0.0, 0.0)
