"""Why a server said no: the kinds of refusal, and the texts that carry them on the wire.

AIP carries a refusal as free text in an ``error`` frame, in the reference server's words
(``"Target device 'D' is not connected"``), and a refused handshake as an HTTP status or a
close code. This module is the one place those texts are written and read: stellate's server
builds its error texts from the templates below, and the client side turns what it receives
into a ``RejectionKind`` with ``classify_text``/``classify_handshake``/``classify_close``. No
code outside ``stellate.protocol`` looks inside a server's error text; what a kind *means* for
a device (final, or worth another attempt) is a rule of the transition table.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

__all__ = [
    "ALREADY_REGISTERED",
    "AUTH_REJECTED",
    "INVALID_ID",
    "REPLACED",
    "TARGET_DISCONNECTED",
    "TARGET_NOT_CONNECTED",
    "RejectionKind",
    "classify_close",
    "classify_handshake",
    "classify_text",
    "explained",
]


class RejectionKind(StrEnum):
    """What a refusal says about the server and the device, as far as a client can tell."""

    #: Anything not listed below: the server will not take this registration as it is.
    FINAL = "final"
    #: The target device is not connected to the server (yet): its agent has not (re-)joined.
    TARGET_NOT_YET_KNOWN = "target_not_yet_known"
    #: The client id is still held by another connection (perhaps our own previous socket,
    #: whose close the server has not processed yet).
    ID_STILL_HELD = "id_still_held"
    #: The server refused our credentials (the API key) before any registration.
    AUTH = "auth"


#: The reference server's texts (kept verbatim: reference clients read them). Placeholders are
#: filled with ``str.format(device_id=..., client_id=...)``.
TARGET_NOT_CONNECTED: Final = "Target device '{device_id}' is not connected"
ALREADY_REGISTERED: Final = (
    "client_id '{client_id}' is already registered; duplicate registrations are not allowed"
)
TARGET_DISCONNECTED: Final = "Target device '{device_id}' disconnected"
REPLACED: Final = "connection replaced by a newer registration"
#: An id the id rule refuses (``stellate.protocol.ids``; ours, not the reference's): final.
#: Filled with ``role`` (device/constellation), the escaped ``client_id`` and the ``problem``.
INVALID_ID: Final = "invalid {role} id {client_id}: {problem}"
#: What a device's failure says when the handshake refused the key (ours, not the reference's).
AUTH_REJECTED: Final = "server rejected the API key"

#: What a constellation's refusal of kind ``ID_STILL_HELD`` most likely means when it is final
#: (the first attempt of a run: not our own previous socket), for its failure reason.
ID_HELD_HINT: Final = (
    "another manager may be using this task_name: give each manager its own manager.task_name"
)
_HINTS: Final = {RejectionKind.ID_STILL_HELD: ID_HELD_HINT}

#: HTTP statuses with which a server refuses a WebSocket upgrade for want of valid credentials.
AUTH_STATUSES: Final = frozenset({401, 403})
#: The close code a server uses to refuse a client on policy grounds (RFC 6455 §7.4.1).
CLOSE_POLICY_VIOLATION: Final = 1008


def _pattern(template: str) -> re.Pattern[str]:
    """A regex matching ``template`` with any text (quotes included) in its placeholders."""
    parts = re.split(r"\{(?:device_id|client_id)\}", template)
    return re.compile("(?s)" + "(.*)".join(re.escape(part) for part in parts))


_KINDS_BY_TEXT: Final = (
    (_pattern(TARGET_NOT_CONNECTED), RejectionKind.TARGET_NOT_YET_KNOWN),
    (_pattern(ALREADY_REGISTERED), RejectionKind.ID_STILL_HELD),
)


def classify_text(text: str) -> RejectionKind:
    """The kind of a registration refused with ``text`` (an ``error`` frame's ``error``)."""
    for pattern, kind in _KINDS_BY_TEXT:
        if pattern.fullmatch(text):
            return kind
    return RejectionKind.FINAL


def classify_handshake(status: int | None) -> RejectionKind | None:
    """The kind of a refused WebSocket upgrade, or None when it was no refusal of ours.

    401/403 refuse the credentials (final); any other status (404, 503, ...) or a failure with
    no HTTP answer at all is a connection problem, retried like any other.
    """
    return RejectionKind.AUTH if status in AUTH_STATUSES else None


def classify_close(code: int | None, *, registered: bool) -> RejectionKind | None:
    """The kind of a close received on an open socket, or None when it is a plain loss.

    A policy-violation close (1008) before the registration was answered, with no error frame
    before it, is how some servers refuse a key after accepting the upgrade. After
    registration, 1008 is a lease or protocol matter: a loss like any other.
    """
    if code == CLOSE_POLICY_VIOLATION and not registered:
        return RejectionKind.AUTH
    return None


def explained(reason: str, kind: RejectionKind) -> str:
    """A constellation's refusal ``reason`` with what its ``kind`` suggests to try, if anything."""
    hint = _HINTS.get(kind)
    return f"{reason} ({hint})" if hint else reason
