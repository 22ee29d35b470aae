"""Guards, effects, timeouts, merging and backoff, one behaviour at a time."""

from __future__ import annotations

import random
import re
from typing import Any

import attrs
import pytest
from fsm_support import (
    ABSENT_TARGET,
    FINAL_REFUSAL,
    WINDOWSAGENT,
    FakeClock,
    Monotonic,
    Recorder,
    S,
    expected_effects,
    step_event,
    well_formed,
)
from hypothesis import given
from hypothesis import strategies as st
from seed_example import SEED_CAPABILITIES, SEED_FINAL_SYSTEM_INFO, SEED_SYSTEM_INFO

from stellate.fsm import (
    SYSTEM_INFO_KEYS,
    TRIGGERS,
    AgentProfile,
    IllegalTransition,
    Meaning,
    RetryPolicy,
    Row,
    Timing,
    Trigger,
    coverage,
    merge_system_info,
    rows,
)
from stellate.fsm.effects import (
    CloseConnection,
    OpenConnection,
    RequestTelemetry,
    SendRegister,
    StartHeartbeat,
)
from stellate.fsm.event_data import (
    DATA_OF,
    ConnectionFailed,
    EventData,
    RegistrationAnswer,
    TaskAssigned,
    TelemetryAnswer,
)
from stellate.fsm.lifecycle import DeviceLifecycle, InvalidEventData, LifecycleEngine
from stellate.fsm.paths import Step
from stellate.testing import agent_profiles, reference, retry_policies, system_infos

ENGINE = LifecycleEngine()


@pytest.fixture
def make() -> Any:
    made: list[DeviceLifecycle] = []

    def make(
        status: S = S.DISCONNECTED, attempts: int = 0, max_retries: int | None = 5, **kw: Any
    ) -> DeviceLifecycle:
        profile = attrs.evolve(
            WINDOWSAGENT, status=status, connection_attempts=attempts, max_retries=max_retries
        )
        kw.setdefault("rng", random.Random(7))
        kw.setdefault("clock", FakeClock())
        lifecycle = ENGINE.create(profile, **kw)
        made.append(lifecycle)
        return lifecycle

    yield make
    for lifecycle in made:
        ENGINE.release(lifecycle)


def snapshot(lc: DeviceLifecycle) -> tuple[Any, ...]:
    return (lc.profile, lc.timeout, lc.failure_reason, lc.last_error)


# -- guards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "max_retries", "expected"),
    [
        (0, 1, True),
        (2, 3, True),
        (3, 3, False),
        (4, 3, False),
        (0, None, True),
        (10**6, None, True),
    ],
)
def test_retries_left(make: Any, attempts: int, max_retries: int | None, expected: bool) -> None:
    lc = make(S.CONNECTING, attempts, max_retries)
    assert lc.retries_left(None) is expected
    lc.fire(ConnectionFailed())
    assert lc.state == (S.BACKOFF if expected else S.FAILED)


@pytest.mark.parametrize(("accepted", "dest"), [(True, S.TELEMETRY), (False, S.FAILED)])
def test_accepted_guard(make: Any, accepted: bool, dest: S) -> None:
    lc = make(S.REGISTERING, attempts=1)
    assert lc.accepts(RegistrationAnswer(accepted=accepted))
    assert lc.state == S.REGISTERING  # asking changes nothing
    lc.fire(RegistrationAnswer(accepted=accepted, reason="bad token"))
    assert lc.state == dest


@pytest.mark.parametrize(
    "event",
    [
        Trigger.REGISTRATION_ANSWERED,  # no answer at all
        RegistrationAnswer(accepted="yes"),  # type: ignore[arg-type]
        RegistrationAnswer(accepted=1),  # type: ignore[arg-type]
    ],
)
def test_accepted_guard_needs_a_bool(make: Any, event: Any) -> None:
    lc = make(S.REGISTERING, attempts=1)
    before = snapshot(lc)
    assert not lc.accepts(event)
    with pytest.raises(InvalidEventData) as info:
        lc.fire(event)
    assert info.value.trigger == Trigger.REGISTRATION_ANSWERED
    assert snapshot(lc) == before and lc.state == S.REGISTERING


def test_task_assigned_needs_a_task_id(make: Any) -> None:
    lc = make(S.IDLE)
    for event in (Trigger.TASK_ASSIGNED, TaskAssigned(task_id=7)):  # type: ignore[arg-type]
        with pytest.raises(InvalidEventData, match="task_assigned"):
            lc.fire(event)
        assert lc.state == S.IDLE and lc.profile.current_task_id is None
    lc.fire(TaskAssigned(task_id="t-1"))
    assert lc.state == S.BUSY and lc.profile.current_task_id == "t-1"
    lc.fire(Trigger.TASK_FINISHED)
    assert lc.state == S.IDLE and lc.profile.current_task_id is None


# -- every row: fires, is observed, and asks for its effects -----------------------------------


def _row_id(row: Row) -> str:
    guard = "".join(f"+{c}" for c in row.conditions) + "".join(f"-{u}" for u in row.unless)
    return f"{row.source}-{row.trigger}{guard}-{row.dest}"


#: Windows for the guarded rows: long enough to be open, passed when we say so.
WINDOWS = Timing(recovery_window=60.0, stability_window=30.0)


def situated(make: Any, row: Row, **kw: Any) -> DeviceLifecycle:
    """A lifecycle in the row's source state, in the situation its guards ask for.

    The recovery and stability windows are set on the lifecycle's own memory of when the device
    lost / last activated its connection (what firing a loss / an activation would leave).
    """
    guards = {**dict.fromkeys(row.conditions, True), **dict.fromkeys(row.unless, False)}
    mono = Monotonic()
    exhausted = guards.get("retries_left") is False
    lc = make(row.source, attempts=3 if exhausted else 2, max_retries=3, timing=WINDOWS,
              monotonic=mono, **kw)  # fmt: skip
    if guards.get("recovering"):
        lc._lost_at = mono.now - (0.0 if guards.get("window_open") else WINDOWS.recovery_window)
    if "stable" in guards:
        lc._activated_at = mono.now - (WINDOWS.stability_window if guards["stable"] else 1.0)
    return lc


def row_event(row: Row) -> Trigger | EventData:
    if row.trigger == Trigger.REGISTRATION_ANSWERED and row.dest != S.TELEMETRY:
        return ABSENT_TARGET if "transient_rejection" in row.conditions else FINAL_REFUSAL
    return step_event(Step(*row.step), SEED_SYSTEM_INFO)


@pytest.mark.parametrize("row", rows(), ids=_row_id)
def test_every_row_fires_with_its_effects(
    make: Any, row: Row, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each row, set up in the situation its guards describe, is the one that fires."""
    trigger, source, dest = row.step
    session, scratch = coverage._fired, set[Row]()
    monkeypatch.setattr(coverage, "_fired", scratch)  # a private record: exactly this row
    monkeypatch.setattr(coverage, "enabled", True)
    recorder = Recorder()
    lc = situated(make, row, observer=recorder)
    step = Step(trigger, source, dest)
    effects = lc.fire(row_event(row))
    assert lc.status == dest
    assert recorder.steps == ([] if row.internal else [(trigger, source, dest)])
    assert scratch == {row}
    assert effects == expected_effects(step, lc)
    session.add(row)  # it fired, as the session's record should say


def test_effects_on_the_happy_path(make: Any) -> None:
    lc = make()
    assert lc.fire(Trigger.CONNECT) == [OpenConnection("ws://localhost:5005/ws")]
    assert lc.fire(Trigger.CONNECTION_OPENED) == [SendRegister()]
    assert lc.fire(Trigger.REGISTER_SENT) == []
    assert lc.fire(RegistrationAnswer(accepted=True)) == [RequestTelemetry()]
    assert lc.fire(TelemetryAnswer(system_info=SEED_SYSTEM_INFO)) == [StartHeartbeat()]
    assert lc.fire(ConnectionFailed(reason="reset")) == [CloseConnection("reset")]
    assert lc.fire(Trigger.DISCONNECT) == [CloseConnection("disconnect")]


def test_failure_reasons(make: Any) -> None:
    lc = make(S.REGISTERING, attempts=1)
    assert lc.fire(RegistrationAnswer(accepted=False, reason="duplicate id")) == [
        CloseConnection("registration rejected: duplicate id")
    ]
    assert lc.failure_reason == "registration rejected: duplicate id"
    lc = make(S.CONNECTING, attempts=5)
    lc.fire(ConnectionFailed(reason="refused"))
    assert lc.failure_reason == "gave up after 5 attempts: refused"
    lc = make(S.REGISTERING, attempts=5)
    lc.fire(Trigger.TIMED_OUT)
    assert lc.failure_reason == "gave up after 5 attempts: timed out while registering"


# -- illegal events ----------------------------------------------------------------------------


def _illegal_pairs() -> list[tuple[S, str]]:
    legal = {(row.source, row.trigger) for row in rows()}
    return [(s, t) for s in S for t in TRIGGERS if (s.value, t) not in legal]


@pytest.mark.parametrize(("state", "trigger"), _illegal_pairs())
def test_illegal_event_raises_and_changes_nothing(make: Any, state: S, trigger: str) -> None:
    recorder = Recorder()
    lc = make(state, attempts=1, observer=recorder)
    before = snapshot(lc)
    event = well_formed(trigger)
    assert not lc.accepts(event)
    with pytest.raises(IllegalTransition) as info:
        lc.fire(event)
    assert (info.value.status, info.value.trigger, info.value.device_id) == (
        state,
        trigger,
        "windowsagent",
    )
    assert snapshot(lc) == before and recorder.records == []


def test_unknown_event_is_illegal(make: Any) -> None:
    lc = make()
    assert not lc.accepts("to_idle")
    with pytest.raises(IllegalTransition, match="unknown event"):
        lc.fire("to_idle")  # transitions' auto shortcut must not exist
    assert not hasattr(lc, "to_idle")
    assert lc.state == S.DISCONNECTED


# -- timeouts, rejection, retry ----------------------------------------------------------------


def test_timeouts_are_armed_per_state(make: Any) -> None:
    policy = RetryPolicy(connect_timeout=3, registration_timeout=4, telemetry_timeout=5)
    lc = make(timing=policy)
    assert lc.timeout is None
    lc.fire(Trigger.CONNECT)
    assert lc.timeout == 3
    lc.fire(Trigger.CONNECTION_OPENED)
    assert lc.timeout is None
    lc.fire(Trigger.REGISTER_SENT)
    assert lc.timeout == 4
    lc.fire(RegistrationAnswer(accepted=True))
    assert lc.timeout == 5
    lc.fire(Trigger.TIMED_OUT)
    assert lc.state == S.IDLE and lc.timeout is None


def test_rejection_is_final_until_retry(make: Any) -> None:
    lc = make(S.REGISTERING, attempts=1, timing=Timing(retry_failed_after=None))
    lc.fire(RegistrationAnswer(accepted=False))
    assert lc.state == S.FAILED and lc.profile.connection_attempts == 1  # retries were left
    assert lc.timeout is None and lc.next_attempt_in is None  # manual intervention
    for event in (
        Trigger.CONNECT,
        Trigger.TIMED_OUT,  # no deadline: only the owner's retry leaves it
        ConnectionFailed("refused"),
        Trigger.CONNECTION_OPENED,
    ):
        assert not lc.accepts(event)
    lc.fire(Trigger.RETRY)
    assert lc.state == S.CONNECTING
    assert lc.profile.connection_attempts == 1 and lc.failure_reason is None


def test_a_failed_device_starts_a_fresh_run_once_retry_failed_after_passes(make: Any) -> None:
    mono = Monotonic()
    timing = Timing(retry_failed_after=42.0, recovery_window=30.0)
    recorder = Recorder()
    lc = make(S.IDLE, timing=timing, monotonic=mono, observer=recorder)
    lc.fire(ConnectionFailed("reset"))  # lost: a recovery begins
    mono.now += 31.0
    lc.fire(Trigger.TIMED_OUT)  # the wait ends past the window: given up
    assert lc.state == S.FAILED and lc.failure_reason is not None
    assert "recovery window of 30s passed" in lc.failure_reason
    # Its deadline is the way back, and a watcher is told when the next attempt comes.
    assert lc.timeout == 42.0 and lc.next_attempt_in == 42.0
    effects = lc.fire(Trigger.TIMED_OUT)
    assert lc.state == S.CONNECTING and effects == [OpenConnection(lc.profile.server_url)]
    # A fresh run, as the owner's retry: one attempt, no recovery, no climbing backoff.
    assert lc.profile.connection_attempts == 1 and lc.failure_reason is None
    assert lc.recovering_since is None and lc.consecutive_failures == 0
    assert lc.timeout == timing.connect_timeout and lc.next_attempt_in is None
    record = recorder.records[-1]
    assert record.step == (Trigger.TIMED_OUT, "failed", "connecting")
    assert {Meaning.RUN_STARTED, Meaning.WAIT_OVER, Meaning.ATTEMPT} == set(record.meanings)


def test_activation_resets_attempts_and_stamps_heartbeat(make: Any) -> None:
    clock = FakeClock()
    lc = make(S.TELEMETRY, attempts=4, clock=clock)
    lc.fire(TelemetryAnswer(system_info=None))
    profile = lc.profile
    assert profile.connection_attempts == 0 and profile.current_task_id is None
    assert profile.last_heartbeat == clock.last is not None
    assert profile.capabilities == WINDOWSAGENT.capabilities  # no telemetry: unchanged
    assert profile.metadata == WINDOWSAGENT.metadata


# -- merge_system_info -------------------------------------------------------------------------


def test_merge_seed_windowsagent_example() -> None:
    merged = merge_system_info(WINDOWSAGENT, SEED_SYSTEM_INFO)
    assert list(merged.capabilities) == SEED_CAPABILITIES
    assert merged.os == "windows"
    assert merged.metadata == {
        **WINDOWSAGENT.metadata,
        "system_info": SEED_FINAL_SYSTEM_INFO,
    }
    assert "custom_metadata" not in merged.metadata and "tags" not in merged.metadata
    assert WINDOWSAGENT.metadata.keys() == {
        "location",
        "performance",
        "description",
        "operation_engineer_email",
    }  # the input profile is untouched


def test_merge_deduplicates_and_keeps_order() -> None:
    profile = AgentProfile("d", "ws://x/ws", capabilities=["cli", "gpu"])
    merged = merge_system_info(profile, {"supported_features": ["gui", "cli", "gui", "ocr"]})
    assert merged.capabilities == ("cli", "gpu", "gui", "ocr")


def test_merge_partial_info() -> None:
    profile = AgentProfile("d", "ws://x/ws", os="linux", capabilities=["cli"], metadata={"a": 1})
    merged = merge_system_info(profile, {"hostname": "h", "tags": ["x"], "custom_metadata": {}})
    assert merged.os == "linux"  # no platform given: configured OS kept
    assert merged.capabilities == ("cli",)
    assert merged.metadata["system_info"] == dict.fromkeys(SYSTEM_INFO_KEYS) | {"hostname": "h"}
    assert merged.metadata["tags"] == ["x"] and merged.metadata["custom_metadata"] == {}
    assert merged.metadata["a"] == 1


def test_merge_ignores_ill_typed_fields() -> None:
    profile = AgentProfile("d", "ws://x/ws", os="linux", capabilities=["cli"])
    merged = merge_system_info(profile, {"platform": 7, "supported_features": "gui"})
    assert merged.os == "linux" and merged.capabilities == ("cli",)


def test_merge_replaces_previous_telemetry() -> None:
    once = merge_system_info(WINDOWSAGENT, {**SEED_SYSTEM_INFO, "tags": ["a"]})
    twice = merge_system_info(once, {"platform": "linux", "supported_features": ["linux_apps"]})
    assert twice.os == "linux"
    assert twice.capabilities[-1] == "linux_apps" and "windows_apps" in twice.capabilities
    assert twice.metadata["system_info"]["platform"] == "linux"
    assert twice.metadata["system_info"]["hostname"] is None
    assert twice.metadata["tags"] == ["a"]  # tags only change when telemetry sends them


@given(agent_profiles(), system_infos(ill_typed=False))
def test_merge_property(profile: AgentProfile, info: dict[str, Any]) -> None:
    merged = merge_system_info(profile, info)
    new = [f for f in dict.fromkeys(info["supported_features"]) if f not in profile.capabilities]
    assert list(merged.capabilities) == [*profile.capabilities, *new]
    assert list(merged.metadata["system_info"]) == list(SYSTEM_INFO_KEYS)
    assert merged.metadata["system_info"] == {k: info[k] for k in SYSTEM_INFO_KEYS}
    for key in ("custom_metadata", "tags"):
        if key in info:
            assert merged.metadata[key] == info[key]
        else:
            assert merged.metadata.get(key) == profile.metadata.get(key)
    kept = set(profile.metadata) - {"system_info", "custom_metadata", "tags"}
    assert {k: merged.metadata[k] for k in kept} == {k: profile.metadata[k] for k in kept}
    assert merged.os == info["platform"]
    assert attrs.evolve(merged, os=profile.os, capabilities=profile.capabilities,
                        metadata=profile.metadata) == profile  # fmt: skip


@given(agent_profiles(), system_infos(ill_typed=True))
def test_ill_typed_telemetry_merges_as_the_rule_says(
    profile: AgentProfile, info: dict[str, Any]
) -> None:
    """A platform that is no string, features that are no list or hold non-names: the merge
    takes what the rule takes (stellate.testing.reference) and never fails."""
    merged = merge_system_info(profile, info)
    expected = reference.merged_fields(profile.os, profile.capabilities, profile.metadata, info)
    assert (merged.os, merged.capabilities, merged.metadata) == expected
    assert all(isinstance(c, str) for c in merged.capabilities)


# -- backoff -----------------------------------------------------------------------------------


@given(retry_policies(), st.integers(min_value=0, max_value=200), st.integers(0, 2**32 - 1))
def test_backoff_within_bounds(policy: RetryPolicy, failures: int, seed: int) -> None:
    low, high = policy.backoff_bounds(failures)
    assert 0 <= low <= high <= policy.backoff_cap
    delay = policy.backoff_delay(failures, random.Random(seed))
    assert low <= delay <= high or delay == pytest.approx(high, rel=1e-12)


def test_backoff_bounds_grow_then_cap() -> None:
    policy = RetryPolicy(reconnect_delay=5.0, backoff_cap=60.0, jitter_floor=0.1)
    highs = [policy.backoff_bounds(n)[1] for n in range(0, 10)]
    assert highs == [5.0, 5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    assert policy.backoff_bounds(3) == (2.0, 20.0)
    assert policy.backoff_bounds(10**6) == (6.0, 60.0)  # no overflow retrying forever


def test_backoff_is_jittered_across_seeds() -> None:
    policy = RetryPolicy()
    delays = {policy.backoff_delay(3, random.Random(seed)) for seed in range(20)}
    assert len(delays) > 10
    assert all(2.0 <= d <= 20.0 for d in delays)
    same = {policy.backoff_delay(3, random.Random(42)) for _ in range(3)}
    assert len(same) == 1  # a seed reproduces its delay


def test_backoff_timeout_is_armed_from_the_policy(make: Any) -> None:
    policy = RetryPolicy(reconnect_delay=2.0, backoff_cap=100.0, jitter_floor=0.5)
    lc = make(timing=policy)
    lc.fire(Trigger.CONNECT)
    for _ in range(2):
        lc.fire(ConnectionFailed(reason="refused"))
        lc.fire(Trigger.TIMED_OUT)
    lc.fire(ConnectionFailed(reason="refused"))  # the third failure in a row
    assert lc.state == S.BACKOFF and lc.last_error == "refused"
    assert lc.consecutive_failures == 3
    assert lc.timeout is not None and 4.0 <= lc.timeout <= 8.0


def test_max_retries_none_retries_forever(make: Any) -> None:
    policy = RetryPolicy()
    lc = make(max_retries=None, timing=policy)
    lc.fire(Trigger.CONNECT)
    for attempt in range(1, 101):
        assert lc.state == S.CONNECTING and lc.profile.connection_attempts == attempt
        assert lc.fire(ConnectionFailed(reason="refused")) == [CloseConnection("refused")]
        assert lc.state == S.BACKOFF
        low, high = policy.backoff_bounds(attempt)
        assert lc.timeout is not None and low <= lc.timeout <= high
        lc.fire(Trigger.TIMED_OUT)
    assert lc.profile.connection_attempts == 101


def test_policy_rejects_negative_delays() -> None:
    with pytest.raises(ValueError, match="reconnect_delay"):
        RetryPolicy(reconnect_delay=-1)


# -- regressions: bugs found by these tests, fixed in stellate/fsm -----------------------------


@pytest.mark.parametrize("where", [S.FAILED, S.BACKOFF, S.CONNECTING])
def test_connect_after_disconnect_starts_attempts_over(make: Any, where: S) -> None:
    lc = make(where, attempts=3, max_retries=3)
    lc.fire(Trigger.DISCONNECT)
    lc.fire(Trigger.CONNECT)
    assert lc.profile.connection_attempts == 1
    lc.fire(ConnectionFailed())
    assert lc.state == S.BACKOFF  # a fresh run has retries left


def test_failure_reason_cleared_on_disconnect(make: Any) -> None:
    lc = make(S.REGISTERING, attempts=1)
    lc.fire(RegistrationAnswer(accepted=False))
    lc.fire(Trigger.DISCONNECT)
    assert lc.state == S.DISCONNECTED
    assert lc.failure_reason is None


# -- typed event data ----------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", sorted(DATA_OF), ids=str)
def test_a_trigger_that_carries_data_is_refused_without_it(make: Any, trigger: Trigger) -> None:
    """Fired bare, a trigger that carries data is refused from every state, saying which class
    it needs, and nothing changes."""
    for state in S:
        recorder = Recorder()
        lc = make(state, attempts=1, observer=recorder)
        before = snapshot(lc)
        assert not lc.accepts(trigger)
        with pytest.raises(InvalidEventData) as info:
            lc.fire(trigger)
        wanted = DATA_OF[trigger].__name__
        assert f"it carries {wanted}: fire({wanted}(...))" in str(info.value)
        assert (info.value.status, info.value.trigger) == (state, trigger)
        assert snapshot(lc) == before and recorder.records == []


@pytest.mark.parametrize(
    ("event", "says"),
    [
        (ConnectionFailed(reason=None), "ConnectionFailed.reason must be str, got None"),  # type: ignore[arg-type]
        (ConnectionFailed(retry_after="5"), "retry_after must be int or float or None, got '5'"),  # type: ignore[arg-type]
        (RegistrationAnswer(True, kind="final"), "kind must be RejectionKind, got 'final'"),  # type: ignore[arg-type]
        (TelemetryAnswer(["cpu"]), "system_info must be Mapping or None, got ['cpu']"),  # type: ignore[arg-type]
        ({"reason": "refused"}, "not a Trigger nor event data"),
    ],
)
def test_event_data_of_the_wrong_type_is_refused(make: Any, event: Any, says: str) -> None:
    lc = make(S.REGISTERING, attempts=1)
    before = snapshot(lc)
    assert not lc.accepts(event)
    with pytest.raises(InvalidEventData, match=re.escape(says)):
        lc.fire(event)
    assert snapshot(lc) == before and lc.state == S.REGISTERING


# -- what the flow document and the configuration reference state ---------------------------


def test_each_status_belongs_to_its_documented_phase() -> None:
    """docs/registration-flow.md: disconnected is phase 1 (configured), connecting and
    connected phase 2, registering 3, telemetry 4, idle 5; busy, backoff and failed are in
    none of the five."""
    assert {s: s.phase for s in S} == {
        S.DISCONNECTED: 1,
        S.CONNECTING: 2,
        S.CONNECTED: 2,
        S.REGISTERING: 3,
        S.TELEMETRY: 4,
        S.IDLE: 5,
        S.BUSY: None,
        S.BACKOFF: None,
        S.FAILED: None,
    }


def test_a_configured_profile_has_the_documented_defaults() -> None:
    """docs/configuration.md: max_retries defaults to 5; a configured device has made no
    attempt, is disconnected and has no task."""
    profile = AgentProfile("d", "ws://h/ws")
    assert profile.max_retries == 5
    assert (profile.connection_attempts, profile.status) == (0, S.DISCONNECTED)
    assert (profile.current_task_id, profile.last_heartbeat, profile.os) == (None, None, None)
