"""Faults a fake agent server can inject, one per connection attempt, and what each must cause.

A device's *schedule* is a sequence of faults: the n-th connection attempt the device makes
meets the n-th fault (then ``Healthy()`` for every attempt after the schedule runs out). Each
fault decides one whole connection, from the TCP-level connect to what happens after the
device is task-ready:

=========================== ==================================================================
fault                       the server ...
=========================== ==================================================================
``Refuse()``                refuses the connection
``Forbidden()``             refuses the WebSocket upgrade with HTTP 403 (wrong key: final)
``Busy(retry_after)``       refuses the upgrade with HTTP 503 and ``Retry-After`` (overloaded):
                            a connection failure whose next wait lasts at least ``retry_after``
``KeyRefusedAfterAccept()`` accepts the upgrade, then closes with 1008 at once (wrong key)
``KeyRefusedOnRegister()``  reads REGISTER, then closes with 1008 and no error frame (wrong key)
``HangConnect()``           never completes the connect (a black-holed address)
``Outage(seconds)``         is down for ``seconds``: refuses every attempt until then
``DropAfterAccept()``       accepts, then the link dies before REGISTER can go out
``NoRegistrationAnswer()``  reads REGISTER and never answers
``DropAfterRegister()``     reads REGISTER and drops the socket
``Reject(reason)``          answers REGISTER with an error frame and closes (reference texts:
                            ``Reject.target_not_connected(d)``, ``Reject.duplicate(client_id)``)
``GarbageOnRegister(f)``    answers REGISTER with frame ``f``, which is no answer at all
``DropDuringTelemetry()``   confirms, then drops the socket when telemetry is requested
``Healthy(...)``            confirms and answers telemetry; ``telemetry=`` and ``idle=`` vary
                            the rest (below)
=========================== ==================================================================

``Healthy(system_info, register_delay=, telemetry=, idle=)`` reaches IDLE unless
``register_delay`` exceeds the manager's registration timeout. ``telemetry`` is one of
``Answer(delay)`` (the default; late if ``delay`` exceeds the telemetry timeout),
``TelemetryNotFound()``, ``NoTelemetryAnswer()`` or ``GarbageTelemetry(frame)``; ``idle`` is
one of ``Stay()`` (the default: acknowledge heartbeats forever), ``SilentAfterIdle()`` (stop
answering, so the device's lease expires), ``DropAfterIdle(after_heartbeats, notice)`` or
``GarbageAfterIdle(frame, after_heartbeats)``. For brevity a telemetry or idle behaviour may
stand alone in a schedule: ``SilentAfterIdle()`` means ``Healthy(idle=SilentAfterIdle())``.

:func:`expected_path` is the oracle: it derives, from the schedule and the rules of the
README (not from the transition table), the exact path a correct manager takes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..fsm.paths import Path, Step
from ..fsm.states import DeviceStatus
from ..fsm.trigger import Trigger
from ..protocol import rejections
from ..timing import RetryPolicy
from . import reference

__all__ = [
    "DEFAULT_SYSTEM_INFO",
    "FAULT_KINDS",
    "AfterIdle",
    "Answer",
    "AttemptFault",
    "Busy",
    "DropAfterAccept",
    "DropAfterIdle",
    "DropAfterRegister",
    "DropDuringTelemetry",
    "Fault",
    "Forbidden",
    "GarbageAfterIdle",
    "GarbageOnRegister",
    "GarbageTelemetry",
    "HangConnect",
    "Healthy",
    "KeyRefusedAfterAccept",
    "KeyRefusedOnRegister",
    "NoRegistrationAnswer",
    "NoTelemetryAnswer",
    "Outage",
    "Refuse",
    "Reject",
    "SilentAfterIdle",
    "Stay",
    "Telemetry",
    "TelemetryNotFound",
    "describe_schedule",
    "expected_path",
    "fault_kinds",
    "normalize",
]

Frame = str | bytes

#: What ``Healthy()`` reports when no ``system_info`` is given (UFO's keys).
DEFAULT_SYSTEM_INFO: Mapping[str, Any] = {
    "device_id": "fake-device",
    "platform": "linux",
    "os_version": "6.1",
    "cpu_count": 8,
    "memory_total_gb": 16.0,
    "hostname": "fake-host",
    "ip_address": "10.0.0.2",
    "supported_features": ["gui", "cli"],
    "platform_type": "computer",
    "schema_version": "1.0",
}


# -- connection and registration faults: the attempt ends before IDLE ---------------------------


@attrs.frozen
class Refuse:
    """The connection is refused (nothing listens there)."""


@attrs.frozen
class Busy:
    """The WebSocket upgrade is refused with HTTP 503 and ``Retry-After: retry_after``: the
    server is overloaded. A connection failure like ``Refuse``, whose next wait lasts at least
    ``retry_after`` seconds (and, under a recovery window, never past its end)."""

    retry_after: float = 5.0


@attrs.frozen
class Forbidden:
    """The WebSocket upgrade is refused with HTTP 403 (wrong key)."""


@attrs.frozen
class KeyRefusedAfterAccept:
    """The upgrade is accepted, then the socket is closed with 1008 before REGISTER can go out
    (how some servers refuse a key after the handshake): final, like a 403."""


@attrs.frozen
class KeyRefusedOnRegister:
    """REGISTER is read, then the socket is closed with 1008 and no error frame: final."""


@attrs.frozen
class HangConnect:
    """The connect never completes; the manager's connect timeout must end it."""


@attrs.frozen
class Outage:
    """The server is down for ``seconds`` from the first attempt that meets this entry.

    Every attempt in that window is refused; the first attempt after it meets the next entry of
    the schedule. How many attempts the window swallows depends on the backoff, so the fake
    server's log (``FakeAgentServer.applied``) says what each attempt actually met.
    """

    seconds: float = attrs.field(validator=attrs.validators.gt(0))


@attrs.frozen
class DropAfterAccept:
    """The socket is accepted and dies at once: sending REGISTER fails (code 1006)."""


@attrs.frozen
class NoRegistrationAnswer:
    """REGISTER is read and never answered; the registration timeout must end it."""


@attrs.frozen
class DropAfterRegister:
    """REGISTER is read, then the socket is dropped without a closing handshake."""


TARGET_NOT_CONNECTED = rejections.TARGET_NOT_CONNECTED
DUPLICATE_CLIENT_ID = rejections.ALREADY_REGISTERED


@attrs.frozen
class Reject:
    """REGISTER is answered with an error frame carrying ``reason``, then the socket closes.

    ``reason`` may contain ``{device_id}`` and ``{client_id}``; the fake server fills them in.
    Use the reference's texts through :meth:`target_not_connected` and :meth:`duplicate`.
    """

    reason: str = DUPLICATE_CLIENT_ID

    @classmethod
    def target_not_connected(cls) -> Reject:
        """The reference's answer when the target device is not connected."""
        return cls(TARGET_NOT_CONNECTED)

    @classmethod
    def duplicate(cls) -> Reject:
        """The reference's answer to a client_id that is already registered."""
        return cls(DUPLICATE_CLIENT_ID)

    @property
    def transient_while_recovering(self) -> bool:
        """True for the two reference texts: a manager recovering from trouble (an attempt
        that backed off, or a loss after IDLE) treats them as consequences of that trouble
        (a connection problem), not as a final rejection."""
        return reference.transient_refusal(self.text("{device_id}", "{client_id}"))

    def text(self, device_id: str, client_id: str) -> str:
        return self.reason.format(device_id=device_id, client_id=client_id)


@attrs.frozen
class GarbageOnRegister:
    """REGISTER is answered with ``frame``: not a confirmation, not a rejection (garbage)."""

    frame: Frame


@attrs.frozen
class DropDuringTelemetry:
    """Registration is confirmed; the socket drops when telemetry is requested."""


# -- telemetry behaviours of a healthy attempt ----------------------------------------------------


@attrs.frozen
class Answer:
    """Answer the telemetry request after ``delay`` seconds (late if past the timeout)."""

    delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))


@attrs.frozen
class TelemetryNotFound:
    """Answer the reference's "not found or no system info available" result."""


@attrs.frozen
class NoTelemetryAnswer:
    """Never answer the telemetry request; the telemetry timeout degrades gracefully."""


@attrs.frozen
class GarbageTelemetry:
    """Answer the telemetry request with ``frame``, which the manager must ignore."""

    frame: Frame


Telemetry = Answer | TelemetryNotFound | NoTelemetryAnswer | GarbageTelemetry


# -- behaviours after IDLE ------------------------------------------------------------------------


@attrs.frozen
class Stay:
    """Acknowledge every heartbeat: the device stays IDLE."""


@attrs.frozen
class SilentAfterIdle:
    """Stop answering once IDLE: heartbeats go unacknowledged until the lease expires."""


@attrs.frozen
class DropAfterIdle:
    """Drop the socket on the ``after_heartbeats``-th heartbeat (1 = the first).

    With ``notice``, first send the error frame the real server sends a constellation whose
    target left (``Target device 'D' disconnected``) and close with 1000; else drop (1006).
    """

    after_heartbeats: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    notice: bool = False


@attrs.frozen
class GarbageAfterIdle:
    """Send ``frame`` on the ``after_heartbeats``-th heartbeat, then go on acknowledging."""

    frame: Frame
    after_heartbeats: int = attrs.field(default=1, validator=attrs.validators.ge(1))


AfterIdle = Stay | SilentAfterIdle | DropAfterIdle | GarbageAfterIdle


def _freeze_info(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else dict(value)


@attrs.frozen
class Healthy:
    """Confirm the registration, answer telemetry, then behave as ``idle`` says.

    Args:
        system_info: what the device registered with (``None``: the server has none, and
            answers "not found").
        register_delay: seconds before the confirmation (past the registration timeout, the
            answer is late and the attempt times out).
        telemetry: how the telemetry request is answered.
        idle: what the server does once the device is IDLE.
    """

    system_info: Mapping[str, Any] | None = attrs.field(
        default=DEFAULT_SYSTEM_INFO, converter=_freeze_info, eq=False, repr=False
    )
    register_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    telemetry: Telemetry = attrs.field(factory=Answer)
    idle: AfterIdle = attrs.field(factory=Stay)
    # Compared and shown through a sorted tuple (dicts are unhashable).
    _info_key: tuple[tuple[str, str], ...] = attrs.field(init=False, repr=False)

    @_info_key.default
    def _make_info_key(self) -> tuple[tuple[str, str], ...]:
        if self.system_info is None:
            return (("<none>", ""),)
        return tuple(sorted((k, repr(v)) for k, v in self.system_info.items()))

    def __repr__(self) -> str:
        parts = []
        if self.system_info is None:
            parts.append("system_info=None")
        elif self.system_info != DEFAULT_SYSTEM_INFO:
            parts.append(f"system_info={dict(self.system_info)!r}")
        if self.register_delay:
            parts.append(f"register_delay={self.register_delay!r}")
        if self.telemetry != Answer():
            parts.append(f"telemetry={self.telemetry!r}")
        if self.idle != Stay():
            parts.append(f"idle={self.idle!r}")
        return f"Healthy({', '.join(parts)})"


AttemptFault = (
    Refuse
    | Busy
    | Forbidden
    | KeyRefusedAfterAccept
    | KeyRefusedOnRegister
    | HangConnect
    | Outage
    | DropAfterAccept
    | NoRegistrationAnswer
    | DropAfterRegister
    | Reject
    | GarbageOnRegister
    | DropDuringTelemetry
    | Healthy
)

#: Anything a schedule may hold: an attempt fault, or a telemetry/idle behaviour standing for
#: ``Healthy(telemetry=...)`` / ``Healthy(idle=...)``.
Fault = AttemptFault | Telemetry | AfterIdle

_TELEMETRY = (Answer, TelemetryNotFound, NoTelemetryAnswer, GarbageTelemetry)
_AFTER_IDLE = (Stay, SilentAfterIdle, DropAfterIdle, GarbageAfterIdle)


def normalize(fault: Fault) -> AttemptFault:
    """The attempt fault a schedule entry stands for (``SilentAfterIdle()`` → ``Healthy(...)``).

    Raises:
        TypeError: ``fault`` is not a fault.
    """
    if isinstance(fault, _TELEMETRY):
        return Healthy(telemetry=fault)
    if isinstance(fault, _AFTER_IDLE):
        return Healthy(idle=fault)
    if isinstance(fault, AttemptFault):  # the union above, said once
        return fault
    raise TypeError(f"not a fault: {fault!r}")


#: Every kind of fault :func:`fault_kinds` names: what a fleet or a path run reports having
#: used, and checks it used all of.
FAULT_KINDS: tuple[str, ...] = (
    "Refuse",
    "Busy",
    "Forbidden",
    "KeyRefusedAfterAccept",
    "KeyRefusedOnRegister",
    "HangConnect",
    "Outage",
    "DropAfterAccept",
    "NoRegistrationAnswer",
    "register answered late",
    "DropAfterRegister",
    "GarbageOnRegister",
    "Reject(target not connected)",
    "Reject(duplicate)",
    "Reject(other)",
    "DropDuringTelemetry",
    "telemetry answered",
    "telemetry answered: no system info",
    "telemetry answered late",
    "TelemetryNotFound",
    "NoTelemetryAnswer",
    "GarbageTelemetry",
    "Stay",
    "GarbageAfterIdle",
    "SilentAfterIdle",
    "DropAfterIdle",
    "DropAfterIdle(notice)",
)


def fault_kinds(fault: Fault, policy: RetryPolicy) -> tuple[str, ...]:
    """The kinds of :data:`FAULT_KINDS` one schedule entry exercises (a healthy attempt: how
    its registration, telemetry and idle phases go; late and on-time per ``policy``)."""
    fault = normalize(fault)
    if isinstance(fault, Reject):
        if fault.reason == TARGET_NOT_CONNECTED:
            return ("Reject(target not connected)",)
        return ("Reject(duplicate)",) if fault.reason == DUPLICATE_CLIENT_ID else ("Reject(other)",)
    if not isinstance(fault, Healthy):
        return (type(fault).__name__,)
    if fault.register_delay >= policy.registration_timeout:
        return ("register answered late",)
    telemetry, idle = fault.telemetry, fault.idle
    if isinstance(telemetry, Answer):
        if telemetry.delay >= policy.telemetry_timeout:
            first = "telemetry answered late"
        elif fault.system_info is None:
            first = "telemetry answered: no system info"
        else:
            first = "telemetry answered"
    else:
        first = type(telemetry).__name__
    second = type(idle).__name__
    if isinstance(idle, DropAfterIdle) and idle.notice:
        second = "DropAfterIdle(notice)"
    return (first, second)


def describe_schedule(schedule: Sequence[Fault]) -> str:
    """A compact one-line rendering, for failure messages."""
    return "[" + ", ".join(repr(normalize(f)) for f in schedule) + "]" if schedule else "[]"


# -- the oracle ------------------------------------------------------------------------------

_S = DeviceStatus
_OPENED = Step(Trigger.CONNECTION_OPENED, _S.CONNECTING.value, _S.CONNECTED.value)
_SENT = Step(Trigger.REGISTER_SENT, _S.CONNECTED.value, _S.REGISTERING.value)
_ACCEPTED = Step(Trigger.REGISTRATION_ANSWERED, _S.REGISTERING.value, _S.TELEMETRY.value)
_REJECTED = Step(Trigger.REGISTRATION_ANSWERED, _S.REGISTERING.value, _S.FAILED.value)
_RETRY = Step(Trigger.TIMED_OUT, _S.BACKOFF.value, _S.CONNECTING.value)
_OWNER_RETRY = Step(Trigger.RETRY, _S.FAILED.value, _S.CONNECTING.value)
_LOST = Step(Trigger.CONNECTION_FAILED, _S.IDLE.value, _S.BACKOFF.value)
_KEY_REFUSED = Step(Trigger.AUTH_REJECTED, _S.CONNECTING.value, _S.FAILED.value)


def _telemetry_step(fault: Healthy, policy: RetryPolicy) -> Step:
    telemetry = fault.telemetry
    answered = isinstance(telemetry, TelemetryNotFound) or (
        isinstance(telemetry, Answer) and telemetry.delay < policy.telemetry_timeout
    )
    trigger = Trigger.TELEMETRY_RECEIVED if answered else Trigger.TIMED_OUT
    return Step(trigger, _S.TELEMETRY.value, _S.IDLE.value)


def expected_path(
    schedule: Sequence[Fault],
    *,
    max_retries: int | None,
    policy: RetryPolicy,
    then: Fault | None = None,
    max_attempts: int = 10_000,
    times: Sequence[float] | None = None,
    retries: int = 0,
) -> Path:
    """The path a correct manager takes through ``schedule``, from ``connect`` to the end.

    Derived from the documented rules, independently of the transition table: a failed
    attempt backs off while attempts < ``max_retries`` and fails otherwise; a refused key
    (403, or a 1008 close before registration) is final at once; a rejection is final, except
    the reference's "not connected" and "already registered" texts once the device is
    recovering (an earlier attempt of this run backed off, or the device was IDLE and lost its
    server), which then back off like a failed attempt; telemetry never fails;
    reaching IDLE resets the attempts; a loss after IDLE backs off and reconnects. The path
    ends at FAILED, or at IDLE on an attempt that stays there.

    With a recovery window (``policy.recovery_window`` > 0), a loss after IDLE starts a
    recovery: until the device is IDLE again its failed attempts do not spend ``max_retries``;
    a failure, or the end of a wait, at a moment before ``loss + recovery_window`` backs off
    and reconnects, and at or after it the device is FAILED. Whether that moment came before
    the window's end is read from ``times``: when each step of the device's actual path
    happened (what must happen at that moment is this function's to say; ``FleetResult``
    checks the moments themselves: deadlines, backoff waits, the lease).

    ``Outage`` entries cannot be predicted from the schedule alone: pass the fault server's
    ``applied(device_id)`` log instead, where each refused attempt of an outage is a ``Refuse``.

    Args:
        schedule: the faults met by successive attempts.
        max_retries: the device's limit (``None``: retry forever).
        policy: the manager's timeouts (late answers are compared with them).
        then: what attempts after the schedule meet (default ``Healthy()``).
        max_attempts: give up predicting after this many attempts.
        times: when each step of the actual path happened (needed with a recovery window;
            a step the actual path did not take counts as after the window).
        retries: how many times the owner retries the device when it is FAILED: each retry
            starts a fresh run (attempts, backoff and recovery over) on the next entry of the
            schedule.

    Raises:
        ValueError: the schedule holds an ``Outage``, the path is longer than
            ``max_attempts`` attempts, or a recovery window is set without ``times``.
    """
    tail = normalize(then) if then is not None else Healthy()

    def end(path: tuple[Step, ...], index: int) -> Path:
        """``path`` ends the run; a FAILED end the owner retries goes on with a fresh run."""
        if retries <= 0 or path[-1].dest != _S.FAILED.value:
            return path
        rest = expected_path(
            schedule[index + 1 :],
            max_retries=max_retries,
            policy=policy,
            then=then,
            max_attempts=max_attempts,
            times=times[len(path) :] if times is not None else None,
            retries=retries - 1,
        )
        return (*path, _OWNER_RETRY, *rest[1:])

    window = policy.recovery_window
    if window > 0 and times is None:
        raise ValueError("a recovery window needs the times of the actual steps (times=)")
    steps: list[Step] = [Step(Trigger.CONNECT, _S.DISCONNECTED.value, _S.CONNECTING.value)]
    attempts = 1
    recovering = False  # in flux: an attempt of this run failed, or the server was lost
    lost_at: float | None = None  # the loss being recovered from, under a recovery window

    def window_open() -> bool:
        """Whether the step about to be taken happens before the recovery window's end."""
        assert lost_at is not None and times is not None
        now = times[len(steps)] if len(steps) < len(times) else math.inf
        return now < lost_at + window

    def reconnect() -> bool:
        """The wait ends: reconnect (True), or the recovery window has passed (FAILED)."""
        if lost_at is not None and not window_open():
            steps.append(_RETRY._replace(dest=_S.FAILED.value))
            return False
        steps.append(_RETRY)
        return True

    for index in range(max_attempts):
        fault = normalize(schedule[index]) if index < len(schedule) else tail
        if isinstance(fault, Outage):
            raise ValueError("an Outage cannot be predicted; use the server's applied log")
        failure: Step | None = None
        if isinstance(fault, Forbidden):  # a refused key is final at once
            return end((*steps, _KEY_REFUSED), index)
        if isinstance(fault, KeyRefusedAfterAccept):
            return end((*steps, _OPENED, _KEY_REFUSED._replace(source=_S.CONNECTED.value)), index)
        if isinstance(fault, KeyRefusedOnRegister):
            return end(
                (*steps, _OPENED, _SENT, _KEY_REFUSED._replace(source=_S.REGISTERING.value)), index
            )
        if isinstance(fault, Refuse | Busy):
            failure = Step(Trigger.CONNECTION_FAILED, _S.CONNECTING.value, "")
        elif isinstance(fault, HangConnect):
            failure = Step(Trigger.TIMED_OUT, _S.CONNECTING.value, "")
        elif isinstance(fault, DropAfterAccept):
            steps.append(_OPENED)
            failure = Step(Trigger.CONNECTION_FAILED, _S.CONNECTED.value, "")
        else:
            steps += [_OPENED, _SENT]
            late = isinstance(fault, Healthy) and (
                fault.register_delay >= policy.registration_timeout
            )
            if isinstance(fault, NoRegistrationAnswer) or late:
                failure = Step(Trigger.TIMED_OUT, _S.REGISTERING.value, "")
            elif isinstance(fault, DropAfterRegister):
                failure = Step(Trigger.CONNECTION_FAILED, _S.REGISTERING.value, "")
            elif isinstance(fault, GarbageOnRegister):  # a protocol violation: a failed attempt
                failure = Step(Trigger.PROTOCOL_VIOLATION, _S.REGISTERING.value, "")
            elif isinstance(fault, Reject):
                if recovering and fault.transient_while_recovering:
                    failure = Step(Trigger.REGISTRATION_ANSWERED, _S.REGISTERING.value, "")
                else:
                    steps.append(_REJECTED)
                    return end(tuple(steps), index)
            elif isinstance(fault, DropDuringTelemetry):
                steps.append(_ACCEPTED)
                failure = Step(Trigger.CONNECTION_FAILED, _S.TELEMETRY.value, "")
            else:
                assert isinstance(fault, Healthy)
                steps += [_ACCEPTED, _telemetry_step(fault, policy)]
                attempts, recovering, lost_at = 0, True, None
                if isinstance(fault.idle, Stay | GarbageAfterIdle):
                    return end(tuple(steps), index)
                steps.append(_LOST)
                if window > 0:
                    assert times is not None
                    lost_at = times[len(steps) - 1] if len(steps) <= len(times) else math.inf
                if not reconnect():
                    return end(tuple(steps), index)
                attempts = 1
                continue
        if lost_at is not None:  # recovering under a window: attempts are not counted
            go_on = window_open()
        else:
            go_on = max_retries is None or attempts < max_retries
        steps.append(failure._replace(dest=_S.BACKOFF.value if go_on else _S.FAILED.value))
        if not go_on or not reconnect():
            return end(tuple(steps), index)
        attempts += 1
        recovering = True
    raise ValueError(f"no end within {max_attempts} attempts")
