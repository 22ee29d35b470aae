"""A random walk over one lifecycle: any event, legal or not, with random event data, while
time passes (the recovery and stability windows are measured on it).

The table is the oracle for where each event should lead; the guards' truth comes from a model
written from the rules (what happened so far on this walk), not from the lifecycle's own
memory, and the bounds of every wait from ``stellate.testing.reference`` (the documented
backoff rule restated), never from ``Timing``'s own arithmetic. Invariants are checked after
every step.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest
from fsm_support import WINDOWSAGENT, FakeClock, Monotonic, Recorder, S
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from profiles import examples

from stellate.fsm import (
    ACTIVE,
    TRIGGERS,
    DeviceStatus,
    IllegalTransition,
    Row,
    Timing,
    Trigger,
    rows,
)
from stellate.fsm.event_data import (
    DATA_OF,
    ConnectionFailed,
    RegistrationAnswer,
    TaskAssigned,
    TelemetryAnswer,
)
from stellate.fsm.lifecycle import InvalidEventData, LifecycleEngine
from stellate.protocol import RejectionKind
from stellate.testing import reference, retry_policies, system_infos

TIMED_STATES = {S.CONNECTING, S.REGISTERING, S.TELEMETRY, S.BACKOFF}
ACTIVATION = [Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, Trigger.REGISTRATION_ANSWERED]
TRANSIENT = {RejectionKind.TARGET_NOT_YET_KNOWN, RejectionKind.ID_STILL_HELD}
#: The next event on the way to (and around) task-ready.
HAPPY = {
    S.DISCONNECTED: Trigger.CONNECT,
    S.CONNECTING: Trigger.CONNECTION_OPENED,
    S.CONNECTED: Trigger.REGISTER_SENT,
    S.REGISTERING: Trigger.REGISTRATION_ANSWERED,
    S.TELEMETRY: Trigger.TELEMETRY_RECEIVED,
    S.IDLE: Trigger.TASK_ASSIGNED,
    S.BUSY: Trigger.TASK_FINISHED,
    S.BACKOFF: Trigger.TIMED_OUT,
    S.FAILED: Trigger.RETRY,
}


def event_of(trigger: str) -> st.SearchStrategy[Any]:
    """``trigger`` as ``fire`` takes it: well-formed data, random where the data matters."""
    reason = st.sampled_from(["refused", "reset", ""])
    if trigger == Trigger.REGISTRATION_ANSWERED:
        return st.builds(
            RegistrationAnswer,
            accepted=st.booleans(),
            reason=reason,
            kind=st.sampled_from(RejectionKind),
        )
    if trigger == Trigger.TELEMETRY_RECEIVED:
        return st.builds(TelemetryAnswer, st.none() | system_infos())
    if trigger == Trigger.TASK_ASSIGNED:
        return st.builds(TaskAssigned, st.text(min_size=1, max_size=8))
    if trigger == Trigger.CONNECTION_FAILED:
        return st.builds(
            ConnectionFailed, reason=reason, retry_after=st.sampled_from([None, 0.0, 7.5])
        )
    if trigger in (Trigger.AUTH_REJECTED, Trigger.INTERNAL_ERROR, Trigger.PROTOCOL_VIOLATION):
        return st.builds(DATA_OF[Trigger(trigger)], reason=reason)
    return st.just(trigger)


events = st.sampled_from([*TRIGGERS, "no_such_event"]).flatmap(
    lambda trigger: st.tuples(st.just(trigger), event_of(trigger))
)


def documented_bounds(timing: Timing, failures: int, *, recovering: bool) -> tuple[float, float]:
    """The bounds of the wait after the ``failures``-th failure in a row, by the reference."""
    step = reference.climbing_step(
        reconnect_delay=timing.reconnect_delay,
        rejoin_delay=timing.rejoin_delay,
        recovering=recovering,
    )
    return reference.backoff_bounds(
        max(failures, 1),
        reconnect_delay=step,
        backoff_cap=timing.backoff_cap,
        jitter_floor=timing.jitter_floor,
    )


class LifecycleWalk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = LifecycleEngine()

    @initialize(
        max_retries=st.none() | st.integers(min_value=1, max_value=4),
        policy=retry_policies(),
        # the windows and steps that make the rules differ first (derandomized runs draw them
        # most)
        windows=st.tuples(st.sampled_from([300.0, 30.0, 0.0]), st.sampled_from([45.0, 0.0])),
        steps=st.tuples(st.sampled_from([0.5, 4.0]), st.sampled_from([2.0, 0.25, 8.0])) | st.none(),
        retry_failed_after=st.sampled_from([None, 300.0, 7.5]),
        seed=st.integers(min_value=0, max_value=2**32 - 1),
    )
    def start(
        self,
        max_retries: int | None,
        policy: Timing,
        windows: tuple[float, float],
        steps: tuple[float, float] | None,
        retry_failed_after: float | None,
        seed: int,
    ) -> None:
        self.clock = FakeClock()
        self.mono = Monotonic()
        self.recorder = Recorder()
        self.timing = policy.evolve(
            recovery_window=windows[0],
            stability_window=windows[1],
            retry_failed_after=retry_failed_after,
        )
        if steps is not None:  # waits short beside the windows, rejoin_delay either side
            reconnect, rejoin = steps
            self.timing = self.timing.evolve(
                reconnect_delay=reconnect, rejoin_delay=rejoin, backoff_cap=16.0
            )
        self.lc = self.engine.create(
            attrs.evolve(WINDOWSAGENT, max_retries=max_retries),
            timing=self.timing,
            rng=random.Random(seed),
            clock=self.clock,
            observer=self.recorder,
            monotonic=self.mono,
        )
        # -- the model: written from the rules, updated by what the walk fires -------------
        self.attempts = 0
        self.since_connecting: list[tuple[str, Any]] | None = None
        self.lost_at: float | None = None  # the loss of an activated connection
        self.activated_at: float | None = None
        self.failures = 0  # failures in a row that climb the backoff
        self.draining = False  # the owner drains the device: no new task
        self.wait: tuple[float, float] | None = None  # the bounds the last backoff drew from
        self.backoff_entered: tuple[float, float] | None = None  # (when, retry_after floor)

    # -- the guards, from the model ------------------------------------------------------------
    def guards(self, event: Any) -> dict[str, bool]:
        profile, timing, now = self.lc.profile, self.timing, self.mono.now
        recovering = self.lost_at is not None and timing.recovery_window > 0
        in_flux = self.attempts > 1 or self.lost_at is not None
        answer = event if isinstance(event, RegistrationAnswer) else None
        return {
            "retries_left": profile.max_retries is None or self.attempts < profile.max_retries,
            "accepted": answer is not None and answer.accepted is True,
            "recovering": recovering,
            "window_open": self.lost_at is not None and now < self.lost_at + timing.recovery_window,
            "transient_rejection": answer is not None
            and answer.accepted is False
            and answer.kind in TRANSIENT
            and in_flux,
            "stable": self.activated_at is not None
            and now - self.activated_at >= timing.stability_window,
            "auto_retry": timing.retry_failed_after is not None,
            "draining": self.draining,
        }

    def table_row(self, trigger: str, event: Any) -> Row | None:
        """The row the table says fires (None: the event is illegal here)."""
        guards = self.guards(event)
        for row in rows():
            if row.trigger != trigger or row.source != self.lc.status:
                continue
            if all(guards[g] for g in row.conditions) and not any(guards[g] for g in row.unless):
                return row
        return None

    # -- rules ----------------------------------------------------------------------------
    @rule(event=events)
    def fire_any(self, event: tuple[str, Any]) -> None:
        self._fire(*event)

    @rule(data=st.data())
    def fire_legal(self, data: st.DataObject) -> None:
        """An event the state has a row for (its guards may still refuse it)."""
        trigger = data.draw(st.sampled_from(self._triggers_here()), label="trigger")
        self._fire(trigger, data.draw(event_of(trigger), label="data"))

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """Like fire_legal without the owner's disconnect and our bugs, so walks get deep."""
        quiet = (Trigger.DISCONNECT, Trigger.INTERNAL_ERROR)
        triggers = [t for t in self._triggers_here() if t not in quiet]
        trigger = data.draw(st.sampled_from(triggers), label="trigger")
        self._fire(trigger, data.draw(event_of(trigger), label="data"))

    @rule(data=st.data())
    def progress(self, data: st.DataObject) -> None:
        """The happy path's next event, so walks reach activation and tasks often."""
        trigger = HAPPY[self.lc.state]
        event = data.draw(event_of(trigger), label="data")
        if trigger == Trigger.REGISTRATION_ANSWERED:
            event = attrs.evolve(event, accepted=True)
        self._fire(trigger, event)

    @precondition(lambda self: self.lc.state not in ACTIVE)
    @rule(data=st.data())
    def activate(self, data: st.DataObject) -> None:
        """The happy path's events up to task-ready in one rule: walks activate, and so lose
        an activated connection and recover, within a few steps."""
        for _ in range(len(HAPPY)):
            if self.lc.state in ACTIVE:
                return
            self.progress(data)

    @precondition(lambda self: self.lc.state in ACTIVE)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        """A connection lost after activation: recoveries, reached as often as tasks."""
        self._fire(Trigger.CONNECTION_FAILED, data.draw(event_of(Trigger.CONNECTION_FAILED)))

    @rule()
    def drain(self) -> None:
        """The owner will disconnect the device once its task is over (data, not a state)."""
        before = self.lc.state
        self.lc.drain()
        self.draining = True
        assert self.lc.state == before

    @rule(seconds=st.sampled_from([0.5, 10.0, 40.0, 400.0]))
    def time_passes(self, seconds: float) -> None:
        self.mono.now += seconds

    def _triggers_here(self) -> list[str]:
        here = self.lc.status
        return [t for t in TRIGGERS if any(r.trigger == t and r.source == here for r in rows())]

    @precondition(lambda self: self.lc.state in (S.REGISTERING, S.IDLE))
    @rule(bad=st.sampled_from(["no_accepted", "accepted_str", "no_task_id"]))
    def fire_malformed(self, bad: str) -> None:
        event = {
            "no_accepted": Trigger.REGISTRATION_ANSWERED,
            "accepted_str": RegistrationAnswer(accepted="yes"),  # type: ignore[arg-type]
            "no_task_id": Trigger.TASK_ASSIGNED,
        }[bad]
        before = self._snapshot()
        with pytest.raises(InvalidEventData):
            self.lc.fire(event)
        assert self._snapshot() == before

    def _snapshot(self) -> tuple[Any, ...]:
        lc = self.lc
        return (
            lc.profile,
            lc.timeout,
            lc.failure_reason,
            lc.last_error,
            len(self.recorder.records),
        )

    def _fire(self, trigger: str, event: Any) -> None:
        lc = self.lc
        source = lc.state
        row = self.table_row(trigger, event) if trigger in TRIGGERS else None
        if row is None:
            before = self._snapshot()
            with pytest.raises(IllegalTransition) as info:
                lc.fire(event)
            assert info.value.status == source and info.value.trigger == trigger
            assert self._snapshot() == before
            return

        if row.internal:  # logged and ignored: nothing changes, nobody is told
            before = self._snapshot()
            assert lc.fire(event) == []
            assert self._snapshot() == before and lc.state == source
            return

        lc.fire(event)
        dest = lc.state
        assert dest == row.dest
        assert self.recorder.records[-1].step == (trigger, source.value, dest.value)
        if source == S.FAILED:  # the owner, or its own deadline when one is configured
            assert trigger in (Trigger.RETRY, Trigger.DISCONNECT) or (
                trigger == Trigger.TIMED_OUT and self.timing.retry_failed_after is not None
            )
        self._update_model(trigger, event, source, dest, row)

    def _update_model(self, trigger: str, event: Any, source: S, dest: S, row: Row) -> None:
        now = self.mono.now
        fresh = trigger in (Trigger.RETRY, Trigger.CONNECT) and source != S.BACKOFF
        if fresh or (source == S.FAILED and trigger == Trigger.TIMED_OUT):
            # the owner starts a fresh run, or a failed device's retry_failed_after passed
            self.attempts, self.failures = 0, 0
            self.lost_at = self.activated_at = None
        if dest == S.DISCONNECTED or fresh or (source == S.FAILED and trigger == Trigger.TIMED_OUT):
            self.draining = False  # stopped, or a new run: the drain is over
        if dest == S.CONNECTING:
            self.attempts += 1
            self.since_connecting = []
        elif self.since_connecting is not None:
            self.since_connecting.append((trigger, event))
        if dest == S.BACKOFF:
            timing = self.timing
            if source in ACTIVE:
                stable = "stable" in row.conditions
                self.failures = 0 if stable else self.failures + 1
                self.lost_at = now
                self.wait = documented_bounds(timing, self.failures, recovering=False)
            elif trigger == Trigger.REGISTRATION_ANSWERED and "recovering" in row.conditions:
                # transient while recovering: flat
                self.wait = reference.rejoin_bounds(
                    rejoin_delay=timing.rejoin_delay, jitter_floor=timing.jitter_floor
                )
            else:
                self.failures += 1
                recovering = "recovering" in row.conditions  # the row's conditions
                self.wait = documented_bounds(timing, self.failures, recovering=recovering)
            retry_after = event.retry_after if isinstance(event, ConnectionFailed) else None
            self.backoff_entered = (now, retry_after or 0.0)
        if dest == S.IDLE and source == S.TELEMETRY:
            # activation: exactly opened → REGISTER sent → accepted → telemetry since connecting
            assert self.since_connecting is not None
            triggers = [t for t, _ in self.since_connecting]
            assert triggers[:3] == ACTIVATION
            assert self.since_connecting[2][1].accepted is True
            assert triggers[3:] == [trigger]
            assert trigger in (Trigger.TELEMETRY_RECEIVED, Trigger.TIMED_OUT)
            assert self.lc.profile.last_heartbeat == self.clock.last
            self.attempts = 0
            self.lost_at = None
            self.activated_at = now
        if dest == S.IDLE:
            assert source in (S.TELEMETRY, S.BUSY)

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def status_is_a_device_status(self) -> None:
        assert isinstance(self.lc.state, DeviceStatus)
        assert self.lc.status in {s.value for s in DeviceStatus}
        assert self.lc.profile.status is self.lc.state

    @invariant()
    def attempts_follow_the_model(self) -> None:
        assert self.lc.profile.connection_attempts == self.attempts

    @invariant()
    def recovery_follows_the_model(self) -> None:
        assert self.lc.recovering_since == self.lost_at
        assert self.lc.consecutive_failures == self.failures

    @invariant()
    def attempts_exceed_max_retries_only_in_a_recovery(self) -> None:
        limit = self.lc.profile.max_retries
        if limit is None or (self.lost_at is not None and self.timing.recovery_window > 0):
            return
        assert self.lc.profile.connection_attempts <= limit

    @invariant()
    def timeout_exactly_in_waiting_states(self) -> None:
        lc, timing = self.lc, self.timing
        if lc.state == S.FAILED:  # its way back, when configured (null: the owner's retry)
            assert lc.timeout == timing.retry_failed_after
            assert lc.next_attempt_in == timing.retry_failed_after
            return
        if lc.state not in TIMED_STATES:
            assert lc.timeout is None
            assert lc.next_attempt_in is None
            return
        if self.since_connecting is None and lc.state != S.BACKOFF:
            return  # still in the state the walk started in
        if lc.state == S.BACKOFF and self.wait is None:
            return
        assert lc.timeout is not None
        # a wait before the next attempt only in backoff; a limit elsewhere
        assert lc.next_attempt_in == (lc.timeout if lc.state == S.BACKOFF else None)
        if lc.state == S.CONNECTING:
            assert lc.timeout == timing.connect_timeout
        elif lc.state == S.REGISTERING:
            assert lc.timeout == timing.registration_timeout
        elif lc.state == S.TELEMETRY:
            assert lc.timeout == timing.telemetry_timeout
        else:
            assert self.wait is not None and self.backoff_entered is not None
            low, high = self.wait
            entered, floor = self.backoff_entered
            low, high = max(low, floor), max(high, floor)
            if self.lost_at is not None and timing.recovery_window > 0:
                left = max(self.lost_at + timing.recovery_window - entered, 0.0)
                low, high = min(low, left), min(high, left)
            # random.uniform may round onto (or an ulp past) an end point
            assert low <= lc.timeout <= high or math.isclose(lc.timeout, high, rel_tol=1e-9)

    @invariant()
    def failed_says_why(self) -> None:
        if self.lc.state == S.FAILED:
            assert self.lc.failure_reason

    @invariant()
    def task_only_while_busy(self) -> None:
        if self.lc.state == S.BUSY:
            assert self.lc.profile.current_task_id is not None
        else:
            assert self.lc.profile.current_task_id is None

    def teardown(self) -> None:
        if hasattr(self, "lc"):
            self.engine.release(self.lc)


LifecycleWalk.TestCase.settings = settings(max_examples=examples(100), stateful_step_count=50)
TestLifecycleWalk = LifecycleWalk.TestCase
