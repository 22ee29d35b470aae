"""Every legal path through the five phases, enumerated from the table itself.

A path starts at ``disconnected`` and ends when the device is ``idle`` (task-ready) or
``failed``. Steps are fired on real lifecycles, so the guards that decide each branch are the
engine's own; retry loops are bounded by ``max_retries``. The owner's ``disconnect``, the
explicit ``retry`` out of FAILED and task assignment lie outside the registration flow and are
not followed. ``losses`` lets a path lose its connection after IDLE (up to that many times)
and recover — or fail — through the machine again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import attrs

from ..timing import Timing
from .lifecycle import LifecycleEngine
from .profile import AgentProfile
from .status import DeviceStatus
from .table import rows
from .trigger import Trigger

#: Triggers that are not part of the registration flow.
OUTSIDE_FLOW = frozenset(
    {Trigger.DISCONNECT, Trigger.RETRY, Trigger.TASK_ASSIGNED, Trigger.TASK_FINISHED}
)

#: Event data to try for triggers whose guards read it; one variant per distinct outcome.
EVENT_VARIANTS: Mapping[Trigger, tuple[Mapping[str, Any], ...]] = {
    Trigger.REGISTRATION_ANSWERED: (
        {"accepted": True},
        {"accepted": False, "reason": "rejected"},
    ),
    Trigger.TELEMETRY_RECEIVED: ({"system_info": None},),
    Trigger.CONNECTION_FAILED: ({"reason": "connection failed"},),
}


class Step(NamedTuple):
    trigger: Trigger
    source: str
    dest: str


Path = tuple[Step, ...]

_TERMINAL = {DeviceStatus.IDLE.value, DeviceStatus.FAILED.value}


def _triggers_from(state: str) -> list[Trigger]:
    seen: dict[Trigger, None] = {}
    for trigger, source, _dest, _c, _u in rows():
        if source == state and trigger not in OUTSIDE_FLOW:
            seen[Trigger(trigger)] = None
    return list(seen)


#: ``paths()`` refuses to materialise more than this; ``count_paths`` has no such limit.
MAX_MATERIALISED = 500_000


def paths(max_retries: int, losses: int = 0) -> list[Path]:
    """All legal paths for a device with ``max_retries`` (≥ 1), at most ``losses`` drops after IDLE.

    Raises:
        ValueError: bad bounds, or more than ``MAX_MATERIALISED`` paths (each loss after IDLE
            multiplies the count by the number of paths to IDLE: sample with a smaller
            ``max_retries`` or count with ``count_paths``).
    """
    total = count_paths(max_retries, losses)
    if total > MAX_MATERIALISED:
        raise ValueError(
            f"{total} paths for max_retries={max_retries}, losses={losses}: too many to list"
        )
    return list(_Enumerator(max_retries).suffixes(DeviceStatus.DISCONNECTED.value, 0, losses))


def count_paths(max_retries: int, losses: int = 0) -> int:
    """How many legal paths ``paths(max_retries, losses)`` would return, without listing them."""
    return _Enumerator(max_retries).count(DeviceStatus.DISCONNECTED.value, 0, losses)


class _Enumerator:
    """Memoised walk over (state, attempts, losses left); the machine decides every branch."""

    def __init__(self, max_retries: int) -> None:
        if max_retries < 1:
            raise ValueError("max_retries must be >= 1 (an unbounded device has infinite paths)")
        self.max_retries = max_retries
        self.successors = functools.cache(self._successors)
        self.suffixes = functools.cache(self._suffixes)
        self.count = functools.cache(self._count)
        self._engine = LifecycleEngine()
        self._probe = AgentProfile(
            device_id="path-probe", server_url="ws://127.0.0.1/ws", max_retries=max_retries
        )
        self._timing = Timing()

    def _successors(self, state: str, attempts: int) -> tuple[tuple[Step, str, int], ...]:
        out: dict[Step, tuple[Step, str, int]] = {}
        for trigger in _triggers_from(state):
            for data in EVENT_VARIANTS.get(trigger, ({},)):
                start = attrs.evolve(
                    self._probe, status=DeviceStatus(state), connection_attempts=attempts
                )
                lifecycle = self._engine.create(start, timing=self._timing)
                try:
                    lifecycle.fire(trigger, **data)
                    step = Step(trigger, state, lifecycle.status)
                    out.setdefault(
                        step, (step, lifecycle.status, lifecycle.profile.connection_attempts)
                    )
                finally:
                    self._engine.release(lifecycle)
        return tuple(out.values())

    def _next(
        self, state: str, attempts: int, losses_left: int
    ) -> Iterator[tuple[Step, str, int, int]]:
        """Steps onward; from IDLE only a loss, and only while losses are left."""
        if state == DeviceStatus.FAILED.value or (
            state == DeviceStatus.IDLE.value and losses_left == 0
        ):
            return
        for step, nxt, nxt_attempts in self.successors(state, attempts):
            if state == DeviceStatus.IDLE.value:
                if step.trigger == Trigger.CONNECTION_FAILED:
                    yield step, nxt, nxt_attempts, losses_left - 1
            else:
                yield step, nxt, nxt_attempts, losses_left

    def _suffixes(self, state: str, attempts: int, losses_left: int) -> tuple[Path, ...]:
        found: list[Path] = [()] if state in _TERMINAL else []
        for step, nxt, nxt_attempts, left in self._next(state, attempts, losses_left):
            for tail in self.suffixes(nxt, nxt_attempts, left):
                found.append((step, *tail))
        return tuple(found)

    def _count(self, state: str, attempts: int, losses_left: int) -> int:
        total = 1 if state in _TERMINAL else 0
        for _step, nxt, nxt_attempts, left in self._next(state, attempts, losses_left):
            total += self.count(nxt, nxt_attempts, left)
        return total
