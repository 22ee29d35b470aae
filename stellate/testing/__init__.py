"""Test support for stellate and for code built on it.

Hypothesis strategies live in ``stellate.testing.strategies`` and are re-exported here lazily,
so ``import stellate.testing`` works without hypothesis (the ``testing`` extra); touching a
strategy name imports hypothesis then.

The fault harness (``docs/testing.md``): ``FakeAgentServer`` speaks AIP on a ``MemoryNetwork``
and injects faults per connection attempt (``stellate.testing.faults``); ``run_fleet`` runs the
real manager against it under ``MockClock`` and checks the fleet's invariants;
``stellate.testing.fault_strategies`` draws frames, faults, schedules and fleets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import reference
from .fake_server import Attempt, FakeAgentServer, FaultConnector
from .faults import (
    FAULT_KINDS,
    AfterIdle,
    Answer,
    AttemptFault,
    Busy,
    DropAfterAccept,
    DropAfterIdle,
    DropAfterRegister,
    DropDuringTelemetry,
    Fault,
    Forbidden,
    GarbageAfterIdle,
    GarbageOnRegister,
    GarbageTelemetry,
    HangConnect,
    Healthy,
    KeyRefusedAfterAccept,
    KeyRefusedOnRegister,
    NoRegistrationAnswer,
    NoTelemetryAnswer,
    Outage,
    Refuse,
    Reject,
    SilentAfterIdle,
    Stay,
    Telemetry,
    TelemetryNotFound,
    expected_path,
    fault_kinds,
)
from .fleet import (
    HARNESS_TIMING,
    BackoffRecord,
    DeviceOutcome,
    FleetDevice,
    FleetResult,
    FleetTiming,
    RecordingRandom,
    check_fleet,
    run_fleet,
    run_under_mock_clock,
    seeded_scheduler,
)

if TYPE_CHECKING:
    from .fault_strategies import (
        EDGE_IDS,
        FLEET_FLOORS,
        attempt_faults,
        client_frames,
        device_ids,
        fleet_devices,
        fleet_timings,
        fleets,
        invalid_server_frames,
        rejections,
        schedule_for_path,
        schedules,
        server_frames,
    )
    from .strategies import (
        FEATURES,
        PLATFORMS,
        agent_profiles,
        legal_paths,
        retry_policies,
        system_infos,
    )

_STRATEGIES = frozenset(
    {"FEATURES", "PLATFORMS", "agent_profiles", "legal_paths", "retry_policies", "system_infos"}
)

_FAULT_STRATEGIES = frozenset(
    {
        "EDGE_IDS",
        "FLEET_FLOORS",
        "attempt_faults",
        "client_frames",
        "device_ids",
        "fleet_devices",
        "fleet_timings",
        "fleets",
        "invalid_server_frames",
        "rejections",
        "schedule_for_path",
        "schedules",
        "server_frames",
    }
)

__all__ = [
    "EDGE_IDS",
    "FAULT_KINDS",
    "FEATURES",
    "FLEET_FLOORS",
    "HARNESS_TIMING",
    "PLATFORMS",
    "AfterIdle",
    "Answer",
    "Attempt",
    "AttemptFault",
    "BackoffRecord",
    "Busy",
    "DeviceOutcome",
    "DropAfterAccept",
    "DropAfterIdle",
    "DropAfterRegister",
    "DropDuringTelemetry",
    "FakeAgentServer",
    "Fault",
    "FaultConnector",
    "FleetDevice",
    "FleetResult",
    "FleetTiming",
    "Forbidden",
    "GarbageAfterIdle",
    "GarbageOnRegister",
    "GarbageTelemetry",
    "HangConnect",
    "Healthy",
    "KeyRefusedAfterAccept",
    "KeyRefusedOnRegister",
    "NoRegistrationAnswer",
    "NoTelemetryAnswer",
    "Outage",
    "RecordingRandom",
    "Refuse",
    "Reject",
    "SilentAfterIdle",
    "Stay",
    "Telemetry",
    "TelemetryNotFound",
    "agent_profiles",
    "attempt_faults",
    "check_fleet",
    "client_frames",
    "device_ids",
    "expected_path",
    "fault_kinds",
    "fleet_devices",
    "fleet_timings",
    "fleets",
    "invalid_server_frames",
    "legal_paths",
    "reference",
    "rejections",
    "retry_policies",
    "run_fleet",
    "run_under_mock_clock",
    "schedule_for_path",
    "schedules",
    "seeded_scheduler",
    "server_frames",
    "system_infos",
]


def __getattr__(name: str) -> Any:
    if name in _STRATEGIES:
        from . import strategies

        return getattr(strategies, name)
    if name in _FAULT_STRATEGIES:
        from . import fault_strategies

        return getattr(fault_strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
