"""AIP message shapes, wire-compatible with Microsoft UFO's ``aip.messages``.

Field order is the reference's key order: the codec emits keys in declaration order, so a
frame we encode lines up key by key with a frame captured from the reference (see
``tests/frames/``). Every optional field defaults to ``None`` and is emitted as ``null``,
as the reference does.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class ClientMessageType(enum.StrEnum):
    """``ClientMessage.type`` values."""

    TASK = "task"
    HEARTBEAT = "heartbeat"
    COMMAND_RESULTS = "command_results"
    ERROR = "error"
    REGISTER = "register"
    TASK_END = "task_end"
    DEVICE_INFO_REQUEST = "device_info_request"
    DEVICE_INFO_RESPONSE = "device_info_response"


class ServerMessageType(enum.StrEnum):
    """``ServerMessage.type`` values."""

    TASK = "task"
    HEARTBEAT = "heartbeat"
    TASK_END = "task_end"
    COMMAND = "command"
    ERROR = "error"
    DEVICE_INFO_REQUEST = "device_info_request"
    DEVICE_INFO_RESPONSE = "device_info_response"


class TaskStatus(enum.StrEnum):
    """``status`` values shared by both directions."""

    CONTINUE = "continue"
    COMPLETED = "completed"
    FAILED = "failed"
    OK = "ok"
    ERROR = "error"


class ClientType(enum.StrEnum):
    """Who is speaking: a device agent, or a constellation acting on one device."""

    DEVICE = "device"
    CONSTELLATION = "constellation"


@attrs.frozen
class ClientMessage:
    """A client → server frame. Absent ``client_type`` means ``device`` (the reference default)."""

    type: ClientMessageType
    status: TaskStatus
    client_type: ClientType = ClientType.DEVICE
    session_id: str | None = None
    task_name: str | None = None
    client_id: str | None = None
    target_id: str | None = None
    request: str | None = None
    action_results: list[Any] | None = None
    timestamp: str | None = None
    request_id: str | None = None
    prev_response_id: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None


@attrs.frozen
class ServerMessage:
    """A server → client frame. ``result`` carries any JSON value (device info, errors)."""

    type: ServerMessageType
    status: TaskStatus
    user_request: str | None = None
    agent_name: str | None = None
    process_name: str | None = None
    root_name: str | None = None
    actions: list[Any] | None = None
    messages: list[Any] | None = None
    error: str | None = None
    session_id: str | None = None
    task_name: str | None = None
    timestamp: str | None = None
    response_id: str | None = None
    result: Any = None
