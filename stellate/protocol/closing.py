"""Closing a WebSocket: the codes stellate sends, and a reason a close frame can carry.

RFC 6455 gives a close frame's reason at most 123 bytes of UTF-8 (the frame's 125-byte payload
less the 2-byte code). Everything stellate puts there goes through :func:`close_reason`: the
peer logs it, so it is made safe first (hidden characters escaped, secret URL parameters and
userinfo redacted, as in our own logs) and then cut on a character boundary.
"""

from __future__ import annotations

from typing import Final

from ..text.escape import escape_text
from ..text.redact import redact_start

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "MAX_REASON_BYTES",
    "close_reason",
]

#: The purpose of the connection is fulfilled (a device released, a registration refused).
CLOSE_NORMAL: Final = 1000
#: The endpoint goes away (a manager stopping without waiting for its peers).
CLOSE_GOING_AWAY: Final = 1001
#: The peer broke the protocol (a frame it may not send).
CLOSE_PROTOCOL_ERROR: Final = 1002
#: Our own bug ended the connection.
CLOSE_INTERNAL_ERROR: Final = 1011
#: What a close frame's reason may hold, in UTF-8 bytes.
MAX_REASON_BYTES: Final = 123
#: Characters of a reason looked at (a peer's error text may be a megabyte long).
_SCANNED: Final = 2048


def close_reason(text: str) -> str:
    """``text`` as a close frame can carry it: escaped, redacted, at most 123 UTF-8 bytes."""
    # Only the start can fit; redacted before escaping, as the log filter does.
    safe = escape_text(redact_start(text, _SCANNED))
    data = safe.encode("utf-8")
    if len(data) <= MAX_REASON_BYTES:
        return safe
    return data[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")
