"""Sans-IO client sessions: what a constellation or a device says, and what each answer means.

A session owns no socket and no clock (wsproto's rule): the caller sends the strings it gets
from ``register()`` / ``heartbeat()`` / ``request_device_info()`` and feeds every received
frame to ``receive()``, which returns events. Time stamps and ids come from injected
callables so tests are deterministic.

The session tracks its own phase because AIP reuses frames: the registration confirmation
*is* a heartbeat frame. ``heartbeat/ok`` while registering means "registered"; once registered
it means "heartbeat acknowledged". For the same reason ``heartbeat()`` is refused until the
session is registered: an ack to an early heartbeat would be indistinguishable from the
confirmation.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from ..errors import LocalError
from .codec import FrameTemplate, ProtocolError, decode_server, encode_client, share_strings
from .ids import constellation_id
from .messages import (
    ClientMessage,
    ClientMessageType,
    ClientType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
)
from .rejections import RejectionKind, classify_text

__all__ = [
    "CONSTELLATION_CAPABILITIES",
    "ClientEvent",
    "ConstellationSession",
    "DeviceEvent",
    "DeviceInfo",
    "DeviceSession",
    "HeartbeatAck",
    "Ignored",
    "PeerError",
    "ProtocolViolation",
    "Registered",
    "Rejected",
    "Reply",
    "SessionPhase",
    "SessionStateError",
    "default_new_id",
    "default_now",
]

#: What the reference constellation client advertises in its REGISTER metadata.
CONSTELLATION_CAPABILITIES = ("task_distribution", "session_management", "device_coordination")
CONSTELLATION_CLIENT_VERSION = "2.0"


def default_now() -> str:
    """UTC time stamp in the reference's format (``datetime.isoformat`` with ``+00:00``)."""
    return datetime.now(UTC).isoformat()


def default_new_id() -> str:
    return str(uuid.uuid4())


class SessionPhase(enum.Enum):
    NEW = "new"
    REGISTERING = "registering"
    REGISTERED = "registered"
    REJECTED = "rejected"


class SessionStateError(LocalError, RuntimeError):
    """The caller asked for a frame the session's phase does not allow (a programming error)."""


# --- events -------------------------------------------------------------------------------


@attrs.frozen
class Registered:
    """The server confirmed the registration."""


@attrs.frozen
class Rejected:
    """The server refused the registration; it will close the socket.

    ``kind`` is what the refusal's text says (``rejections.classify_text``): the one place a
    server's words are interpreted.
    """

    reason: str
    kind: RejectionKind = attrs.field(
        default=attrs.Factory(lambda self: classify_text(self.reason), takes_self=True)
    )


@attrs.frozen
class HeartbeatAck:
    """The server acknowledged a heartbeat."""


@attrs.frozen
class DeviceInfo:
    """Answer to the outstanding device-info request; ``None`` means "no telemetry"."""

    system_info: dict[str, Any] | None


@attrs.frozen
class PeerError:
    """An error frame after registration (e.g. the target device left)."""

    reason: str


@attrs.frozen
class ProtocolViolation:
    """The peer sent something this session cannot accept (garbage, binary, out of turn)."""

    reason: str


@attrs.frozen
class Reply:
    """A frame the caller should send back (a device answering a server request)."""

    frame: str


@attrs.frozen
class Ignored:
    """A well-formed frame this session does not act on (e.g. a task for a bare agent)."""

    reason: str


ClientEvent = Registered | Rejected | HeartbeatAck | DeviceInfo | PeerError | ProtocolViolation
DeviceEvent = Registered | Rejected | HeartbeatAck | PeerError | ProtocolViolation | Reply | Ignored


# --- heartbeats: the one frame sent all the time, encoded once (see FrameTemplate) ----------


def _constellation_heartbeat(client_id: str, timestamp: str, device_id: str) -> ClientMessage:
    """A constellation's heartbeat names its client_type (the reference omits it and is
    rejected) and the device it acts on."""
    return ClientMessage(
        type=ClientMessageType.HEARTBEAT,
        status=TaskStatus.OK,
        client_type=ClientType.CONSTELLATION,
        client_id=client_id,
        timestamp=timestamp,
        metadata={"device_id": device_id},
    )


def _device_heartbeat(client_id: str, timestamp: str) -> ClientMessage:
    return ClientMessage(
        type=ClientMessageType.HEARTBEAT,
        status=TaskStatus.OK,
        client_type=ClientType.DEVICE,
        client_id=client_id,
        timestamp=timestamp,
    )


_CONSTELLATION_HEARTBEAT = FrameTemplate(_constellation_heartbeat)
_DEVICE_HEARTBEAT = FrameTemplate(_device_heartbeat)


# --- a constellation's two other frames, sent once per connection: encoded once as well -----


def _constellation_register(
    client_id: str, timestamp: str, target_id: str, task_name: str, targeted_device_id: str
) -> ClientMessage:
    """``frames/constellation_register.json``: the device is named twice (as the target, and
    in the metadata), so it is two values of the template."""
    return ClientMessage(
        type=ClientMessageType.REGISTER,
        status=TaskStatus.OK,
        client_type=ClientType.CONSTELLATION,
        client_id=client_id,
        target_id=target_id,
        timestamp=timestamp,
        metadata={
            "type": "constellation_client",
            "task_name": task_name,
            "targeted_device_id": targeted_device_id,
            "capabilities": list(CONSTELLATION_CAPABILITIES),
            "version": CONSTELLATION_CLIENT_VERSION,
        },
    )


def _device_info_request(
    client_id: str, timestamp: str, target_id: str, request_id: str
) -> ClientMessage:
    return ClientMessage(
        type=ClientMessageType.DEVICE_INFO_REQUEST,
        status=TaskStatus.OK,
        client_type=ClientType.CONSTELLATION,
        client_id=client_id,
        target_id=target_id,
        timestamp=timestamp,
        request_id=request_id,
    )


_CONSTELLATION_REGISTER = FrameTemplate(_constellation_register)
_DEVICE_INFO_REQUEST = FrameTemplate(_device_info_request)


# --- shared phase logic -------------------------------------------------------------------


class _ClientSessionBase:
    """Registration and heartbeat handling shared by both client kinds."""

    client_id: str
    client_type: ClientType

    def __init__(self, now: Callable[[], str], new_id: Callable[[], str]) -> None:
        self._now = now
        self._new_id = new_id
        self.phase = SessionPhase.NEW

    @property
    def registration_pending(self) -> bool:
        """REGISTER not answered yet (not sent, or sent and awaiting the server)."""
        return self.phase in (SessionPhase.NEW, SessionPhase.REGISTERING)

    def _require(self, *phases: SessionPhase, action: str) -> None:
        if self.phase not in phases:
            allowed = " or ".join(p.value for p in phases)
            raise SessionStateError(
                f"cannot {action} in phase {self.phase.value} (needs {allowed})"
            )

    def _message(self, type_: ClientMessageType, **fields: Any) -> str:
        return encode_client(
            ClientMessage(
                type=type_,
                status=TaskStatus.OK,
                client_type=self.client_type,
                client_id=self.client_id,
                timestamp=self._now(),
                **fields,
            )
        )

    def _start_registration(self, frame: Callable[[], str]) -> str:
        """The REGISTER frame ``frame()`` builds, once per session."""
        self._require(SessionPhase.NEW, action="register")
        text = frame()
        self.phase = SessionPhase.REGISTERING
        return text

    def _interpret(
        self, frame: str | bytes
    ) -> ServerMessage | Registered | Rejected | HeartbeatAck | PeerError | ProtocolViolation:
        """What a frame means to both kinds: the event it is, or (when its meaning depends on
        the kind) the decoded message, for the subclass's ``receive``."""
        if isinstance(frame, bytes):
            return ProtocolViolation("binary frame (AIP frames are text)")
        try:
            message = decode_server(frame)
        except ProtocolError as exc:
            return ProtocolViolation(str(exc))
        if self.phase is SessionPhase.NEW:
            return ProtocolViolation(f"{message.type.value} frame before register was sent")
        if self.phase is SessionPhase.REJECTED:
            return ProtocolViolation(f"{message.type.value} frame after the registration failed")
        if self.phase is SessionPhase.REGISTERING:
            if message.type is ServerMessageType.HEARTBEAT and message.status is TaskStatus.OK:
                self.phase = SessionPhase.REGISTERED
                return Registered()
            if message.type is ServerMessageType.ERROR or message.status is TaskStatus.ERROR:
                self.phase = SessionPhase.REJECTED
                return Rejected(message.error or "registration rejected (no reason given)")
            return ProtocolViolation(f"unexpected {message.type.value} frame while registering")
        if message.type is ServerMessageType.HEARTBEAT:
            return HeartbeatAck()
        if message.type is ServerMessageType.ERROR:
            return PeerError(message.error or "error frame without a reason")
        return message


# --- constellation ------------------------------------------------------------------------


class ConstellationSession(_ClientSessionBase):
    """A constellation's view of one (constellation, device) socket.

    Args:
        task_name: the constellation's task name; with ``device_id`` it forms ``client_id``.
        device_id: the device this socket acts on (``target_id``).
        now: returns the ISO-8601 time stamp put in every frame.
        new_id: returns a fresh request id.
    """

    client_type = ClientType.CONSTELLATION

    def __init__(
        self,
        task_name: str,
        device_id: str,
        *,
        now: Callable[[], str] = default_now,
        new_id: Callable[[], str] = default_new_id,
    ) -> None:
        super().__init__(now, new_id)
        self.task_name = task_name
        self.device_id = device_id
        self.client_id = constellation_id(task_name, device_id)
        self.pending_request_id: str | None = None

    def register(self) -> str:
        """The REGISTER frame (``frames/constellation_register.json``)."""
        device = self.device_id
        return self._start_registration(
            lambda: _CONSTELLATION_REGISTER.fill(
                self.client_id, self._now(), device, self.task_name, device
            )
        )

    def heartbeat(self) -> str:
        """A heartbeat that names its client_type (the reference omits it and is rejected)."""
        self._require(SessionPhase.REGISTERED, action="send a heartbeat")
        return _CONSTELLATION_HEARTBEAT.fill(self.client_id, self._now(), self.device_id)

    def request_device_info(self) -> str:
        """Ask for the target's telemetry; the answer arrives as a ``DeviceInfo`` event."""
        self._require(SessionPhase.REGISTERED, action="request device info")
        request_id = self._new_id()
        self.pending_request_id = request_id
        return _DEVICE_INFO_REQUEST.fill(self.client_id, self._now(), self.device_id, request_id)

    def receive(self, frame: str | bytes) -> list[ClientEvent]:
        """Interpret one received frame in the current phase."""
        message = self._interpret(frame)
        if not isinstance(message, ServerMessage):
            return [message]
        if message.type is ServerMessageType.DEVICE_INFO_RESPONSE:
            return [self._device_info(message)]
        return [ProtocolViolation(f"unexpected {message.type.value} frame")]

    def _device_info(self, message: ServerMessage) -> DeviceInfo | ProtocolViolation:
        if self.pending_request_id is None:
            return ProtocolViolation("device_info_response with no request outstanding")
        if message.response_id != self.pending_request_id:
            return ProtocolViolation(
                f"device_info_response for {message.response_id!r}, "
                f"expected {self.pending_request_id!r}"
            )
        self.pending_request_id = None
        result = message.result
        # The reference answers "not found" with status ok and {"error": ...} as the result.
        if message.status is TaskStatus.OK and isinstance(result, dict) and "error" not in result:
            return DeviceInfo(share_strings(result))  # kept by the profile: no per-device copies
        return DeviceInfo(None)


# --- device -------------------------------------------------------------------------------


class DeviceSession(_ClientSessionBase):
    """A device agent's view of its socket to the agent server.

    Args:
        device_id: the agent's id, sent as ``client_id``.
        system_info: the telemetry announced at registration (``DeviceInfoProvider``'s dict).
        platform: the platform string (``linux``, ``windows``, ...).
        now: returns the ISO-8601 time stamp put in every frame.
        new_id: returns a fresh id (unused by devices today; kept for symmetry).
    """

    client_type = ClientType.DEVICE

    def __init__(
        self,
        device_id: str,
        system_info: dict[str, Any],
        platform: str,
        *,
        now: Callable[[], str] = default_now,
        new_id: Callable[[], str] = default_new_id,
    ) -> None:
        super().__init__(now, new_id)
        self.device_id = device_id
        self.client_id = device_id
        self.system_info = system_info
        self.platform = platform

    def register(self) -> str:
        """The REGISTER frame (``frames/device_register.json``)."""
        return self._start_registration(
            lambda: self._message(
                ClientMessageType.REGISTER,
                metadata={
                    "system_info": self.system_info,
                    "registration_time": self._now(),
                    "platform": self.platform,
                },
            )
        )

    def heartbeat(self) -> str:
        self._require(SessionPhase.REGISTERED, action="send a heartbeat")
        return _DEVICE_HEARTBEAT.fill(self.client_id, self._now())

    def receive(self, frame: str | bytes) -> list[DeviceEvent]:
        """Interpret one received frame in the current phase."""
        message = self._interpret(frame)
        if not isinstance(message, ServerMessage):
            return [message]
        if message.type is ServerMessageType.DEVICE_INFO_REQUEST:
            # The server asks the device directly: answer with the announced telemetry.
            return [
                Reply(
                    self._message(
                        ClientMessageType.DEVICE_INFO_RESPONSE,
                        request_id=message.response_id,
                        metadata={"system_info": self.system_info},
                    )
                )
            ]
        if message.type is ServerMessageType.DEVICE_INFO_RESPONSE:
            return [ProtocolViolation("device_info_response sent to a device")]
        # task / command / task_end: a registration-only agent executes nothing.
        return [Ignored(f"{message.type.value} frame not handled by this agent")]
