"""Effects: what the machine asks the I/O edge to do after a transition.

The machine never touches a socket, a clock or a sleep. Entering a state appends effects to a
buffer that ``DeviceLifecycle.fire`` hands back; the trio runner performs them and reports
their outcome as the next event. State deadlines are not effects: they are read from
``DeviceLifecycle.timeout`` after every transition (gen_statem's ``state_timeout``).
"""

from __future__ import annotations

import attrs

from ..protocol.closing import CLOSE_NORMAL


@attrs.frozen
class OpenConnection:
    """Open the device's WebSocket; report ``connection_opened`` or ``connection_failed``."""

    url: str


@attrs.frozen
class CloseConnection:
    """Close the socket if one is open (stops heartbeats with it), telling the peer why: the
    runner sends ``code`` and ``reason`` in the close frame (``protocol.closing.close_reason``
    makes the text fit and safe)."""

    reason: str
    #: The WebSocket close code: the row's declaration (``close`` in the table; 1000 unless
    #: the row says otherwise, e.g. 1002 for a protocol violation, 1011 for our own bug).
    code: int = CLOSE_NORMAL


@attrs.frozen
class SendRegister:
    """Send the AIP REGISTER frame, then report ``register_sent``."""


@attrs.frozen
class RequestTelemetry:
    """Send ``device_info_request``; report ``telemetry_received`` (system_info or None)."""


@attrs.frozen
class StartHeartbeat:
    """Start heartbeats and the liveness lease on the open socket."""


Effect = OpenConnection | CloseConnection | SendRegister | RequestTelemetry | StartHeartbeat
