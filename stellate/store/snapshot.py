"""A device's snapshot: what a new owner needs to resume it, as versioned JSON text.

The old owner writes one per device (in batches, fenced: ``stellate.store.port``); the new owner
reads it and resumes the lifecycle (``stellate.fsm.resume``). Format version 1 holds:

* ``v``: the format version; ``device_id``;
* the run's part of the profile: ``status``, ``connection_attempts``, ``os``, ``capabilities``
  (merged), ``metadata`` (merged system info), ``last_heartbeat``, ``current_task_id``. The
  configured part (``server_url``, ``max_retries``) is the config's: never copied into the
  store (a URL may carry a key);
* the lifecycle's memory: ``failure_reason``, ``last_error``, ``consecutive_failures`` (the
  failure count that climbs the backoff, flaps included), ``recovering_since`` and
  ``activated_at`` (the flap memory);
* ``since`` (when the device entered its status) and ``deadline_at`` (when its state's deadline
  passes), and ``written_at``.

Every time is an absolute wall time (ISO 8601, with its offset): the old owner's monotonic clock
means nothing to the new one, so a deadline is re-armed on the new owner's clock from what is left.

Reading is strict and never raises anything but :class:`UnreadableSnapshot`, which names the
device and says what is wrong: a corrupt text, a field of the wrong type, or a version this
stellate does not know (a newer one's). Every older version stays readable: ``_READERS`` keeps a
reader per version, and ``tests/store/snapshots/`` keeps a written example of each, which
every later stellate must still read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from ..errors import RemoteError
from ..fsm.profile import AgentProfile
from ..fsm.resume import LifecycleMemory
from ..fsm.states import DeviceStatus
from ..text.escape import escape_text

__all__ = [
    "FORMAT_VERSION",
    "DeviceSnapshot",
    "UnreadableSnapshot",
    "decode",
    "encode",
    "snapshot_of",
]

#: The version :func:`encode` writes.
FORMAT_VERSION = 1


class UnreadableSnapshot(RemoteError, ValueError):
    """A device's snapshot cannot be used (the device starts fresh); says which and why. What
    the store holds is at fault: a :class:`RemoteError`."""

    def __init__(self, device_id: str, why: str) -> None:
        self.device_id = device_id
        self.why = why
        super().__init__(f"snapshot of device {escape_text(repr(device_id), limit=140)}: {why}")


@attrs.frozen
class DeviceSnapshot:
    """One device as its owner left it."""

    device_id: str
    status: DeviceStatus
    connection_attempts: int = 0
    os: str | None = None
    capabilities: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    last_heartbeat: datetime | None = None
    current_task_id: str | None = None
    failure_reason: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    recovering_since: datetime | None = None
    activated_at: datetime | None = None
    #: When the device entered ``status``.
    since: datetime | None = None
    #: When the state's deadline passes (None: the state has none).
    deadline_at: datetime | None = None
    written_at: datetime | None = None

    def profile(self, configured: AgentProfile) -> AgentProfile:
        """``configured`` (from the config) with this run's part, status excepted: the status
        is the FSM's to set (``stellate.fsm.resume.resume`` takes :attr:`status`)."""
        return attrs.evolve(
            configured,
            connection_attempts=self.connection_attempts,
            os=self.os,
            capabilities=self.capabilities,
            metadata=dict(self.metadata),
            last_heartbeat=self.last_heartbeat,
            current_task_id=self.current_task_id,
        )

    def memory(self, now: datetime) -> LifecycleMemory:
        """The lifecycle's memory as durations measured at ``now`` (the new owner's wall
        time), the deadline re-armed from what is left of it."""

        def ago(at: datetime | None) -> float | None:
            return None if at is None else max(0.0, (now - at).total_seconds())

        left = None if self.deadline_at is None else (self.deadline_at - now).total_seconds()
        return LifecycleMemory(
            failure_reason=self.failure_reason,
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            recovering_for=ago(self.recovering_since),
            active_for=ago(self.activated_at),
            deadline_in=None if left is None else max(0.0, left),
        )


def snapshot_of(
    profile: AgentProfile, memory: LifecycleMemory, *, now: datetime, since: datetime | None
) -> DeviceSnapshot:
    """The snapshot of a device at wall time ``now`` (``memory``: ``fsm.resume.memory_of``)."""

    def back(seconds: float | None) -> datetime | None:
        return None if seconds is None else now - timedelta(seconds=seconds)

    return DeviceSnapshot(
        device_id=profile.device_id,
        status=profile.status,
        connection_attempts=profile.connection_attempts,
        os=profile.os,
        capabilities=profile.capabilities,
        metadata=profile.metadata,
        last_heartbeat=profile.last_heartbeat,
        current_task_id=profile.current_task_id,
        failure_reason=memory.failure_reason,
        last_error=memory.last_error,
        consecutive_failures=memory.consecutive_failures,
        recovering_since=back(memory.recovering_for),
        activated_at=back(memory.active_for),
        since=since,
        deadline_at=None
        if memory.deadline_in is None
        else now + timedelta(seconds=memory.deadline_in),
        written_at=now,
    )


_TIMES = (
    "last_heartbeat",
    "recovering_since",
    "activated_at",
    "since",
    "deadline_at",
    "written_at",
)


def encode(snapshot: DeviceSnapshot) -> str:
    """The snapshot as JSON text, format :data:`FORMAT_VERSION`."""
    data: dict[str, Any] = {"v": FORMAT_VERSION}
    for field in attrs.fields(DeviceSnapshot):
        value = getattr(snapshot, field.name)
        if field.name in _TIMES:
            value = None if value is None else value.isoformat()
        elif field.name == "status":
            value = value.value
        elif field.name == "capabilities":
            value = list(value)
        elif field.name == "metadata":
            value = dict(value)
        data[field.name] = value
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False)


def decode(text: str, device_id: str) -> DeviceSnapshot:
    """Read a snapshot written by this or any earlier stellate.

    Raises:
        UnreadableSnapshot: corrupt, of the wrong shape, for another device, or of a version
            this stellate does not know.
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnreadableSnapshot(device_id, f"corrupt: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UnreadableSnapshot(device_id, f"corrupt: expected a JSON object, got {_kind(data)}")
    version = data.get("v")
    reader = (
        _READERS.get(version)
        if isinstance(version, int) and not isinstance(version, bool)
        else None
    )
    if reader is None:
        known = ", ".join(str(v) for v in sorted(_READERS))
        raise UnreadableSnapshot(
            device_id,
            f"unknown format version {escape_text(repr(version), limit=40)} "
            f"(this stellate reads {known}; a newer stellate wrote it?)",
        )
    try:
        snapshot = reader(data)
    except _Bad as exc:
        raise UnreadableSnapshot(device_id, f"corrupt: {exc}") from None
    if snapshot.device_id != device_id:
        raise UnreadableSnapshot(
            device_id,
            "it is the snapshot of another device "
            f"({escape_text(repr(snapshot.device_id), limit=140)})",
        )
    return snapshot


class _Bad(RemoteError, ValueError):
    """A field of a snapshot is missing or of the wrong shape."""


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _field(data: Mapping[str, Any], name: str, check: Callable[[Any], bool], what: str) -> Any:
    if name not in data:
        raise _Bad(f"{name}: missing")
    value = data[name]
    if not check(value):
        raise _Bad(f"{name}: expected {what}, got {_kind(value)}")
    return value


def _optional_text(value: object) -> bool:
    return value is None or isinstance(value, str)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    text = _field(data, name, _optional_text, "an ISO 8601 time or null")
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _Bad(f"{name}: not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise _Bad(f"{name}: a time without its UTC offset")
    return value


def _read_v1(data: Mapping[str, Any]) -> DeviceSnapshot:
    status_text = _field(data, "status", lambda v: isinstance(v, str), "a status")
    try:
        status = DeviceStatus(status_text)
    except ValueError:
        raise _Bad(f"status: unknown status {escape_text(repr(status_text), limit=40)}") from None
    capabilities = _field(
        data,
        "capabilities",
        lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
        "a list of strings",
    )
    return DeviceSnapshot(
        device_id=_field(data, "device_id", lambda v: isinstance(v, str), "a string"),
        status=status,
        connection_attempts=_field(data, "connection_attempts", _count, "a count"),
        os=_field(data, "os", _optional_text, "a string or null"),
        capabilities=tuple(capabilities),
        metadata=_field(data, "metadata", lambda v: isinstance(v, dict), "an object"),
        last_heartbeat=_time(data, "last_heartbeat"),
        current_task_id=_field(data, "current_task_id", _optional_text, "a string or null"),
        failure_reason=_field(data, "failure_reason", _optional_text, "a string or null"),
        last_error=_field(data, "last_error", _optional_text, "a string or null"),
        consecutive_failures=_field(data, "consecutive_failures", _count, "a count"),
        recovering_since=_time(data, "recovering_since"),
        activated_at=_time(data, "activated_at"),
        since=_time(data, "since"),
        deadline_at=_time(data, "deadline_at"),
        written_at=_time(data, "written_at"),
    )


#: A reader per format version ever written. Never remove one: a store may still hold it.
_READERS: dict[int, Callable[[Mapping[str, Any]], DeviceSnapshot]] = {1: _read_v1}
