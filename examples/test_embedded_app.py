"""The embedding example does what its README says: run it for real and check what it did.

It runs on real sockets on 127.0.0.1 (its own agent server and agents), in about a second; no
timing is asserted, only what happened.

Run it: ``.venv/bin/pytest examples/test_embedded_app.py``.
"""

from __future__ import annotations

import pytest
import trio
from embedded_app import Outcome, main

from stellate import DeviceStatus
from stellate.manager import EventKind


@pytest.fixture(scope="module")
def run() -> tuple[Outcome, list[str]]:
    """One run of the example: its outcome and the lines it printed."""
    lines: list[str] = []
    outcome = trio.run(main, lambda *args: lines.append(" ".join(map(str, args))))
    return outcome, lines


def test_every_device_ends_idle_and_the_missing_agent_is_retried(
    run: tuple[Outcome, list[str]],
) -> None:
    result, _ = run
    assert set(result.profiles) == {"printer", "scanner", "plotter", "camera"}
    assert all(p.status is DeviceStatus.IDLE for p in result.profiles.values()), result.profiles
    failed = [e.device_id for e in result.events if e.kind is EventKind.FAILED]
    assert failed == ["plotter"]  # its agent was missing; the app started it and retried


def test_the_app_marks_each_device_busy_while_it_works_on_it(
    run: tuple[Outcome, list[str]],
) -> None:
    result, lines = run
    started = {e.device_id: e for e in result.events if e.kind is EventKind.TASK_STARTED}
    finished = {e.device_id: e for e in result.events if e.kind is EventKind.TASK_FINISHED}
    assert set(started) == set(result.profiles)  # every device did one task
    assert set(finished) == set(result.profiles)
    for device_id, event in started.items():
        assert event.task_id is not None
        assert (event.record.source, event.record.dest) == (DeviceStatus.IDLE, DeviceStatus.BUSY)
        assert event.profile.current_task_id == event.task_id
        done = finished[device_id]
        assert done.task_id == event.task_id  # the finished event names the same task
        assert (done.record.source, done.record.dest) == (DeviceStatus.BUSY, DeviceStatus.IDLE)
        assert result.events.index(event) < result.events.index(done)
        # while busy, the registry said so (the app prints what it asked)
        assert f"{device_id}: busy=True, task={event.task_id}" in lines
    # afterwards nobody is busy any more
    assert all(p.current_task_id is None for p in result.profiles.values())


def test_the_events_are_shown_with_their_task(run: tuple[Outcome, list[str]]) -> None:
    result, lines = run
    for event in result.events:
        if event.kind in (EventKind.TASK_STARTED, EventKind.TASK_FINISHED):
            assert any(
                event.kind.value in line and f"(task {event.task_id})" in line for line in lines
            ), event
