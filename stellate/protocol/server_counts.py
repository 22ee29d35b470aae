"""What the sessions of one agent server did, as plain counts.

A ``ServerSession`` given a :class:`ServerCounts` adds to it as it decides (a registration
accepted or refused, a heartbeat answered, a frame refused, a client gone): one integer
addition each, no I/O, no lock, nothing per frame beyond that. Whoever reports the figures
(``stellate.server.metrics`` for Prometheus) reads them when asked.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

import attrs

from .messages import ClientType
from .rejections import RejectionKind

__all__ = ["FrameRefusal", "ServerCounts"]


class FrameRefusal(StrEnum):
    """Why a registered client's frame was answered with an ``error`` frame (or a close)."""

    #: Not a valid AIP frame (JSON, types, nesting).
    INVALID = "invalid"
    #: A binary frame (AIP is text): the connection is closed with 1003.
    BINARY = "binary"
    #: Larger than the server's frame limit: closed with 1009 by the transport.
    TOO_BIG = "too_big"
    #: Names another ``client_id`` or ``client_type`` than the socket registered with.
    IDENTITY_MISMATCH = "identity_mismatch"
    #: Asks for what this client may not have (device info for a device, another target).
    NOT_PERMITTED = "not_permitted"
    #: A second register frame on a registered socket.
    ALREADY_REGISTERED = "already_registered"
    #: A frame type this server does not serve (tasks, commands).
    UNSUPPORTED = "unsupported"


@attrs.define
class ServerCounts:
    """Totals since the server started.

    Attributes:
        registered: registrations accepted, by client type.
        rejected: registrations refused, by the kind a client reads from the refusal
            (a socket that sent no register frame in time counts as ``final``).
        departed: registered clients gone (closed, lost, replaced, lease expired), by type.
        heartbeats: heartbeats answered.
        refused: frames of registered clients refused, by reason.
    """

    registered: Counter[ClientType] = attrs.Factory(Counter)
    rejected: Counter[RejectionKind] = attrs.Factory(Counter)
    departed: Counter[ClientType] = attrs.Factory(Counter)
    heartbeats: int = 0
    refused: Counter[FrameRefusal] = attrs.Factory(Counter)
