"""What the harness drives beyond a schedule of faults: a busy server's Retry-After, and the
owner's retry of a FAILED device. Each scenario runs the real manager against the fake
server and checks every fleet invariant (the waits by ``stellate.testing.reference``, the path
by ``expected_path``), then the one fact its name states."""

from __future__ import annotations

from stellate.fsm import DeviceStatus, Trigger
from stellate.testing import (
    HARNESS_TIMING,
    Busy,
    DropAfterIdle,
    FleetDevice,
    Healthy,
    Refuse,
    Reject,
    run_fleet,
)


def test_a_busy_server_s_retry_after_is_waited_out() -> None:
    timing = HARNESS_TIMING.evolve(reconnect_delay=5.0, backoff_cap=5.0)
    result = run_fleet([FleetDevice("d", [Busy(retry_after=30.0), Healthy()])], timing=timing)
    result.check()
    (wait,) = result.devices["d"].backoffs
    assert wait.delay <= 5.0 and wait.waited == 30.0  # drawn as usual, waited as asked
    assert result.devices["d"].status is DeviceStatus.IDLE


def test_a_retry_after_shorter_than_the_draw_changes_nothing() -> None:
    timing = HARNESS_TIMING.evolve(reconnect_delay=5.0, jitter_floor=1.0)
    result = run_fleet([FleetDevice("d", [Busy(retry_after=1.0), Healthy()])], timing=timing)
    result.check()
    (wait,) = result.devices["d"].backoffs
    assert wait.delay == wait.waited == 5.0


def test_a_retry_after_never_waits_past_the_recovery_window() -> None:
    # lost after IDLE at t=0-ish, then the server asks for 10 minutes: the window (60 s) ends
    # first, and the device is given up when it does
    timing = HARNESS_TIMING.evolve(recovery_window=60.0, reconnect_delay=1.0)
    device = FleetDevice("d", [Healthy(idle=DropAfterIdle(1)), Busy(retry_after=600.0)])
    result = run_fleet([device], timing=timing)
    result.check()
    outcome = result.devices["d"]
    assert outcome.status is DeviceStatus.FAILED
    assert outcome.failure_reason is not None and "recovery window" in outcome.failure_reason
    last = outcome.backoffs[-1]
    assert last.waited is not None and last.waited < 60.0


def test_the_owner_s_retry_starts_a_fresh_run() -> None:
    device = FleetDevice("d", [Refuse(), Refuse(), Healthy()], max_retries=2, retries=1)
    result = run_fleet([device])
    result.check()
    path = result.paths["d"]
    retry = [i for i, step in enumerate(path) if step.trigger == Trigger.RETRY]
    assert len(retry) == 1 and path[retry[0] - 1].dest == DeviceStatus.FAILED
    assert result.devices["d"].status is DeviceStatus.IDLE
    assert len(result.devices["d"].attempts) == 3  # two spent, then one of the fresh run


def test_a_retried_device_treats_the_reference_s_refusal_as_final_again() -> None:
    # the retry starts over: the duplicate-id answer right after it is final (no attempt of
    # the new run failed yet), as it was on the very first attempt
    device = FleetDevice("d", [Reject.duplicate(), Reject.duplicate()], retries=1)
    result = run_fleet([device])
    result.check()
    assert [s.trigger for s in result.paths["d"]].count(Trigger.REGISTRATION_ANSWERED) == 2
    assert result.devices["d"].status is DeviceStatus.FAILED
