"""What the manager tells watchers: one ``ManagerEvent`` per transition, with its meaning.

An event's kind is read from the row's meanings, declared with the table
(``stellate.fsm.Meaning``): nothing here decodes a row's source or destination.
"""

from __future__ import annotations

from enum import StrEnum

import attrs

from ..fsm import AgentProfile, Meaning, TransitionRecord


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
    #: Waiting for the next attempt (the new state's deadline is a wait: backing off, or
    #: failed with ``retry_failed_after``): seconds until it (what a display says while
    #: waiting); None otherwise.
    retry_in: float | None = None
    #: The task this transition started, finished or interrupted (see ``EventKind``).
    task_id: str | None = None

    @property
    def meanings(self) -> frozenset[Meaning]:
        """What the transition means, as the table declares it (``record.meanings``)."""
        return self.record.meanings


_FAILED = (EventKind.FAILED,)
_TASK_STARTED = (EventKind.TASK_STARTED,)
_TASK_FINISHED = (EventKind.TASK_FINISHED,)
_LOST = (EventKind.CONNECTION_LOST,)
_READY = (EventKind.READY,)
_MERGED_READY = (EventKind.TELEMETRY_MERGED, EventKind.READY)
_PHASE = (EventKind.PHASE,)


def _kinds(record: TransitionRecord) -> tuple[EventKind, ...]:
    """The events a transition yields, from its row's meanings (most specific first)."""
    meanings = record.meanings
    if Meaning.GAVE_UP in meanings:
        return _FAILED
    if Meaning.TASK_STARTED in meanings:
        return _TASK_STARTED
    if Meaning.TASK_FINISHED in meanings:
        return _TASK_FINISHED
    if Meaning.LOST in meanings:
        return _LOST
    if Meaning.READY in meanings:
        return _MERGED_READY if record.telemetry_merged else _READY
    return _PHASE
