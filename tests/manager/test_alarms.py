"""The fleet's timer (``stellate.manager.alarms``): each alarm delivered once, at its time, in time
order; an earlier alarm set while the timer sleeps wakes it earlier; one target's failure does
not stop the others' alarms. Under MockClock (virtual time)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from stellate.manager.alarms import Alarms


class Target:
    def __init__(self, name: str, log: list[tuple[str, float, float]], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail

    def on_alarm(self, when: float) -> None:
        self.log.append((self.name, when, trio.current_time()))
        if self.fail:
            raise RuntimeError("a bug in one target")


async def test_alarms_come_once_at_their_time_in_time_order(autojump_clock: Any) -> None:
    log: list[tuple[str, float, float]] = []
    alarms = Alarms()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(alarms.run)
        await trio.sleep(1)  # the timer is asleep with nothing to do
        for name, delay in [("c", 30.0), ("a", 10.0), ("b", 20.0), ("a2", 10.0)]:
            alarms.set(start + delay, Target(name, log))
        assert len(alarms) == 4
        await trio.sleep(40)
        assert len(alarms) == 0
        # Set while the timer sleeps toward a later one: the earlier one still comes on time.
        alarms.set(trio.current_time() + 100, Target("late", log))
        alarms.set(trio.current_time() + 5, Target("early", log))
        await trio.sleep(200)
        nursery.cancel_scope.cancel()
    assert [(name, when - start, at - start) for name, when, at in log] == [
        ("a", 10.0, 10.0),
        ("a2", 10.0, 10.0),  # same time: in the order they were set
        ("b", 20.0, 20.0),
        ("c", 30.0, 30.0),
        ("early", 46.0, 46.0),
        ("late", 141.0, 141.0),
    ]


async def test_an_alarm_in_the_past_comes_at_once(autojump_clock: Any) -> None:
    log: list[tuple[str, float, float]] = []
    alarms = Alarms()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(alarms.run)
        await trio.sleep(10)
        now = trio.current_time()
        alarms.set(now - 5, Target("past", log))
        await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    assert log == [("past", now - 5, now)]


async def test_a_failing_target_is_logged_and_the_others_still_come(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[tuple[str, float, float]] = []
    alarms = Alarms()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(alarms.run)
        alarms.set(start + 1, Target("bad", log, fail=True))
        alarms.set(start + 1, Target("good", log))
        alarms.set(start + 2, Target("later", log))
        with caplog.at_level(logging.ERROR, logger="stellate.manager.alarms"):
            await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [name for name, _, _ in log] == ["bad", "good", "later"]
    assert any("alarm of" in r.getMessage() for r in caplog.records)
