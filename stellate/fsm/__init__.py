"""The registration engine: statuses, profiles, the one transition table and its machine."""

from ..timing import RandomSource, RetryPolicy, Timing
from .effects import (
    CloseConnection,
    Effect,
    OpenConnection,
    RequestTelemetry,
    SendRegister,
    StartHeartbeat,
)
from .lifecycle import (
    DeviceLifecycle,
    IllegalTransition,
    LifecycleEngine,
    Observer,
    TransitionRecord,
)
from .paths import Path, Step, paths
from .profile import DEFAULT_MAX_RETRIES, SYSTEM_INFO_KEYS, AgentProfile, merge_system_info
from .status import DeviceStatus
from .table import TRANSITIONS, TRIGGERS, rows
from .trigger import Trigger

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "SYSTEM_INFO_KEYS",
    "TRANSITIONS",
    "TRIGGERS",
    "AgentProfile",
    "CloseConnection",
    "DeviceLifecycle",
    "DeviceStatus",
    "Effect",
    "IllegalTransition",
    "LifecycleEngine",
    "Observer",
    "OpenConnection",
    "Path",
    "RandomSource",
    "RequestTelemetry",
    "RetryPolicy",
    "SendRegister",
    "StartHeartbeat",
    "Step",
    "Timing",
    "TransitionRecord",
    "Trigger",
    "merge_system_info",
    "paths",
    "rows",
]
