"""The heartbeat lease, seen from the side that sends heartbeats: when to send, when to give up.

Pure arithmetic on times the caller supplies (no clock, no I/O), shared by the manager's device
runner and the device agent so the rule exists once, reading its numbers from the one
``Timing`` both are given. The rule: a heartbeat goes out every ``heartbeat_interval``; the peer
is lost when ``miss_limit`` heartbeats in a row went unanswered, i.e. when nothing has come back
within ``Timing.lease`` of the first heartbeat still unanswered. Silence before anything was
asked is not a miss: counted from the last answer instead, ``miss_limit=1`` would give up at the
very instant the first heartbeat is due.

Any frame from the peer counts as an answer (``heard``): a server busy sending something else is
alive. ``heard`` clears what is outstanding instead of comparing clock readings, so an answer
processed at the same instant as a send is never lost to a tie.
"""

from __future__ import annotations

import math

from ..timing import Timing

__all__ = ["HeartbeatLease"]


class HeartbeatLease:
    """One connection's heartbeat schedule and liveness verdict.

    Args:
        timing: its ``heartbeat_interval`` spaces the heartbeats; its ``lease``
            (``heartbeat_interval × miss_limit``) is how long the peer may leave them unanswered.
        now: when the connection became ready for heartbeats (the first is due one
            interval later).
    """

    __slots__ = ("next_beat", "timing", "unanswered_since")

    def __init__(self, timing: Timing, now: float) -> None:
        self.timing = timing
        #: When the next heartbeat is due.
        self.next_beat = now + timing.heartbeat_interval
        #: When the oldest heartbeat still unanswered was sent (None: nothing outstanding).
        self.unanswered_since: float | None = None

    @property
    def expires_at(self) -> float:
        """When the peer counts as lost if nothing is heard before (``inf``: never)."""
        since = self.unanswered_since
        return math.inf if since is None else since + self.timing.lease

    @property
    def wake_at(self) -> float:
        """The next instant something is due: a heartbeat or the verdict."""
        return min(self.next_beat, self.expires_at)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at

    def beat_due(self, now: float) -> bool:
        return now >= self.next_beat

    def sent(self, now: float) -> None:
        """A heartbeat went out at ``now``: schedule the next, and start the count if idle."""
        if self.unanswered_since is None:
            self.unanswered_since = now
        self.next_beat = now + self.timing.heartbeat_interval

    def heard(self) -> None:
        """Something came back from the peer: everything sent so far is answered."""
        self.unanswered_since = None
