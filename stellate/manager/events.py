"""What the manager tells watchers: one ``ManagerEvent`` per transition, with its meaning."""

from __future__ import annotations

from enum import StrEnum

import attrs

from ..fsm import ACTIVE, AgentProfile, DeviceStatus, TransitionRecord, Trigger


class EventKind(StrEnum):
    """What a transition means to someone watching the fleet."""

    PHASE = "phase"  # any other phase change
    TELEMETRY_MERGED = "telemetry_merged"  # system info merged into the profile
    READY = "ready"  # reached IDLE (activated)
    TASK_STARTED = "task_started"  # the app marked the device busy (event.task_id)
    TASK_FINISHED = "task_finished"  # the app marked it idle again (event.task_id)
    CONNECTION_LOST = "connection_lost"  # an activated device lost its server (while busy:
    # event.task_id is the interrupted task)
    FAILED = "failed"  # gave up (retries exhausted, window passed, rejected, or our bug)


@attrs.frozen
class ManagerEvent:
    """One thing that happened to one device.

    Every transition yields exactly one event whose kind is its meaning (``PHASE`` if none
    more specific applies). The one exception: activation with telemetry yields
    ``TELEMETRY_MERGED`` then ``READY`` for the same record, so a watcher of either kind sees
    every device that gets there.
    """

    kind: EventKind
    device_id: str
    record: TransitionRecord
    profile: AgentProfile
    reason: str | None = None
    #: Entering ``backoff``: seconds until the next attempt (what a display says while waiting).
    retry_in: float | None = None
    #: The task this transition started, finished or interrupted (see ``EventKind``).
    task_id: str | None = None


def _kinds(record: TransitionRecord, merged: bool) -> tuple[EventKind, ...]:
    if record.dest is DeviceStatus.FAILED:
        return (EventKind.FAILED,)
    if record.trigger is Trigger.TASK_ASSIGNED:
        return (EventKind.TASK_STARTED,)
    if record.trigger is Trigger.TASK_FINISHED:
        return (EventKind.TASK_FINISHED,)
    if record.source in ACTIVE and record.dest is DeviceStatus.BACKOFF:
        return (EventKind.CONNECTION_LOST,)
    if record.dest is DeviceStatus.IDLE:
        return (EventKind.TELEMETRY_MERGED, EventKind.READY) if merged else (EventKind.READY,)
    return (EventKind.PHASE,)
