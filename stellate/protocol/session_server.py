"""Sans-IO agent-server session: one per accepted socket.

The trio edge feeds it what happened — a frame arrived, the deadline passed, the socket is
gone — with the time it happened (``at``), and performs the actions it returns: ``Send`` a
frame, ``Close`` the socket, or ``Evict`` another connection (send it a last error frame and
close it). ``deadline`` says when the edge must call ``deadline_passed``: the registration
deadline before a register frame, the heartbeat lease of a registered device after it.

On the wire this is the reference server (same confirmation, same error texts, same
device-info answers), with the fixes listed in docs/aip.md ("Where stellate behaves better than the
reference"); each fix is marked ``Fix n`` below with its number there.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import attrs

from ..text.escape import escape_text
from ..timing import DEFAULT_TIMING, Timing
from .closing import CLOSE_NORMAL, close_reason
from .codec import FrameTemplate, ProtocolError, decode_client, encode_server
from .ids import registration_refusal
from .messages import (
    ClientMessage,
    ClientMessageType,
    ClientType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
)
from .registry import ClientEntry, ClientRegistry
from .rejections import (
    ALREADY_REGISTERED,
    CLOSE_POLICY_VIOLATION,
    REPLACED,
    TARGET_DISCONNECTED,
    TARGET_NOT_CONNECTED,
    classify_text,
)
from .server_counts import FrameRefusal, ServerCounts
from .session_client import default_new_id, default_now

__all__ = [
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TOO_BIG",
    "CLOSE_UNSUPPORTED_DATA",
    "Close",
    "Evict",
    "Send",
    "ServerAction",
    "ServerPhase",
    "ServerPolicy",
    "ServerSession",
]

logger = logging.getLogger(__name__)

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_TOO_BIG = 1009

#: Most a server keeps of one device's ``system_info``, as compact ASCII JSON (bytes).
DEFAULT_MAX_SYSTEM_INFO_BYTES = 64 * 1024
#: Longest ``platform`` string kept for a device (a longer one is dropped).
MAX_PLATFORM_LENGTH = 256
#: Told to a device (after its confirmation) whose system_info is over the server's limit.
SYSTEM_INFO_NOT_KEPT = (
    "system_info is {size:,} bytes, more than this server keeps ({limit:,}): not stored; "
    "device info about this device reports none"
)

MISMATCHED_CLIENT_TYPE = "client_type does not match the registered connection"
MISMATCHED_CLIENT_ID = "client_id does not match the registered connection"


@attrs.frozen(kw_only=True)
class ServerPolicy:
    """What a server allows its clients.

    ``timing`` (a ``stellate.Timing``, the one place timing settings are given): a socket has
    ``registration_timeout`` seconds to register; after that, a device silent (no heartbeat)
    for ``timing.lease`` (``heartbeat_interval × miss_limit``) is declared lost. A constellation
    that sends nothing at all for ``constellation_idle_timeout`` is dropped (``None``: never, as
    the reference); its default, twice the device lease, keeps a device's loss reported to its
    constellations before their own limit could fire at the same moment.

    ``max_system_info_bytes`` bounds what the server keeps per device: a register frame may be
    as large as the frame limit (1 MiB), but a ``system_info`` longer than this (as compact
    JSON) is not stored; the device is registered and told so in an error frame.
    """

    timing: Timing = DEFAULT_TIMING
    constellation_idle_timeout: float | None = attrs.field(
        default=attrs.Factory(lambda self: 2 * self.timing.lease, takes_self=True)
    )
    max_system_info_bytes: int = DEFAULT_MAX_SYSTEM_INFO_BYTES

    @property
    def constellation_lease(self) -> float:
        """Seconds a registered constellation may stay silent (``inf``: no limit)."""
        idle = self.constellation_idle_timeout
        return math.inf if idle is None else idle


class ServerPhase(enum.Enum):
    AWAITING_REGISTER = "awaiting_register"
    REGISTERED = "registered"
    CLOSED = "closed"


@attrs.frozen
class Send:
    """Send ``frame`` on this session's socket."""

    frame: str


@attrs.frozen
class Close:
    """Close this session's socket; the session has already left the registry."""

    code: int
    reason: str


@attrs.frozen(eq=False)
class Evict:
    """Tell another connection to send ``frame`` (if any) and close with ``code``."""

    session: ServerSession
    frame: str | None
    code: int
    reason: str


ServerAction = Send | Close | Evict


def _heartbeat_ack(timestamp: str, response_id: str) -> ServerMessage:
    """Both the registration confirmation and every heartbeat's answer."""
    return ServerMessage(
        type=ServerMessageType.HEARTBEAT,
        status=TaskStatus.OK,
        timestamp=timestamp,
        response_id=response_id,
    )


#: The frame a server sends most: encoded once, filled per use (see ``FrameTemplate``).
_HEARTBEAT_ACK = FrameTemplate(_heartbeat_ack)


class ServerSession:
    """The server's side of one socket.

    Args:
        registry: the server-wide registry this session registers into.
        accepted_at: when the socket was accepted (starts the registration deadline).
        policy: deadlines and lease.
        now: ISO-8601 time stamps for outgoing frames.
        new_id: fresh ``response_id`` values.
        counts: where to count what this session decides (``None``: not counted).
    """

    def __init__(
        self,
        registry: ClientRegistry,
        accepted_at: float,
        *,
        policy: ServerPolicy = ServerPolicy(),
        now: Callable[[], str] = default_now,
        new_id: Callable[[], str] = default_new_id,
        counts: ServerCounts | None = None,
    ) -> None:
        self._registry = registry
        self._counts = counts
        self._policy = policy
        self._now = now
        self._new_id = new_id
        self.phase = ServerPhase.AWAITING_REGISTER
        self.client_id: str | None = None
        self.client_type: ClientType | None = None
        self.target_id: str | None = None
        self._deadline = accepted_at + policy.timing.registration_timeout

    def __repr__(self) -> str:
        return f"<ServerSession {self.client_id or '?'} {self.phase.value}>"

    @property
    def deadline(self) -> float:
        """When ``deadline_passed`` is due (``inf``: no deadline)."""
        return self._deadline

    # --- inputs -----------------------------------------------------------------------------

    def receive(self, frame: str | bytes, at: float) -> list[ServerAction]:
        """A frame arrived at time ``at``."""
        if self.phase is ServerPhase.CLOSED:
            return []
        if isinstance(frame, bytes):
            # Fix 3: the reference drops the client but leaves the socket open.
            self._count_refusal(FrameRefusal.BINARY)
            return self._shut_down(CLOSE_UNSUPPORTED_DATA, "binary frames are not supported")
        try:
            message = decode_client(frame)
        except ProtocolError as exc:
            if self.phase is ServerPhase.AWAITING_REGISTER:  # Fix 2
                return self._shut_down(CLOSE_POLICY_VIOLATION, f"invalid first frame: {exc}")
            return [self._refuse(FrameRefusal.INVALID, f"invalid message: {exc}")]
        if self.phase is ServerPhase.AWAITING_REGISTER:
            return self._register(message, at)
        return self._registered_frame(message, at)

    def deadline_passed(self, at: float) -> list[ServerAction]:
        """The edge's deadline fired; a no-op if it is not yet due (e.g. a lease was renewed)."""
        if self.phase is ServerPhase.CLOSED or at < self._deadline:
            return []
        if self.phase is ServerPhase.AWAITING_REGISTER:  # Fix 2: silent sockets
            timeout = self._policy.timing.registration_timeout
            return self._shut_down(
                CLOSE_POLICY_VIOLATION, f"no register frame within {timeout:g} s"
            )
        # Fix 7: the lease of a registered client ran out.
        if self.client_type is ClientType.CONSTELLATION:
            return self._shut_down(
                CLOSE_POLICY_VIOLATION,
                f"nothing received for {self._policy.constellation_lease:g} s; "
                "connection declared lost",
            )
        return self._shut_down(
            CLOSE_POLICY_VIOLATION,
            f"no heartbeat for {self._policy.timing.lease:g} s; connection declared lost",
        )

    def connection_lost(self, at: float) -> list[ServerAction]:
        """The socket is gone (peer closed, network broke, or we closed it)."""
        if self.phase is ServerPhase.CLOSED:
            return []
        self.phase = ServerPhase.CLOSED
        self._deadline = math.inf
        return self._deregister()

    # --- registration -----------------------------------------------------------------------

    def _register(self, message: ClientMessage, at: float) -> list[ServerAction]:
        if message.type is not ClientMessageType.REGISTER:
            return self._shut_down(
                CLOSE_POLICY_VIOLATION,
                f"first frame must be a register frame, got {message.type.value!r}",
            )
        client_id = message.client_id
        if not client_id:
            return self._shut_down(CLOSE_POLICY_VIOLATION, "register frame without client_id")
        refusal = registration_refusal(
            client_id,
            message.client_type,
            message.target_id,
            self._registry.look_alike_of(client_id),
        )
        if refusal is not None:
            # Invisible differences ("dev\u200b", "dev "), look-alikes of a registered id
            # ("dev-\u043e" while "dev-o" is), the other role's shape ("task@dev" as a device)
            # and a constellation acting for another device than its id names are refused,
            # never registered: see protocol/ids.py.
            return self._shut_down(CLOSE_POLICY_VIOLATION, refusal)

        evictions: list[ServerAction] = []
        existing = self._registry.get(client_id)
        if existing is not None:
            # No takeover: a live owner keeps its id, and even a stale entry may only be
            # replaced by a client of its own type (a constellation must not squat a device's
            # id while that device is between connections, nor the other way round).
            if not existing.is_stale(at) or existing.client_type is not message.client_type:
                return self._shut_down(CLOSE_NORMAL, ALREADY_REGISTERED.format(client_id=client_id))
            # Fix 5: a stale registration (lease expired or socket gone) is replaced.
            logger.info("replacing stale registration of %s", client_id)
            evictions.append(self._replace(existing))

        metadata = message.metadata or {}
        not_kept: str | None = None
        entry = ClientEntry(
            client_id=client_id, client_type=message.client_type, owner=self, registered_at=at
        )
        if message.client_type is ClientType.CONSTELLATION:
            target = message.target_id
            if target is not None and self._registry.live_device(target, at) is None:
                return [
                    *evictions,
                    *self._shut_down(CLOSE_NORMAL, TARGET_NOT_CONNECTED.format(device_id=target)),
                ]
            entry.target_id = target
            # Constellations have no lease in the reference; here a silent one is dropped like
            # a silent device, so a vanished peer cannot hold a socket forever. Any valid frame
            # renews it (reference constellations heartbeat, as stellate's manager does).
            entry.lease_expires = at + self._policy.constellation_lease
        else:
            not_kept = self._keep_system_info(entry, metadata.get("system_info"))
            platform = metadata.get("platform")
            if isinstance(platform, str) and len(platform) <= MAX_PLATFORM_LENGTH:
                entry.platform = platform
            entry.lease_expires = at + self._policy.timing.lease

        self._registry.add(entry)
        if self._counts is not None:
            self._counts.registered[message.client_type] += 1
        self.phase = ServerPhase.REGISTERED
        self.client_id = client_id
        self.client_type = message.client_type
        self.target_id = entry.target_id
        self._deadline = entry.lease_expires
        logger.info("registered %s %s", message.client_type.value, client_id)
        if not_kept is not None:
            logger.info("%s: %s", client_id, not_kept)
            return [*evictions, self._ack(), self._refuse(FrameRefusal.TOO_BIG, not_kept)]
        return [*evictions, self._ack()]

    def _keep_system_info(self, entry: ClientEntry, system_info: object) -> str | None:
        """Store ``system_info`` on ``entry`` within the limit; say why not when it is over."""
        if not isinstance(system_info, dict):
            return None
        # ASCII escapes: the text's length is its size, and no lone surrogate survives.
        stored = json.dumps(system_info, separators=(",", ":"))
        limit = self._policy.max_system_info_bytes
        if len(stored) > limit:
            return SYSTEM_INFO_NOT_KEPT.format(size=len(stored), limit=limit)
        entry.system_info_json = stored
        return None

    def _replace(self, stale: ClientEntry) -> Evict:
        owner = stale.owner
        assert isinstance(owner, ServerSession)
        frame = encode_server(self._error_message(REPLACED))
        return Evict(owner, frame, CLOSE_NORMAL, "replaced by a newer registration")

    # --- after registration -----------------------------------------------------------------

    def _registered_frame(self, message: ClientMessage, at: float) -> list[ServerAction]:
        if message.client_id is not None and message.client_id != self.client_id:
            return [self._refuse(FrameRefusal.IDENTITY_MISMATCH, MISMATCHED_CLIENT_ID)]
        if self.client_type is ClientType.CONSTELLATION:
            self._renew(at)
        if message.type is ClientMessageType.HEARTBEAT:
            # Fix 1: a heartbeat grants nothing, so its claimed client_type does not matter
            # (reference constellations send "device" and would otherwise be refused forever).
            return self._heartbeat(at)
        if message.client_type is not self.client_type:
            return [self._refuse(FrameRefusal.IDENTITY_MISMATCH, MISMATCHED_CLIENT_TYPE)]
        if message.type is ClientMessageType.DEVICE_INFO_REQUEST:
            return [self._device_info(message, at)]
        if message.type is ClientMessageType.REGISTER:
            return [
                self._refuse(
                    FrameRefusal.ALREADY_REGISTERED, "this connection is already registered"
                )
            ]
        if message.type in (ClientMessageType.ERROR, ClientMessageType.DEVICE_INFO_RESPONSE):
            logger.debug("%s sent %s; nothing to do", self.client_id, message.type.value)
            return []
        unsupported = f"{message.type.value!r} frames are not supported by this server"
        return [self._refuse(FrameRefusal.UNSUPPORTED, unsupported)]

    def _heartbeat(self, at: float) -> list[ServerAction]:
        if self._counts is not None:
            self._counts.heartbeats += 1
        if self.client_type is ClientType.DEVICE:
            self._renew(at)
        return [self._ack()]

    def _renew(self, at: float) -> None:
        if self.client_id is not None:
            lease = self._policy.timing.lease
            if self.client_type is ClientType.CONSTELLATION:
                lease = self._policy.constellation_lease
            self._deadline = at + lease
            self._registry.renew(self.client_id, self, self._deadline)

    def _device_info(self, message: ClientMessage, at: float) -> ServerAction:
        requested = message.target_id or self.target_id
        if self.client_type is not ClientType.CONSTELLATION:
            return self._refuse(
                FrameRefusal.NOT_PERMITTED, "only constellation clients may request device info"
            )
        if requested is None or requested != self.target_id:
            # Fix 6: the reference answers any device's telemetry to any constellation.
            return self._refuse(
                FrameRefusal.NOT_PERMITTED,
                f"device info is only available for this connection's target "
                f"{self.target_id!r}, not {requested!r}",
            )
        device = self._registry.live_device(requested, at)
        result: Any
        if device is not None and device.system_info is not None:
            result = device.system_info
        else:
            result = {"error": f"Device {requested} not found or no system info available"}
        # response_id echoes request_id, even when the client sent none (as the reference).
        return Send(
            encode_server(
                ServerMessage(
                    type=ServerMessageType.DEVICE_INFO_RESPONSE,
                    status=TaskStatus.OK,
                    timestamp=self._now(),
                    response_id=message.request_id,
                    result=result,
                )
            )
        )

    # --- leaving ----------------------------------------------------------------------------

    def _shut_down(self, code: int, reason: str) -> list[ServerAction]:
        """Say why (an error frame), leave the registry, and close."""
        if self._counts is not None and self.phase is ServerPhase.AWAITING_REGISTER:
            self._counts.rejected[classify_text(reason)] += 1
        actions: list[ServerAction] = [self._error(reason)]
        self.phase = ServerPhase.CLOSED
        self._deadline = math.inf
        actions.extend(self._deregister())
        actions.append(Close(code, close_reason(reason)))
        logger.info("closing %r (%d): %s", self, code, escape_text(reason))
        return actions

    def _deregister(self) -> list[ServerAction]:
        if self.client_id is None:
            return []
        entry = self._registry.remove(self.client_id, self)
        if entry is not None and self._counts is not None:
            self._counts.departed[entry.client_type] += 1
        if entry is None:
            return []
        if entry.client_type is not ClientType.DEVICE:
            logger.info("constellation %s left", entry.client_id)
            return []
        logger.info("device %s left", entry.client_id)
        # Fix 4: constellations acting on this device are told at once.
        text = TARGET_DISCONNECTED.format(device_id=entry.client_id)
        frame = encode_server(self._error_message(text))
        return [
            Evict(c.owner, frame, CLOSE_NORMAL, text)
            for c in self._registry.constellations_of(entry.client_id)
            if isinstance(c.owner, ServerSession)
        ]

    # --- frames -----------------------------------------------------------------------------

    def _error_message(self, text: str) -> ServerMessage:
        return ServerMessage(
            type=ServerMessageType.ERROR,
            status=TaskStatus.ERROR,
            error=text,
            timestamp=self._now(),
            response_id=self._new_id(),
        )

    def _error(self, text: str) -> Send:
        return Send(encode_server(self._error_message(text)))

    def _refuse(self, refusal: FrameRefusal, text: str) -> Send:
        """An error frame answering a registered client's frame, counted by its reason."""
        self._count_refusal(refusal)
        return self._error(text)

    def _count_refusal(self, refusal: FrameRefusal) -> None:
        if self._counts is not None and self.phase is ServerPhase.REGISTERED:
            self._counts.refused[refusal] += 1

    def _ack(self) -> Send:
        """A heartbeat/ok frame with a fresh response_id: both confirmation and heartbeat ack."""
        return Send(_HEARTBEAT_ACK.fill(self._now(), self._new_id()))
