"""One timer task for a whole fleet: devices are woken at their deadlines by a heap, not each
by a sleeping task of its own.

Why. In trio a task that sleeps until a deadline pays for a cancel scope, a deadline
registration and a ``Cancelled`` exception raised and caught when the deadline passes
(measured: ~140,000 CPU instructions per wake-up, against ~30,000 to wake a task that parked
itself and is rescheduled directly). A fleet of N devices wakes N times per heartbeat interval,
and during bring-up once per state deadline. Here one task sleeps until the earliest deadline
of the fleet, and wakes every device whose deadline has come by calling its ``on_alarm``
(the device's runner then reschedules its parked task). See docs/performance.md.

Alarms are hints, not promises: a woken device looks at the clock itself and decides what is
due (a state deadline, a heartbeat, a lease verdict), so an alarm that is no longer wanted is
harmless. ``on_alarm`` is called synchronously from the timer task: it must be quick, must not
block and must not raise.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from typing import Protocol

import trio

__all__ = ["Alarmed", "Alarms"]

logger = logging.getLogger(__name__)


class Alarmed(Protocol):
    """What can be woken: ``on_alarm(when)`` is called once ``when`` has come."""

    def on_alarm(self, when: float) -> None: ...


class Alarms:
    """The fleet's timer: ``set(when, target)``, and ``run`` in a nursery of the fleet's owner."""

    __slots__ = ("_heap", "_scope", "_seq")

    def __init__(self) -> None:
        # (when, sequence, target): the sequence keeps equal times in the order they were set
        # (and never compares targets).
        self._heap: list[tuple[float, int, Alarmed]] = []
        self._seq = itertools.count()
        # The timer task's sleep, while it sleeps: moved earlier when an earlier alarm is set.
        self._scope: trio.CancelScope | None = None

    def set(self, when: float, target: Alarmed) -> None:
        """Call ``target.on_alarm(when)`` once trio's clock reaches ``when``."""
        heapq.heappush(self._heap, (when, next(self._seq), target))
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    def __len__(self) -> int:
        """Alarms set and not yet delivered (including ones their target no longer wants)."""
        return len(self._heap)

    async def run(self) -> None:
        """Deliver alarms until cancelled."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                when, _, target = heapq.heappop(heap)
                try:
                    target.on_alarm(when)
                except Exception:  # a bug in one device must not stop every device's timers
                    logger.exception("alarm of %r failed", target)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._scope:
                await trio.sleep_forever()
            self._scope = None
