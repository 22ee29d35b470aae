"""The events a device's machine accepts, and the commands its owner gives.

Str-valued so a trigger still reads, logs, serialises and compares as its plain name
(``Trigger.CONNECT == "connect"``), and ``transitions`` (which keys events by string) takes it
as is. Which trigger leads where, and which trigger an owner's command fires in each state, is
the transition table's business (``table.py``: a row declares the commands it ``serves``).
A trigger that carries data is fired with an instance of its class (``event_data.py``, named
after each trigger below).
"""

from __future__ import annotations

from enum import StrEnum


class Trigger(StrEnum):
    #: The owner starts a run (attempts start over).
    CONNECT = "connect"
    #: The WebSocket handshake succeeded.
    CONNECTION_OPENED = "connection_opened"
    #: The socket could not be opened, broke, or was declared lost (``ConnectionFailed``).
    CONNECTION_FAILED = "connection_failed"
    #: The deadline of the current state passed.
    TIMED_OUT = "timed_out"
    #: The REGISTER frame went out.
    REGISTER_SENT = "register_sent"
    #: The server answered the REGISTER (``RegistrationAnswer``).
    REGISTRATION_ANSWERED = "registration_answered"
    #: The server answered the telemetry request (``TelemetryAnswer``).
    TELEMETRY_RECEIVED = "telemetry_received"
    #: The app gave the device a task (``TaskAssigned``).
    TASK_ASSIGNED = "task_assigned"
    #: The app's task on the device is over.
    TASK_FINISHED = "task_finished"
    #: The owner retries a FAILED device (attempts start over).
    RETRY = "retry"
    #: The owner stops the device.
    DISCONNECT = "disconnect"
    #: The server refused our API key (HTTP 401/403 at the handshake, or a policy close
    #: before registration; ``AuthRejected``).
    AUTH_REJECTED = "auth_rejected"
    #: A bug in our own code while driving the device (``InternalError``).
    INTERNAL_ERROR = "internal_error"
    #: The server sent a frame the protocol forbids (``ProtocolViolated``).
    PROTOCOL_VIOLATION = "protocol_violation"


class OwnerCommand(StrEnum):
    """What the device's owner (the manager, for its user) asks; the table's rows say which
    trigger serves it in each state, and a state no row serves it from has nothing to do."""

    #: Connect: a stopped device connects, a failed one retries, a backoff is cut short.
    CONNECT = "connect"
    #: Retry a failed device.
    RETRY = "retry"
    #: Stop the device.
    DISCONNECT = "disconnect"
