"""The heartbeat lease shared by the runner and the agent: pure arithmetic on given times."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellate.protocol.lease import HeartbeatLease
from stellate.timing import Timing


def test_nothing_outstanding_never_expires() -> None:
    lease = HeartbeatLease(Timing(heartbeat_interval=10.0, miss_limit=3), now=0.0)
    assert lease.next_beat == 10.0 and lease.expires_at == math.inf and lease.wake_at == 10.0
    assert not lease.expired(1e9) and lease.beat_due(10.0) and not lease.beat_due(9.99)


def test_miss_limit_one_does_not_expire_at_the_first_beat() -> None:
    """The off-by-one once fixed in both the runner and the agent: silence before asking is
    not a miss, so miss_limit=1 gives the first heartbeat a whole interval to be answered."""
    lease = HeartbeatLease(Timing(heartbeat_interval=30.0, miss_limit=1), now=0.0)
    assert not lease.expired(30.0)
    lease.sent(30.0)
    assert lease.expires_at == 60.0 and not lease.expired(59.9) and lease.expired(60.0)


def test_lost_after_miss_limit_unanswered_beats() -> None:
    lease = HeartbeatLease(Timing(heartbeat_interval=10.0, miss_limit=4), now=0.0)
    for beat in (10.0, 20.0, 30.0, 40.0):
        assert lease.beat_due(beat) and not lease.expired(beat)
        lease.sent(beat)
    assert lease.expires_at == 50.0  # four unanswered beats, counted from the first one
    assert lease.wake_at == 50.0


def test_an_answer_clears_what_is_outstanding() -> None:
    lease = HeartbeatLease(Timing(heartbeat_interval=10.0, miss_limit=2), now=0.0)
    lease.sent(10.0)
    lease.heard()
    assert lease.expires_at == math.inf
    lease.sent(20.0)
    assert lease.expires_at == 40.0  # counted from the first beat unanswered since


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        HeartbeatLease(Timing(heartbeat_interval=0.0, miss_limit=3), now=0.0)
    with pytest.raises(ValueError):
        HeartbeatLease(Timing(heartbeat_interval=1.0, miss_limit=0), now=0.0)


@given(
    interval=st.floats(min_value=0.01, max_value=100.0),
    miss_limit=st.integers(min_value=1, max_value=6),
    answered=st.lists(st.booleans(), max_size=20),
)
def test_expiry_follows_the_rule(interval: float, miss_limit: int, answered: list[bool]) -> None:
    """Sending on schedule, the lease expires exactly when miss_limit beats in a row went
    unanswered (a model written from the rule, not from the class)."""
    lease = HeartbeatLease(Timing(heartbeat_interval=interval, miss_limit=miss_limit), now=0.0)
    first_unanswered: float | None = None
    for was_answered in answered:
        now = lease.next_beat
        if lease.expired(now):
            assert first_unanswered is not None
            assert now >= first_unanswered + interval * miss_limit
            return
        lease.sent(now)
        if first_unanswered is None:
            first_unanswered = now
        if was_answered:
            lease.heard()
            first_unanswered = None
        expected = (
            math.inf if first_unanswered is None else first_unanswered + interval * miss_limit
        )
        assert lease.expires_at == expected
