"""The registration engine: statuses, profiles, the one transition table and its machine.

This package exports what users need: the profile and its statuses, the triggers, the table
(rows and what each means, triggers, state groups, tags, deadlines), its paths, and the timing
settings. The machine
itself (``stellate.fsm.lifecycle``: ``DeviceLifecycle``, ``LifecycleEngine``) and the effects it
returns (``stellate.fsm.effects``) are internal: the runner and the manager import them from
their modules, and they may change without notice (docs/api.md).
"""

from ..timing import RandomSource, RetryPolicy, Timing
from .lifecycle import IllegalTransition, InvalidEventData, TransitionRecord
from .meaning import Meaning
from .paths import Path, Step, paths
from .profile import DEFAULT_MAX_RETRIES, SYSTEM_INFO_KEYS, AgentProfile, merge_system_info
from .states import (
    ACTIVE,
    AT_REST,
    ATTEMPTING,
    AWAITING_SERVER,
    HOLDS_SOCKET,
    OUTCOMES,
    SETTLED,
    Deadline,
    DeadlineKind,
    DeviceStatus,
    StateSpec,
    Tag,
    tagged,
)
from .table import TRANSITIONS, TRIGGERS, Row, rows
from .trigger import OwnerCommand, Trigger

__all__ = [
    "ACTIVE",
    "ATTEMPTING",
    "AT_REST",
    "AWAITING_SERVER",
    "DEFAULT_MAX_RETRIES",
    "HOLDS_SOCKET",
    "OUTCOMES",
    "SETTLED",
    "SYSTEM_INFO_KEYS",
    "TRANSITIONS",
    "TRIGGERS",
    "AgentProfile",
    "Deadline",
    "DeadlineKind",
    "DeviceStatus",
    "IllegalTransition",
    "InvalidEventData",
    "Meaning",
    "OwnerCommand",
    "Path",
    "RandomSource",
    "RetryPolicy",
    "Row",
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
