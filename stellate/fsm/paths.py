"""Every legal path through the five phases, enumerated from the table itself.

A path starts at ``disconnected`` and ends when the device is settled: ``idle`` (task-ready) or
``failed``. Steps are fired on real lifecycles, so the guards that decide each branch are the
engine's own; retry loops are bounded by ``max_retries``. The owner's ``disconnect``, the
explicit ``retry`` out of FAILED, cutting a backoff short, task assignment, the containment
of our own bugs (``internal_error``) and a server's protocol violations lie outside the
registration flow and are not followed; internal rows change nothing and are no step.

``losses`` lets a path lose its connection after IDLE (up to that many times) and recover — or
fail — through the machine again. What a recovery may do depends on time, which a path does not
have; ``window_attempts`` models it: 0 (the default) enumerates the reference's rule (no
recovery window: reconnects spend ``max_retries``); k > 0 enumerates a recovery window that may
pass at any moment but has passed at the latest when k attempts were made since the loss.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import attrs

from ..protocol.rejections import RejectionKind
from ..timing import Timing
from .event_data import (
    AuthRejected,
    ConnectionFailed,
    EventData,
    RegistrationAnswer,
    TelemetryAnswer,
)
from .lifecycle import LifecycleEngine
from .profile import AgentProfile
from .states import INITIAL, SETTLED, DeviceStatus
from .table import rows
from .trigger import Trigger

#: Triggers that are not part of the registration flow.
OUTSIDE_FLOW = frozenset(
    {
        Trigger.DISCONNECT,
        Trigger.RETRY,
        Trigger.TASK_ASSIGNED,
        Trigger.TASK_FINISHED,
        Trigger.INTERNAL_ERROR,
        Trigger.PROTOCOL_VIOLATION,
    }
)
#: The owner's triggers followed only where a path starts (from BACKOFF, ``connect`` only cuts
#: the wait short: the same step as the deadline passing).
FROM_START_ONLY = frozenset({Trigger.CONNECT})

#: Events to try for the triggers that carry data; one variant per distinct outcome.
EVENT_VARIANTS: Mapping[Trigger, tuple[EventData, ...]] = {
    Trigger.REGISTRATION_ANSWERED: (
        RegistrationAnswer(accepted=True),
        RegistrationAnswer(accepted=False, reason="rejected", kind=RejectionKind.FINAL),
        RegistrationAnswer(
            accepted=False,
            reason="target not yet known",
            kind=RejectionKind.TARGET_NOT_YET_KNOWN,
        ),
    ),
    Trigger.TELEMETRY_RECEIVED: (TelemetryAnswer(None),),
    Trigger.CONNECTION_FAILED: (ConnectionFailed("connection failed"),),
    Trigger.AUTH_REJECTED: (AuthRejected("HTTP 403"),),
}


def events_for(trigger: Trigger) -> tuple[Trigger | EventData, ...]:
    """What to fire for ``trigger``: its variants, or the trigger itself if it carries no data."""
    return EVENT_VARIANTS.get(trigger, (trigger,))


class Step(NamedTuple):
    trigger: Trigger
    source: str
    dest: str


Path = tuple[Step, ...]

_TERMINAL = frozenset(s.value for s in SETTLED)


def flow_triggers(state: str) -> list[Trigger]:
    """The registration flow's triggers with a row from ``state``, in table order."""
    seen: dict[Trigger, None] = {}
    for row in rows():
        if row.source != state or row.internal or row.trigger in OUTSIDE_FLOW:
            continue  # an internal row is no step: it changes nothing
        if row.trigger in FROM_START_ONLY and state != INITIAL:
            continue
        seen[row.trigger] = None
    return list(seen)


#: ``paths()`` refuses to materialise more than this; ``count_paths`` has no such limit.
MAX_MATERIALISED = 500_000


def paths(max_retries: int, losses: int = 0, window_attempts: int = 0) -> list[Path]:
    """All legal paths for a device with ``max_retries`` (>= 1), at most ``losses`` drops after
    IDLE, and a recovery window modelled by ``window_attempts`` (see the module docstring).

    Raises:
        ValueError: bad bounds, or more than ``MAX_MATERIALISED`` paths (each loss after IDLE
            multiplies the count by the number of paths to IDLE: sample with a smaller
            ``max_retries`` or count with ``count_paths``).
    """
    total = count_paths(max_retries, losses, window_attempts)
    if total > MAX_MATERIALISED:
        raise ValueError(
            f"{total} paths for max_retries={max_retries}, losses={losses}, "
            f"window_attempts={window_attempts}: too many to list"
        )
    enumerator = _Enumerator(max_retries, window_attempts)
    return list(enumerator.suffixes(_Situation(INITIAL, 0, False), losses))


def count_paths(max_retries: int, losses: int = 0, window_attempts: int = 0) -> int:
    """How many legal paths ``paths(...)`` would return, without listing them."""
    enumerator = _Enumerator(max_retries, window_attempts)
    return enumerator.count(_Situation(INITIAL, 0, False), losses)


class _Situation(NamedTuple):
    """Everything the guards of a path's next step depend on (time aside)."""

    state: str
    attempts: int
    lost: bool  # reconnecting after a loss that followed activation


_WINDOW = 60.0  # any positive window: only open/passed matters to a path
_NOW = 1_000.0


class _Enumerator:
    """Memoised walk over (situation, losses left); the machine decides every branch."""

    def __init__(self, max_retries: int, window_attempts: int) -> None:
        if max_retries < 1:
            raise ValueError("max_retries must be >= 1 (an unbounded device has infinite paths)")
        if window_attempts < 0:
            raise ValueError("window_attempts must be >= 0")
        self.max_retries = max_retries
        self.window_attempts = window_attempts
        self.successors = functools.cache(self._successors)
        self.suffixes = functools.cache(self._suffixes)
        self.count = functools.cache(self._count)
        self._engine = LifecycleEngine()
        self._probe = AgentProfile(
            device_id="path-probe", server_url="ws://127.0.0.1/ws", max_retries=max_retries
        )
        self._timing = Timing(recovery_window=_WINDOW if window_attempts else 0.0)

    def _windows(self, at: _Situation) -> tuple[bool, ...]:
        """Whether the recovery window is still open: either, until it must have passed."""
        if not (at.lost and self.window_attempts):
            return (True,)  # no window applies: the guards never read it
        return (True, False) if at.attempts < self.window_attempts else (False,)

    def _successors(self, at: _Situation) -> tuple[tuple[Step, _Situation], ...]:
        out: dict[tuple[Step, _Situation], None] = {}
        for trigger in flow_triggers(at.state):
            for event in events_for(trigger):
                for window_open in self._windows(at):
                    found = self._fire(at, trigger, event, window_open)
                    if found is not None:
                        out.setdefault(found, None)
        return tuple(out)

    def _fire(
        self,
        at: _Situation,
        trigger: Trigger,
        event: Trigger | EventData,
        window_open: bool,
    ) -> tuple[Step, _Situation] | None:
        start = attrs.evolve(
            self._probe, status=DeviceStatus(at.state), connection_attempts=at.attempts
        )
        lifecycle = self._engine.create(start, timing=self._timing, monotonic=lambda: _NOW)
        if at.lost:  # the probe lost its activated connection just now, or a window ago
            lifecycle._lost_at = _NOW if window_open else _NOW - _WINDOW
        try:
            if not lifecycle.accepts(event):
                return None
            lifecycle.fire(event)
            step = Step(trigger, at.state, lifecycle.status)
            after = _Situation(
                lifecycle.status,
                lifecycle.profile.connection_attempts,
                lifecycle.recovering_since is not None,
            )
            return step, after
        finally:
            self._engine.release(lifecycle)

    def _next(self, at: _Situation, losses_left: int) -> Iterator[tuple[Step, _Situation, int]]:
        """Steps onward; from IDLE only a loss, and only while losses are left."""
        if at.state == DeviceStatus.FAILED.value or (
            at.state == DeviceStatus.IDLE.value and losses_left == 0
        ):
            return
        for step, nxt in self.successors(at):
            if at.state == DeviceStatus.IDLE.value:
                if step.trigger == Trigger.CONNECTION_FAILED:
                    yield step, nxt, losses_left - 1
            else:
                yield step, nxt, losses_left

    def _suffixes(self, at: _Situation, losses_left: int) -> tuple[Path, ...]:
        found: list[Path] = [()] if at.state in _TERMINAL else []
        for step, nxt, left in self._next(at, losses_left):
            for tail in self.suffixes(nxt, left):
                found.append((step, *tail))
        return tuple(found)

    def _count(self, at: _Situation, losses_left: int) -> int:
        total = 1 if at.state in _TERMINAL else 0
        for _step, nxt, left in self._next(at, losses_left):
            total += self.count(nxt, left)
        return total
