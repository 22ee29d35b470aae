"""What an event carries: one small typed class per trigger that carries data.

As wsproto's and h11's events are classes with their fields, the triggers that carry data are
fired with an instance of their class, which names its trigger: ``lifecycle.fire(
ConnectionFailed("refused", retry_after=5.0))``; the others are fired by their ``Trigger``.
The guards and callbacks of the table read these fields (``answer.accepted``), never a
``**kwargs`` dictionary. ``DeviceLifecycle.fire`` checks the data before the machine sees it:
a trigger fired without its data, or with a field of the wrong type, is refused with
``InvalidEventData`` (an ``IllegalTransition``) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import attrs

from ..protocol.rejections import RejectionKind
from .trigger import Trigger

__all__ = [
    "DATA_OF",
    "AuthRejected",
    "ConnectionFailed",
    "EventData",
    "InternalError",
    "ProtocolViolated",
    "RegistrationAnswer",
    "TaskAssigned",
    "TelemetryAnswer",
    "data_problem",
]

_NONE = type(None)


@attrs.frozen
class ConnectionFailed:
    """The socket could not be opened, broke, or was declared lost."""

    trigger: ClassVar[Trigger] = Trigger.CONNECTION_FAILED
    _types: ClassVar[Mapping[str, tuple[type, ...]]] = {
        "reason": (str,),
        "retry_after": (int, float, _NONE),
    }

    reason: str = ""
    #: Seconds the server asked us to wait (an HTTP Retry-After): the backoff waits at least
    #: that long.
    retry_after: float | None = None


@attrs.frozen
class RegistrationAnswer:
    """The server answered the REGISTER: accepted, or refused with a reason of some kind."""

    trigger: ClassVar[Trigger] = Trigger.REGISTRATION_ANSWERED
    _types: ClassVar[Mapping[str, tuple[type, ...]]] = {
        "accepted": (bool,),
        "reason": (str,),
        "kind": (RejectionKind,),
    }

    accepted: bool
    reason: str = ""
    #: What a refusal means (``stellate.protocol.classify_text``): final, or transient while
    #: the server is in flux.
    kind: RejectionKind = RejectionKind.FINAL


@attrs.frozen
class TelemetryAnswer:
    """The server answered the telemetry request (None: it knows no system info)."""

    trigger: ClassVar[Trigger] = Trigger.TELEMETRY_RECEIVED
    _types: ClassVar[Mapping[str, tuple[type, ...]]] = {"system_info": (Mapping, _NONE)}

    system_info: Mapping[str, Any] | None = None


@attrs.frozen
class TaskAssigned:
    """The app gave the device a task."""

    trigger: ClassVar[Trigger] = Trigger.TASK_ASSIGNED
    _types: ClassVar[Mapping[str, tuple[type, ...]]] = {"task_id": (str,)}

    task_id: str


@attrs.frozen
class AuthRejected:
    """The server refused our API key."""

    trigger: ClassVar[Trigger] = Trigger.AUTH_REJECTED
    _types: ClassVar[Mapping[str, tuple[type, ...]]] = {
        "reason": (str,),
        "key_source": (str, _NONE),
    }

    reason: str = ""
    #: Where the refused key came from, in words (``the key from $STELLATE_API_KEY``), for
    #: the failure reason; never the key.
    key_source: str | None = None


@attrs.frozen
class InternalError:
    """A bug in our own code while driving the device."""

    trigger: ClassVar[Trigger] = Trigger.INTERNAL_ERROR
    _types: ClassVar[Mapping[str, tuple[type, ...]]] = {"reason": (str,)}

    reason: str = ""


@attrs.frozen
class ProtocolViolated:
    """The server sent a frame the protocol forbids."""

    trigger: ClassVar[Trigger] = Trigger.PROTOCOL_VIOLATION
    _types: ClassVar[Mapping[str, tuple[type, ...]]] = {"reason": (str,)}

    reason: str = ""


EventData = (
    ConnectionFailed
    | RegistrationAnswer
    | TelemetryAnswer
    | TaskAssigned
    | AuthRejected
    | InternalError
    | ProtocolViolated
)

#: The data class of each trigger that carries data.
DATA_OF: Final[Mapping[Trigger, type[EventData]]] = {
    cls.trigger: cls
    for cls in (
        ConnectionFailed,
        RegistrationAnswer,
        TelemetryAnswer,
        TaskAssigned,
        AuthRejected,
        InternalError,
        ProtocolViolated,
    )
}


def data_problem(data: EventData) -> str | None:
    """What is wrong with ``data``'s fields (a type its class does not allow), or None."""
    for name, allowed in data._types.items():
        value = getattr(data, name)
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            wanted = " or ".join("None" if t is _NONE else t.__name__ for t in allowed)
            return f"{type(data).__name__}.{name} must be {wanted}, got {value!r}"
    return None
