"""THE transition table of a device's registration lifecycle — the only one.

Rules, read top to bottom (h11 style):

* Phases are states: ``disconnected`` (1, configured) → ``connecting`` → ``connected`` (2) →
  ``registering`` (3) → ``telemetry`` (4) → ``idle`` (5, task-ready).
* Every connection attempt enters ``connecting`` and counts one attempt; the owner's
  ``connect`` (from ``disconnected``) and ``retry`` (from ``failed``) start the count over.
* A loss after activation (``idle``/``busy``: dropped socket, expired lease) backs off and
  reconnects; attempts were reset on activation, so it always has a retry left.
* A failed attempt, a dropped socket or a silent peer (``connection_failed``, or ``timed_out``
  while connecting/registering) goes to ``backoff`` while the guard ``retries_left`` holds
  (attempts < max_retries; ``max_retries=None`` retries forever), else to ``failed``.
* A registration answer goes on to ``telemetry`` if the guard ``accepted`` holds, else to
  ``failed`` — a rejection is final, no retry.
* Telemetry never fails the registration: an answer, a "not found" answer (None) or a timeout
  all lead to ``idle`` (graceful degradation).
* ``backoff`` ends with its own timeout (the jittered delay) and connects again.
* ``failed`` is left only by an explicit ``retry`` (attempts start over) or ``disconnect``.
* ``disconnect`` is the owner's shutdown, legal from every state but ``disconnected``.

Timeouts are events: the runner arms ``DeviceLifecycle.timeout`` on entering a state and feeds
``timed_out`` when it passes. The runner, ``paths()``, the diagrams and the coverage report all
read the declarations below; nothing else decides a status.
"""

from __future__ import annotations

from typing import Any, Final

from .status import DeviceStatus as S
from .trigger import Trigger as T

INITIAL: Final = S.DISCONNECTED.value

#: States, with the callbacks the lifecycle runs on entering them.
STATES: Final[list[dict[str, Any]]] = [
    {"name": S.DISCONNECTED.value, "on_enter": "_enter_disconnected"},
    {"name": S.CONNECTING.value, "on_enter": "_enter_connecting"},
    {"name": S.CONNECTED.value, "on_enter": "_enter_connected"},
    {"name": S.REGISTERING.value, "on_enter": "_enter_registering"},
    {"name": S.TELEMETRY.value, "on_enter": "_enter_telemetry"},
    {"name": S.IDLE.value},
    {"name": S.BUSY.value},
    {"name": S.BACKOFF.value, "on_enter": "_enter_backoff"},
    {"name": S.FAILED.value, "on_enter": "_enter_failed"},
]

#: Phases in which the attempt counter is live: a failure here consumes a retry.
_ATTEMPTING = [S.CONNECTING, S.CONNECTED, S.REGISTERING, S.TELEMETRY]
#: Activated states: attempts were reset to 0, so a loss here always backs off first.
_ACTIVE = [S.IDLE, S.BUSY]
_AWAITING = [S.CONNECTING, S.REGISTERING]


def _v(*states: S) -> list[str]:
    return [s.value for s in states]


#: The transitions, as ``transitions`` declarations. Order matters where one trigger has
#: guarded alternatives: the first whose guards hold wins.
TRANSITIONS: Final[list[dict[str, Any]]] = [
    # Phase 2: connection
    {
        "trigger": T.CONNECT.value,
        "source": _v(S.DISCONNECTED),
        "dest": S.CONNECTING.value,
        "before": "_reset_attempts",  # an owner's (re)connect is a fresh run of max_retries
    },
    {"trigger": T.CONNECTION_OPENED.value, "source": _v(S.CONNECTING), "dest": S.CONNECTED.value},
    {
        "trigger": T.CONNECTION_FAILED.value,
        "source": _v(*_ATTEMPTING),
        "dest": S.BACKOFF.value,
        "conditions": "retries_left",
    },
    {
        "trigger": T.CONNECTION_FAILED.value,
        "source": _v(*_ATTEMPTING),
        "dest": S.FAILED.value,
        "unless": "retries_left",
    },
    # Loss after activation (dropped socket, expired heartbeat lease): reconnect via backoff.
    {"trigger": T.CONNECTION_FAILED.value, "source": _v(*_ACTIVE), "dest": S.BACKOFF.value},
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(*_AWAITING),
        "dest": S.BACKOFF.value,
        "conditions": "retries_left",
    },
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(*_AWAITING),
        "dest": S.FAILED.value,
        "unless": "retries_left",
    },
    {"trigger": T.TIMED_OUT.value, "source": _v(S.BACKOFF), "dest": S.CONNECTING.value},
    # Phase 3: AIP registration
    {"trigger": T.REGISTER_SENT.value, "source": _v(S.CONNECTED), "dest": S.REGISTERING.value},
    {
        "trigger": T.REGISTRATION_ANSWERED.value,
        "source": _v(S.REGISTERING),
        "dest": S.TELEMETRY.value,
        "conditions": "accepted",
    },
    {
        "trigger": T.REGISTRATION_ANSWERED.value,
        "source": _v(S.REGISTERING),
        "dest": S.FAILED.value,
        "unless": "accepted",
        "before": "_record_rejection",
    },
    # Phase 4 → 5: telemetry, then activation (graceful on a missing answer or a timeout)
    {
        "trigger": T.TELEMETRY_RECEIVED.value,
        "source": _v(S.TELEMETRY),
        "dest": S.IDLE.value,
        "before": "_merge_telemetry",
        "after": "_activate",
    },
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(S.TELEMETRY),
        "dest": S.IDLE.value,
        "after": "_activate",
    },
    # Tasks
    {
        "trigger": T.TASK_ASSIGNED.value,
        "source": _v(S.IDLE),
        "dest": S.BUSY.value,
        "before": "_take_task",
    },
    {
        "trigger": T.TASK_FINISHED.value,
        "source": _v(S.BUSY),
        "dest": S.IDLE.value,
        "before": "_finish_task",
    },
    # Recovery and shutdown
    {
        "trigger": T.RETRY.value,
        "source": _v(S.FAILED),
        "dest": S.CONNECTING.value,
        "before": "_reset_attempts",
    },
    {
        "trigger": T.DISCONNECT.value,
        "source": _v(*(s for s in S if s is not S.DISCONNECTED)),
        "dest": S.DISCONNECTED.value,
    },
]

#: The triggers, in table order, without repeats.
TRIGGERS: Final[tuple[T, ...]] = tuple(dict.fromkeys(T(t["trigger"]) for t in TRANSITIONS))


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def rows() -> list[tuple[T, str, str, tuple[str, ...], tuple[str, ...]]]:
    """The table expanded to one row per (trigger, source, dest): what coverage counts.

    Each row is ``(trigger, source, dest, conditions, unless)``.
    """
    out = []
    for t in TRANSITIONS:
        for source in _names(t["source"]):
            out.append(
                (
                    T(t["trigger"]),
                    source,
                    t["dest"],
                    _names(t.get("conditions")),
                    _names(t.get("unless")),
                )
            )
    return out
