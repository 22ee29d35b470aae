"""Helpers shared by the FSM tests: a fake clock, a recording observer, replaying paths."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from seed_example import SEED_DEVICE

from stellate.fsm import (
    SYSTEM_INFO_KEYS,
    AgentProfile,
    DeviceStatus,
    Timing,
    TransitionRecord,
    Trigger,
)
from stellate.fsm.effects import (
    CloseConnection,
    Effect,
    OpenConnection,
    RequestTelemetry,
    SendRegister,
    StartHeartbeat,
)
from stellate.fsm.event_data import (
    DATA_OF,
    AuthRejected,
    ConnectionFailed,
    EventData,
    InternalError,
    ProtocolViolated,
    RegistrationAnswer,
    TaskAssigned,
    TelemetryAnswer,
)
from stellate.fsm.lifecycle import DeviceLifecycle, LifecycleEngine
from stellate.fsm.paths import Path, Step
from stellate.protocol import RejectionKind

S = DeviceStatus
#: What ``paths()`` enumerates by default: no recovery window (reconnects spend max_retries),
#: and FAILED waits for the owner (no ``retry_failed_after``): a path ends there.
REFERENCE_TIMING = Timing(recovery_window=0.0, retry_failed_after=None)
T0 = datetime(2025, 11, 6, 10, 30, tzinfo=UTC)

#: The example's windowsagent, as Phase 1 creates it.
WINDOWSAGENT = AgentProfile(
    server_url="ws://localhost:5005/ws",
    **{key: value for key, value in SEED_DEVICE.items() if key != "auto_connect"},
)


class FakeClock:
    """Returns T0, T0+1s, T0+2s, ... and remembers the last value it gave."""

    def __init__(self) -> None:
        self.calls = 0
        self.last: datetime | None = None

    def __call__(self) -> datetime:
        self.last = T0 + timedelta(seconds=self.calls)
        self.calls += 1
        return self.last


class Recorder:
    """An observer keeping every fired row as (trigger, source, dest)."""

    def __init__(self) -> None:
        self.records: list[TransitionRecord] = []

    def __call__(self, record: TransitionRecord, lifecycle: DeviceLifecycle) -> None:
        assert lifecycle.state == record.dest
        self.records.append(record)

    @property
    def steps(self) -> list[tuple[str, str, str]]:
        return [r.step for r in self.records]


#: A refusal the table may take for transient (the server does not know the target yet).
ABSENT_TARGET = RegistrationAnswer(
    accepted=False,
    reason="Target device 'windowsagent' is not connected",
    kind=RejectionKind.TARGET_NOT_YET_KNOWN,
)
#: A refusal that is always final.
FINAL_REFUSAL = RegistrationAnswer(accepted=False, reason="nope", kind=RejectionKind.FINAL)


def well_formed(trigger: Trigger) -> Trigger | EventData:
    """``trigger`` as ``fire`` takes it: with well-formed data if it carries some."""
    if trigger == Trigger.REGISTRATION_ANSWERED:
        return RegistrationAnswer(accepted=True)
    if trigger == Trigger.TASK_ASSIGNED:
        return TaskAssigned("task-1")
    wanted = DATA_OF.get(trigger)
    return trigger if wanted is None else wanted()  # type: ignore[call-arg]


def step_event(step: Step, system_info: Mapping[str, Any] | None = None) -> Trigger | EventData:
    """The event a path's step implies."""
    if step.trigger == Trigger.REGISTRATION_ANSWERED:
        if step.dest == S.TELEMETRY:
            return RegistrationAnswer(accepted=True)
        return ABSENT_TARGET if step.dest == S.BACKOFF else FINAL_REFUSAL
    if step.trigger == Trigger.TELEMETRY_RECEIVED:
        return TelemetryAnswer(system_info)
    if step.trigger == Trigger.CONNECTION_FAILED:
        return ConnectionFailed("refused")
    if step.trigger == Trigger.AUTH_REJECTED:
        return AuthRejected("HTTP 403")
    if step.trigger == Trigger.PROTOCOL_VIOLATION:
        return ProtocolViolated("protocol violation: binary frame")
    if step.trigger == Trigger.INTERNAL_ERROR:
        return InternalError("RuntimeError: boom")
    return well_formed(step.trigger)


class Monotonic:
    """A monotonic clock that moves only when told (the recovery and stability windows')."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reference_merge(profile: AgentProfile, info: Mapping[str, Any]) -> AgentProfile:
    """Galaxy's update_device_system_info with order-stable capabilities, written afresh."""
    capabilities = list(profile.capabilities)
    for feature in info.get("supported_features", []):
        if feature not in capabilities:
            capabilities.append(feature)
    metadata = dict(profile.metadata)
    metadata["system_info"] = {key: info.get(key) for key in SYSTEM_INFO_KEYS}
    for key in ("custom_metadata", "tags"):
        if key in info:
            metadata[key] = info[key]
    return attrs.evolve(
        profile, os=info.get("platform", profile.os), capabilities=capabilities, metadata=metadata
    )


def _close_code(step: Step) -> int:
    """The close code the rules give: the peer broke the protocol (1002), our bug (1011), or
    a normal closure."""
    if step.trigger == Trigger.PROTOCOL_VIOLATION:
        return 1002
    return 1011 if step.trigger == Trigger.INTERNAL_ERROR else 1000


def expected_effects(step: Step, lifecycle: DeviceLifecycle) -> list[Effect]:
    """What entering ``step.dest`` must ask the I/O edge to do (read after the step)."""
    dest = step.dest
    if dest == step.source:
        return []  # an internal row: no state left or entered
    if dest == S.CONNECTING:
        return [OpenConnection(lifecycle.profile.server_url)]
    if dest == S.CONNECTED:
        return [SendRegister()]
    if dest == S.TELEMETRY:
        return [RequestTelemetry()]
    if dest == S.IDLE and step.source == S.TELEMETRY:
        return [StartHeartbeat()]
    if dest == S.BACKOFF:
        return [CloseConnection(lifecycle.last_error or "", _close_code(step))]
    if dest == S.FAILED:
        return [CloseConnection(lifecycle.failure_reason or "", _close_code(step))]
    if dest == S.DISCONNECTED:
        return [CloseConnection("disconnect")]
    return []  # registering, busy, idle after a task


@attrs.frozen
class Replay:
    lifecycle: DeviceLifecycle
    recorder: Recorder
    clock: FakeClock
    expected: AgentProfile  # the profile the path implies, before the final status checks
    attempts_at_end: int
    activations: int


def replay(
    engine: LifecycleEngine,
    start: AgentProfile,
    path: Path,
    infos: list[Mapping[str, Any] | None],
    timing: Timing = REFERENCE_TIMING,
) -> Replay:
    """Fire ``path`` on a fresh lifecycle; ``infos[i]`` answers the i-th telemetry request.

    Checks each step's effects on the way and models the profile the path should produce.
    """
    clock = FakeClock()
    recorder = Recorder()
    lifecycle = engine.create(start, clock=clock, observer=recorder, timing=timing)
    expected = start
    attempts = start.connection_attempts
    activations = 0
    infos_left = list(infos)
    try:
        for step in path:
            info = infos_left.pop(0) if step.trigger == Trigger.TELEMETRY_RECEIVED else None
            effects = lifecycle.fire(step_event(step, info))
            assert effects == expected_effects(step, lifecycle), step
            if step.dest == S.CONNECTING:
                attempts += 1
            if info is not None:
                expected = reference_merge(expected, info)
            if step.dest == S.IDLE and step.source == S.TELEMETRY:
                attempts = 0
                activations += 1
    finally:
        engine.release(lifecycle)
    return Replay(lifecycle, recorder, clock, expected, attempts, activations)
