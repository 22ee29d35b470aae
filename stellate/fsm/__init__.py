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
from .table import (
    ACTIVE,
    AT_REST,
    ATTEMPTING,
    AWAITING_SERVER,
    HOLDS_SOCKET,
    SETTLED,
    TRANSITIONS,
    TRIGGERS,
    Deadline,
    StateSpec,
    Tag,
    rows,
    tagged,
)
from .trigger import Trigger

__all__ = [
    "ACTIVE",
    "ATTEMPTING",
    "AT_REST",
    "AWAITING_SERVER",
    "DEFAULT_MAX_RETRIES",
    "HOLDS_SOCKET",
    "SETTLED",
    "SYSTEM_INFO_KEYS",
    "TRANSITIONS",
    "TRIGGERS",
    "AgentProfile",
    "CloseConnection",
    "Deadline",
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
    "StateSpec",
    "Step",
    "Tag",
    "Timing",
    "TransitionRecord",
    "Trigger",
    "merge_system_info",
    "paths",
    "rows",
    "tagged",
]
