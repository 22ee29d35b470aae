"""Resuming a device's lifecycle on another manager: the FSM's rule, in one place.

When a device changes manager (a failover, a hand-off, a restart of the only manager), the new
owner rebuilds its lifecycle from what the old one kept (``stellate.store.snapshot``). Which
state it resumes in is a rule about device states, so it lives here, with the machine:

* a device that neither holds a socket nor is attempting one (``disconnected``, ``backoff``,
  ``failed``) resumes where it was: a FAILED device stays FAILED with its reason until retried
  or what is left of its ``retry_failed_after`` passes, a device backing off waits out what
  is left of its wait;
* any other device lost its socket with its old owner: it resumes in ``backoff`` with nothing
  left to wait (the new owner connects at once), as after a loss that is nobody's fault —
  an activated device starts (or continues) a recovery, so the reconnect does not spend
  ``max_retries``; an attempt cut short is not counted; a task it was running is over;
* either way, until it is next activated (or the owner starts a new run), a moved device meets
  its server in flux: the old owner's registration may not be gone yet, so a refusal that says
  the id is still held (or the target not yet known) backs off instead of failing the device,
  as it does after a failed attempt (the table's ``transient_rejection``).

A device taken over with no snapshot at all (the fleet's first start, or a store that lost its
data) is started by :func:`resume_fresh` as one moved here in the middle of an attempt: it
connects at once, and since a previous owner may still be registered for it, a refusal saying
so backs off rather than failing the device.

Everything the lifecycle remembers beyond its profile travels as :class:`LifecycleMemory`, in
durations: the FSM has no wall clock, and the snapshot turns them into absolute times.
"""

from __future__ import annotations

from typing import Any

import attrs

from .lifecycle import DeviceLifecycle, LifecycleEngine
from .profile import AgentProfile
from .states import ACTIVE, ATTEMPTING, HOLDS_SOCKET, DeviceStatus

__all__ = ["LifecycleMemory", "memory_of", "resume", "resume_fresh", "resumed_status"]


@attrs.frozen
class LifecycleMemory:
    """What a lifecycle remembers beyond its profile, with times as durations."""

    failure_reason: str | None = None
    last_error: str | None = None
    #: Failures in a row that climb the backoff (failed attempts and flaps).
    consecutive_failures: int = 0
    #: Seconds since the activated connection was lost (None: not recovering).
    recovering_for: float | None = None
    #: Seconds since the device was last activated (None: not since its run began).
    active_for: float | None = None
    #: Seconds left before the current state's deadline (None: it has none).
    deadline_in: float | None = None


def memory_of(lifecycle: DeviceLifecycle, *, deadline_in: float | None) -> LifecycleMemory:
    """What ``lifecycle`` remembers now; ``deadline_in`` is the runner's (it arms deadlines)."""
    now = lifecycle._now()
    lost, activated = lifecycle._lost_at, lifecycle._activated_at
    return LifecycleMemory(
        failure_reason=lifecycle.failure_reason,
        last_error=lifecycle.last_error,
        consecutive_failures=lifecycle.consecutive_failures,
        recovering_for=None if lost is None else max(0.0, now - lost),
        active_for=None if activated is None else max(0.0, now - activated),
        deadline_in=deadline_in,
    )


def resumed_status(status: DeviceStatus) -> DeviceStatus:
    """The state a device last seen in ``status`` resumes in on a new owner."""
    if status in HOLDS_SOCKET or status in ATTEMPTING:
        return DeviceStatus.BACKOFF
    return status


def resume(
    engine: LifecycleEngine,
    profile: AgentProfile,
    left_in: DeviceStatus,
    memory: LifecycleMemory,
    **create: Any,
) -> DeviceLifecycle:
    """A lifecycle for ``profile``, left in status ``left_in`` by its old owner, on this one.

    ``create`` takes ``LifecycleEngine.create``'s keyword arguments (timing, rng, clock,
    observer, monotonic). The returned lifecycle's ``timeout`` is the deadline left in its
    state: the runner arms it, as on entering a state.
    """
    status = resumed_status(left_in)
    moved = status != left_in
    attempts = profile.connection_attempts
    if moved and left_in in ATTEMPTING:
        attempts = max(0, attempts - 1)  # the attempt cut short by the move does not count
    resumed = attrs.evolve(
        profile,
        status=status,
        connection_attempts=attempts,
        current_task_id=None if moved else profile.current_task_id,
    )
    lifecycle = engine.create(resumed, **create)
    now = lifecycle._now()
    lifecycle.failure_reason = memory.failure_reason
    lifecycle.last_error = memory.last_error
    lifecycle.consecutive_failures = memory.consecutive_failures
    recovering_for = memory.recovering_for
    if moved and left_in in ACTIVE and recovering_for is None:
        recovering_for = 0.0  # the move is a loss of the activated connection
    lifecycle._lost_at = None if recovering_for is None else now - recovering_for
    lifecycle._activated_at = None if memory.active_for is None else now - memory.active_for
    lifecycle._moved = True
    if moved:
        lifecycle.timeout = 0.0
    elif memory.deadline_in is not None:
        lifecycle.timeout = max(0.0, memory.deadline_in)
    else:
        lifecycle.timeout = None
    return lifecycle


def resume_fresh(engine: LifecycleEngine, profile: AgentProfile, **create: Any) -> DeviceLifecycle:
    """A lifecycle for ``profile`` taken over with no snapshot: resumed as left in the middle
    of an attempt (nothing counted, nothing remembered), so it connects at once as a moved
    device (``resume``'s keyword arguments)."""
    return resume(engine, profile, DeviceStatus.CONNECTING, LifecycleMemory(), **create)
