"""A random walk over one lifecycle: any event, legal or not, with random event data.

The table itself is the oracle for where each event should lead; invariants are checked after
every step.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest
from fsm_support import WINDOWSAGENT, FakeClock, Recorder, S
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from profiles import examples

from stellate.fsm import (
    TRIGGERS,
    DeviceLifecycle,
    DeviceStatus,
    IllegalTransition,
    LifecycleEngine,
    RetryPolicy,
    Trigger,
    rows,
)
from stellate.testing import retry_policies, system_infos

TIMED_STATES = {S.CONNECTING, S.REGISTERING, S.TELEMETRY, S.BACKOFF}
ACTIVATION = [Trigger.CONNECTION_OPENED, Trigger.REGISTER_SENT, Trigger.REGISTRATION_ANSWERED]
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


def event_data(trigger: str) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed event data for ``trigger`` (random where the data matters)."""
    reason = st.sampled_from(["refused", "reset", ""])
    if trigger == Trigger.REGISTRATION_ANSWERED:
        return st.fixed_dictionaries({"accepted": st.booleans()}, optional={"reason": reason})
    if trigger == Trigger.TELEMETRY_RECEIVED:
        return st.fixed_dictionaries({"system_info": st.none() | system_infos()})
    if trigger == Trigger.TASK_ASSIGNED:
        return st.fixed_dictionaries({"task_id": st.text(min_size=1, max_size=8)})
    if trigger == Trigger.CONNECTION_FAILED:
        return st.fixed_dictionaries({}, optional={"reason": reason})
    return st.just({})


events = st.sampled_from([*TRIGGERS, "no_such_event"]).flatmap(
    lambda trigger: st.tuples(st.just(trigger), event_data(trigger))
)


def table_dest(lifecycle: DeviceLifecycle, trigger: str, data: dict[str, Any]) -> str | None:
    """Where the table says ``trigger`` leads from the lifecycle's state (None: illegal)."""
    profile = lifecycle.profile
    guards = {
        "retries_left": profile.max_retries is None
        or profile.connection_attempts < profile.max_retries,
        "accepted": data.get("accepted") is True,
    }
    for row_trigger, source, dest, conditions, unless in rows():
        if row_trigger != trigger or source != lifecycle.status:
            continue
        if all(guards[g] for g in conditions) and not any(guards[g] for g in unless):
            return dest
    return None


class LifecycleWalk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = LifecycleEngine()

    @initialize(
        max_retries=st.none() | st.integers(min_value=1, max_value=4),
        policy=retry_policies(),
        seed=st.integers(min_value=0, max_value=2**32 - 1),
    )
    def start(self, max_retries: int | None, policy: RetryPolicy, seed: int) -> None:
        self.clock = FakeClock()
        self.recorder = Recorder()
        self.lc = self.engine.create(
            attrs.evolve(WINDOWSAGENT, max_retries=max_retries),
            timing=policy,
            rng=random.Random(seed),
            clock=self.clock,
            observer=self.recorder,
        )
        self.attempts = 0  # the model's count
        self.since_connecting: list[tuple[str, dict[str, Any]]] | None = None

    # -- rules ----------------------------------------------------------------------------
    @rule(event=events)
    def fire_any(self, event: tuple[str, dict[str, Any]]) -> None:
        self._fire(*event)

    @rule(data=st.data())
    def fire_legal(self, data: st.DataObject) -> None:
        """An event the state has a row for (its guards may still refuse it)."""
        trigger = data.draw(st.sampled_from(self._triggers_here()), label="trigger")
        self._fire(trigger, data.draw(event_data(trigger), label="data"))

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        """Like fire_legal without the owner's disconnect, so walks get deep into the flow."""
        triggers = [t for t in self._triggers_here() if t != Trigger.DISCONNECT]
        trigger = data.draw(st.sampled_from(triggers), label="trigger")
        self._fire(trigger, data.draw(event_data(trigger), label="data"))

    @rule(data=st.data())
    def progress(self, data: st.DataObject) -> None:
        """The happy path's next event, so walks reach activation and tasks often."""
        trigger = HAPPY[self.lc.state]
        event = data.draw(event_data(trigger), label="data")
        if trigger == Trigger.REGISTRATION_ANSWERED:
            event["accepted"] = True
        self._fire(trigger, event)

    def _triggers_here(self) -> list[str]:
        return [t for t in TRIGGERS if any(r[0] == t and r[1] == self.lc.status for r in rows())]

    @precondition(lambda self: self.lc.state in (S.REGISTERING, S.IDLE))
    @rule(bad=st.sampled_from(["no_accepted", "accepted_str", "no_task_id"]))
    def fire_malformed(self, bad: str) -> None:
        trigger, data = {
            "no_accepted": (Trigger.REGISTRATION_ANSWERED, {}),
            "accepted_str": (Trigger.REGISTRATION_ANSWERED, {"accepted": "yes"}),
            "no_task_id": (Trigger.TASK_ASSIGNED, {}),
        }[bad]
        before = self._snapshot()
        with pytest.raises((TypeError, IllegalTransition)):
            self.lc.fire(trigger, **data)
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

    def _fire(self, trigger: str, data: dict[str, Any]) -> None:
        lc = self.lc
        source = lc.state
        expected = table_dest(lc, trigger, data) if trigger in TRIGGERS else None
        if expected is None:
            before = self._snapshot()
            with pytest.raises(IllegalTransition) as info:
                lc.fire(trigger, **data)
            assert info.value.status == source and info.value.trigger == trigger
            assert self._snapshot() == before
            return

        lc.fire(trigger, **data)
        dest = lc.state
        assert dest == expected
        assert self.recorder.records[-1].step == (trigger, source.value, dest.value)
        if source == S.FAILED:
            assert trigger in (Trigger.RETRY, Trigger.DISCONNECT)

        # the model: attempts, and what happened since the last connecting
        if dest == S.CONNECTING:
            if trigger in (Trigger.RETRY, Trigger.CONNECT):  # the owner starts a fresh run
                self.attempts = 1
            else:
                self.attempts += 1
            self.since_connecting = []
        elif self.since_connecting is not None:
            self.since_connecting.append((trigger, data))
        if dest == S.IDLE and source == S.TELEMETRY:
            # activation: exactly opened → REGISTER sent → accepted → telemetry since connecting
            assert self.since_connecting is not None
            triggers = [t for t, _ in self.since_connecting]
            assert triggers[:3] == ACTIVATION
            assert self.since_connecting[2][1]["accepted"] is True
            assert triggers[3:] == [trigger] and trigger in (
                Trigger.TELEMETRY_RECEIVED,
                Trigger.TIMED_OUT,
            )
            assert lc.profile.last_heartbeat == self.clock.last
            self.attempts = 0
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
    def attempts_never_exceed_max_retries(self) -> None:
        limit = self.lc.profile.max_retries
        if limit is None:
            return
        assert self.lc.profile.connection_attempts <= limit

    @invariant()
    def timeout_exactly_in_waiting_states(self) -> None:
        lc, policy = self.lc, self.lc.timing
        if lc.state not in TIMED_STATES:
            assert lc.timeout is None
            return
        if self.since_connecting is None:  # still in the state the walk started in
            return
        assert lc.timeout is not None
        if lc.state == S.CONNECTING:
            assert lc.timeout == policy.connect_timeout
        elif lc.state == S.REGISTERING:
            assert lc.timeout == policy.registration_timeout
        elif lc.state == S.TELEMETRY:
            assert lc.timeout == policy.telemetry_timeout
        else:
            low, high = policy.backoff_bounds(lc.profile.connection_attempts)
            # random.uniform may round onto (or an ulp past) an end point
            assert low <= lc.timeout <= high or math.isclose(lc.timeout, high, rel_tol=1e-12)

    @invariant()
    def failed_says_why(self) -> None:
        if self.lc.state == S.FAILED:
            assert self.lc.failure_reason

    @invariant()
    def task_only_while_busy(self) -> None:
        if self.lc.state == S.BUSY:
            assert self.lc.profile.current_task_id is not None
        if self.lc.state == S.IDLE:
            assert self.lc.profile.current_task_id is None

    def teardown(self) -> None:
        if hasattr(self, "lc"):
            self.engine.release(self.lc)


LifecycleWalk.TestCase.settings = settings(max_examples=examples(100), stateful_step_count=50)
TestLifecycleWalk = LifecycleWalk.TestCase
