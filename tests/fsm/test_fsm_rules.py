"""The lifecycle's rules at their edges: windows, counts, and the engine's bookkeeping.

Each expectation is read from a docstring of ``stellate.fsm`` or ``stellate.timing`` (the
guards' rules, the backoff rule), never computed by the code under test. ``jitter_floor=1``
makes every drawn wait its ceiling, so a wait can be asserted exactly: after the n-th failure
in a row it is ``min(cap, step * 2**(n-1))``, with step ``reconnect_delay`` (2 here), or, for a
failed attempt while recovering, ``min(rejoin_delay, reconnect_delay)`` (0.5 here).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from fsm_support import ABSENT_TARGET, FINAL_REFUSAL, WINDOWSAGENT, Monotonic

from stellate.fsm import AgentProfile, DeviceStatus, IllegalTransition, Timing, Trigger
from stellate.fsm.event_data import ConnectionFailed, RegistrationAnswer, TelemetryAnswer
from stellate.fsm.lifecycle import DeviceLifecycle, LifecycleEngine

S = DeviceStatus
EXACT = Timing(
    jitter_floor=1.0,
    reconnect_delay=2.0,
    rejoin_delay=0.5,
    backoff_cap=64.0,
    recovery_window=30.0,
    stability_window=10.0,
)
ENGINE = LifecycleEngine()


def device(
    timing: Timing = EXACT, clock: Monotonic | None = None, max_retries: int | None = 5
) -> DeviceLifecycle:
    profile = AgentProfile(WINDOWSAGENT.device_id, WINDOWSAGENT.server_url, max_retries=max_retries)
    return ENGINE.create(
        profile, timing=timing, rng=random.Random(5), monotonic=clock or Monotonic()
    )


def activate(lc: DeviceLifecycle) -> None:
    for event in (
        Trigger.CONNECTION_OPENED,
        Trigger.REGISTER_SENT,
        RegistrationAnswer(accepted=True),
        TelemetryAnswer(None),
    ):
        lc.fire(event)
    assert lc.state is S.IDLE


def fail_attempt(lc: DeviceLifecycle) -> None:
    """From backoff: the wait ends, the attempt is refused."""
    lc.fire(Trigger.TIMED_OUT)
    lc.fire(ConnectionFailed("refused"))


def test_each_failure_in_a_row_doubles_the_wait_up_to_the_cap() -> None:
    lc = device(max_retries=None)
    lc.fire(Trigger.CONNECT)
    lc.fire(ConnectionFailed("refused"))
    waits = [lc.timeout]
    for _ in range(6):
        fail_attempt(lc)
        waits.append(lc.timeout)
    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 64.0]
    assert lc.consecutive_failures == 7


def test_a_retry_starts_the_failures_over() -> None:
    lc = device(max_retries=2)
    lc.fire(Trigger.CONNECT)
    lc.fire(ConnectionFailed("refused"))
    fail_attempt(lc)
    assert lc.state is S.FAILED and lc.consecutive_failures == 1  # giving up is no wait
    lc.fire(Trigger.RETRY)
    assert lc.consecutive_failures == 0
    lc.fire(ConnectionFailed("refused"))
    assert lc.timeout == 2.0  # the first step again


def test_a_loss_after_the_stability_window_starts_over_and_a_flap_climbs() -> None:
    """A connection up for at least ``stability_window`` (10 s): its loss waits the first
    step and the next failed attempt the first recovering step; lost sooner, it is one more
    failure."""
    clock = Monotonic()
    stable = device(clock=clock)
    stable.fire(Trigger.CONNECT)
    stable.fire(ConnectionFailed("refused"))  # one failure before the activation
    fail_attempt(stable)
    stable.fire(Trigger.TIMED_OUT)
    activate(stable)
    clock.now += 10.0  # exactly the window: stable
    stable.fire(ConnectionFailed("reset"))
    assert (stable.timeout, stable.consecutive_failures) == (2.0, 0)
    assert stable.recovering_since == clock.now
    fail_attempt(stable)
    assert (stable.timeout, stable.consecutive_failures) == (0.5, 1)

    clock = Monotonic()
    flapping = device(clock=clock)
    flapping.fire(Trigger.CONNECT)
    flapping.fire(ConnectionFailed("refused"))
    flapping.fire(Trigger.TIMED_OUT)
    activate(flapping)
    clock.now += 9.99  # just short of the window: a flap
    flapping.fire(ConnectionFailed("reset"))
    assert (flapping.timeout, flapping.consecutive_failures) == (4.0, 2)


def test_the_recovery_window_closes_at_its_end_and_no_wait_outlasts_it() -> None:
    clock = Monotonic()
    lc = device(clock=clock, max_retries=1)
    lc.fire(Trigger.CONNECT)
    activate(lc)
    lost_at = clock.now
    lc.fire(ConnectionFailed("reset"))
    assert lc.timeout == 2.0  # a flap: the first failure, on the plain schedule
    for _ in range(4):  # recovering: attempts do not spend max_retries (1)
        fail_attempt(lc)
    assert lc.state is S.BACKOFF and lc.timeout == 8.0  # the fifth failure: 0.5 * 2**4
    clock.now = lost_at + 29.75
    fail_attempt(lc)
    assert lc.timeout == 0.25  # 16 s drawn, but the window ends in 0.25 s
    clock.now = lost_at + 30.0  # the window's end: it has passed
    lc.fire(Trigger.TIMED_OUT)
    assert lc.state is S.FAILED
    assert lc.failure_reason == (
        "recovery window of 30s passed without reconnecting (last error: refused)"
    )


@pytest.mark.parametrize("window", [0.0, 0.5])
def test_a_loss_is_a_recovery_only_under_a_window(window: float) -> None:
    """``recovery_window`` 0: no recovery, reconnects spend ``max_retries`` and wait the
    plain schedule; any window above 0 (even half a second) is a recovery."""
    clock = Monotonic()
    timing = Timing(jitter_floor=1.0, reconnect_delay=2.0, rejoin_delay=0.5, recovery_window=window)
    lc = device(timing, clock, max_retries=1)
    lc.fire(Trigger.CONNECT)
    activate(lc)
    lc.fire(ConnectionFailed("reset"))
    first_wait = lc.timeout
    lc.fire(Trigger.TIMED_OUT)
    lc.fire(ConnectionFailed("refused"))
    if window == 0.0:
        assert first_wait == 2.0  # a flap: the first failure in a row
        assert lc.state is S.FAILED  # the one retry is spent
    else:
        assert first_wait == 0.5  # drawn 2 s, but the window ends in 0.5 s
        assert lc.state is S.BACKOFF


def test_a_refusal_is_transient_only_when_the_server_is_in_flux() -> None:
    """A refusal saying the target is not known yet backs off after an earlier failed
    attempt of the run (the second attempt on), never in the run's first attempt; a final
    refusal is final whatever happened before."""
    first = device()
    first.fire(Trigger.CONNECT)
    for event in (Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, ABSENT_TARGET):
        first.fire(event)
    assert first.state is S.FAILED

    second = device()
    second.fire(Trigger.CONNECT)
    second.fire(ConnectionFailed("refused"))
    second.fire(Trigger.TIMED_OUT)
    assert second.profile.connection_attempts == 2
    for event in (Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, ABSENT_TARGET):
        second.fire(event)
    assert second.state is S.BACKOFF and second.timeout == 4.0  # the second failure

    final = device()
    final.fire(Trigger.CONNECT)
    final.fire(ConnectionFailed("refused"))
    final.fire(Trigger.TIMED_OUT)
    for event in (Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, FINAL_REFUSAL):
        final.fire(event)
    assert final.state is S.FAILED


def test_entries_are_counted_once_per_state_entered() -> None:
    lc = device()
    assert lc.entered == 0
    lc.fire(Trigger.CONNECT)
    assert lc.entered == 1
    activate(lc)
    assert lc.entered == 5
    lc.fire(TelemetryAnswer(None))  # late: an internal row enters nothing
    assert lc.entered == 5


def test_the_engine_counts_the_lifecycles_it_holds() -> None:
    engine = LifecycleEngine()
    assert len(engine) == 0
    one = engine.create(WINDOWSAGENT)
    two = engine.create(WINDOWSAGENT)
    assert len(engine) == 2
    engine.release(one)
    assert len(engine) == 1
    engine.release(two)
    assert len(engine) == 0
    with pytest.raises(ValueError, match="not registered"):
        engine.release(two)


def test_a_heartbeat_is_stamped_at_the_time_given_or_the_clock_s() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    clock_time = datetime(2026, 6, 1, tzinfo=UTC)
    lc = ENGINE.create(WINDOWSAGENT, rng=random.Random(1), clock=lambda: clock_time)
    lc.heartbeat_seen(at)
    assert lc.profile.last_heartbeat == at
    lc.heartbeat_seen()
    assert lc.profile.last_heartbeat == clock_time


def test_an_illegal_event_says_what_was_refused_where() -> None:
    lc = device()
    with pytest.raises(IllegalTransition) as refused:
        lc.fire(Trigger.TASK_FINISHED)
    assert str(refused.value) == (
        "device 'windowsagent' is disconnected: task_finished is not accepted there"
    )
    assert not lc.accepts(RegistrationAnswer(accepted="yes"))  # type: ignore[arg-type]
