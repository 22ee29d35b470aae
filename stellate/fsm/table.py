"""THE transition table of a device's registration lifecycle — the only one.

Everything that decides a device's status is declared in this module: the states (with their
phase, their tags and their deadline), the rows, the names of the guards that choose between
rows, and what each row means (``Meaning``). ``DeviceLifecycle`` (``lifecycle.py``) implements
the guards and callbacks the rows name; ``checks.py`` verifies the table when the machine is
built; the runner, ``paths()``, the diagrams, the coverage report and every watcher (events,
display, stats, the fleet page, the test harness) read what is declared here. Nothing else
decides a status, lists a group of states, knows a deadline or decodes what a row means.

Rules, read top to bottom (h11 style):

* Phases are states: ``disconnected`` (1, configured) → ``connecting`` → ``connected`` (2) →
  ``registering`` (3) → ``telemetry`` (4) → ``idle`` (5, task-ready).
* Every connection attempt enters ``connecting`` and counts one attempt
  (``connection_attempts``); reaching ``idle`` resets the count to 0. The owner's ``connect``
  (from ``disconnected``) and ``retry`` (from ``failed``) start a fresh run: attempts, backoff
  and recovery start over.
* A failed attempt (``connection_failed``, or ``timed_out`` while connecting or registering)
  backs off while the guard ``retries_left`` holds (attempts < max_retries; ``None`` retries
  forever), else the device is ``failed``.
* Recovery window. A loss after activation (``idle``/``busy``: dropped socket, expired lease,
  the server's error) starts a recovery: while ``recovering`` (a recovery window is
  configured, ``Timing.recovery_window`` > 0), attempts do not spend ``max_retries``; the
  device backs off and reconnects while ``window_open``, and is ``failed`` once the window has
  passed (during an attempt, or while backing off: the backoff never waits past the window's
  end). A window of 0 gives the reference's rule: reconnects spend ``max_retries``.
* Flapping. A loss of a connection that stayed up at least ``Timing.stability_window``
  (``stable``) starts the backoff over at ``reconnect_delay``; a loss of a shorter-lived one
  is a flap and the backoff keeps climbing (to ``backoff_cap``), as after a failed attempt.
* A registration answer goes on to ``telemetry`` if ``accepted``. A refusal is final
  (``failed``, no retry) — except a ``transient_rejection``: the server does not know the
  target yet or still holds our id, once this run has met a server in flux (an earlier attempt
  failed, the device lost its activated connection, or it was moved here from another manager:
  ``fsm/resume.py``). That answer is a consequence of the
  trouble being recovered from: the device backs off, bounded like any failed attempt
  (``retries_left``, or the recovery window). While recovering, the wait is short, jittered
  and does not climb (``Timing.rejoin_delay``): the server is up, only the device agent has
  not re-joined yet. Otherwise it climbs like any failed attempt's (flat waits would spend
  ``max_retries`` in seconds).
* ``auth_rejected`` (the server refused our API key: HTTP 401/403 at the handshake, or a
  policy close before registration) is final at once.
* Telemetry never fails the registration: an answer, a "not found" answer (None) or a timeout
  all lead to ``idle`` (graceful degradation). An answer that comes after the deadline is
  ignored (an internal row: no state change, nobody told).
* ``protocol_violation`` (the server sent a frame the protocol forbids) fails the attempt while
  the registration is not confirmed (``connected``, ``registering``: the same four outcomes as
  any failed attempt); once it is, the frame is logged and ignored (internal rows from
  ``telemetry``, ``idle`` and ``busy``).
* ``backoff`` ends with its own deadline (the jittered delay) and connects again; the owner's
  ``connect`` cuts the wait short (same run).
* ``idle`` ⇄ ``busy``: the app marks a device busy with a task and idle again
  (``task_assigned`` / ``task_finished``); a loss while busy ends the task. A device its owner
  is ``draining`` (disconnecting once its task is over) takes no new task.
* ``failed`` is left by the owner's ``retry`` (a fresh run) or ``disconnect``, and by its own
  deadline: ``retry_failed_after`` seconds after giving up, the device starts a fresh run as a
  retry would (while ``auto_retry``: ``Timing.retry_failed_after`` is set; null arms no
  deadline and the device waits for its owner, the registration flow's "manual
  intervention"). Every way into ``failed`` has this way back, so a long-running manager
  strands no device.
* The owner's commands (``OwnerCommand``) fire the trigger of the row that ``serves`` them
  from the current state: ``connect`` connects a stopped device, retries a failed one and cuts
  a backoff short; elsewhere it has nothing to do. ``checks.py`` verifies that a command is
  served by at most one trigger per state.
* ``disconnect`` is the owner's shutdown, legal from every state but ``disconnected``.
* ``internal_error``: a bug in our own code while driving the device (an exception in its task)
  puts it in ``failed`` from any state, with the error as its reason; the rest of the fleet
  runs on.

Deadlines are events (gen_statem's ``state_timeout``): a state declares which ``Timing``
setting bounds it, the lifecycle arms ``DeviceLifecycle.timeout`` on entering it, and the
runner feeds ``timed_out`` when it passes.

Closing. A row that ends the socket's life closes it with code 1000 (normal) unless it declares
another (``"close"``): 1002 for a protocol violation, 1011 for our own bug; the close frame's
text is the reason the device is left with (``CloseConnection``).

Meanings. A row means what it declares (``"meaning"``: ready, lost, wait over...), plus what its
states declare: entering ``failed`` is giving up, entering ``connecting`` an attempt, entering
``disconnected`` the owner's stop, entering ``backoff`` backing off; leaving ``busy``
interrupts the task unless the row declares how it ended (``task_finished``). ``rows()``
carries the result, computed once per row; rows that differ only by their guards mean the same
(``checks.py`` verifies it), so a fired step's meaning is known from its trigger, source and
destination.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ..protocol.closing import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR
from .meaning import TASK_OVER
from .meaning import Meaning as M
from .states import (
    ACTIVE,
    ATTEMPTING,
    AWAITING_SERVER,
    SPECS,
    STATE_SPECS,
)
from .states import DeviceStatus as S
from .trigger import OwnerCommand as C
from .trigger import Trigger as T


def _v(states: frozenset[S] | S, *more: S) -> list[str]:
    """``transitions`` source names, in the order of STATE_SPECS (stable diagrams)."""
    wanted = ({states} if isinstance(states, S) else set(states)) | set(more)
    return [spec.status.value for spec in STATE_SPECS if spec.status in wanted]


_ALL = frozenset(S)

# Guard names (methods of DeviceLifecycle).
RETRIES_LEFT = "retries_left"
ACCEPTED = "accepted"
RECOVERING = "recovering"
WINDOW_OPEN = "window_open"
TRANSIENT = "transient_rejection"
STABLE = "stable"
AUTO_RETRY = "auto_retry"
DRAINING = "draining"


def _attempt_failed(
    trigger: T,
    sources: frozenset[S],
    *,
    recovering_wait: str = "_count_recovery_failure",
    also_if: tuple[str, ...] = (),
    also_unless: tuple[str, ...] = (),
    close: int | None = None,
) -> list[dict[str, Any]]:
    """A failed attempt's four outcomes; exactly one holds at any time.

    Recovering from a loss: back off while the window is open, else failed (the window is
    named in the reason). Otherwise: back off while retries are left, else failed. The wait
    climbs: from ``reconnect_delay`` (``_count_failure``), or while recovering from the
    shorter recovery step (``_count_recovery_failure``: the server was just there, so a
    refused attempt is most likely its restart), except where ``recovering_wait`` says
    otherwise (``_await_rejoin``: short and flat, for a target that has not re-joined yet).
    """
    src = _v(sources)

    def row(
        dest: S, conditions: tuple[str, ...], unless: tuple[str, ...], before: str | None
    ) -> dict[str, Any]:
        declared: dict[str, Any] = {"trigger": trigger.value, "source": src, "dest": dest.value}
        if conditions or also_if:
            declared["conditions"] = [*also_if, *conditions]
        if unless or also_unless:
            declared["unless"] = [*also_unless, *unless]
        if before:
            declared["before"] = before
        if close is not None:
            declared["close"] = close
        return declared

    return [
        row(S.BACKOFF, (RECOVERING, WINDOW_OPEN), (), recovering_wait),
        row(S.FAILED, (RECOVERING,), (WINDOW_OPEN,), "_record_window_passed"),
        row(S.BACKOFF, (RETRIES_LEFT,), (RECOVERING,), "_count_failure"),
        row(S.FAILED, (), (RECOVERING, RETRIES_LEFT), None),
    ]


#: The transitions, as ``transitions`` declarations. Where one trigger has several rows from a
#: state, their guards exclude each other (``checks.py`` verifies it): order never matters.
TRANSITIONS: Final[list[dict[str, Any]]] = [
    # Phase 2: connection. The owner's connect starts a fresh run; from backoff it only cuts
    # the wait short.
    {
        "trigger": T.CONNECT.value,
        "source": _v(S.DISCONNECTED),
        "dest": S.CONNECTING.value,
        "before": "_start_run",
        "meaning": [M.RUN_STARTED],
        "serves": [C.CONNECT],
    },
    {
        "trigger": T.CONNECT.value,
        "source": _v(S.BACKOFF),
        "dest": S.CONNECTING.value,
        "serves": [C.CONNECT],
    },
    {"trigger": T.CONNECTION_OPENED.value, "source": _v(S.CONNECTING), "dest": S.CONNECTED.value},
    # A failed attempt: refused, dropped, or the server's deadline passed.
    *_attempt_failed(T.CONNECTION_FAILED, ATTEMPTING),
    *_attempt_failed(T.TIMED_OUT, AWAITING_SERVER),
    # The API key refused: final at once.
    {
        "trigger": T.AUTH_REJECTED.value,
        "source": _v(S.CONNECTING, S.CONNECTED, S.REGISTERING),
        "dest": S.FAILED.value,
        "before": "_record_auth_rejection",
    },
    # Backoff: its deadline passed; reconnect (in a recovery, only while the window is open).
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(S.BACKOFF),
        "dest": S.CONNECTING.value,
        "conditions": [RECOVERING, WINDOW_OPEN],
        "meaning": [M.WAIT_OVER],
    },
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(S.BACKOFF),
        "dest": S.FAILED.value,
        "conditions": [RECOVERING],
        "unless": [WINDOW_OPEN],
        "before": "_record_window_passed",
    },
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(S.BACKOFF),
        "dest": S.CONNECTING.value,
        "unless": [RECOVERING],
        "meaning": [M.WAIT_OVER],
    },
    # Phase 3: AIP registration. A refusal is final unless it is transient (see the rules).
    {"trigger": T.REGISTER_SENT.value, "source": _v(S.CONNECTED), "dest": S.REGISTERING.value},
    {
        "trigger": T.REGISTRATION_ANSWERED.value,
        "source": _v(S.REGISTERING),
        "dest": S.TELEMETRY.value,
        "conditions": ACCEPTED,
    },
    {
        "trigger": T.REGISTRATION_ANSWERED.value,
        "source": _v(S.REGISTERING),
        "dest": S.FAILED.value,
        "unless": [ACCEPTED, TRANSIENT],
        "before": "_record_rejection",
    },
    *_attempt_failed(
        T.REGISTRATION_ANSWERED,
        frozenset({S.REGISTERING}),
        recovering_wait="_await_rejoin",
        also_if=(TRANSIENT,),
        also_unless=(ACCEPTED,),
    ),
    # A frame the protocol forbids spoils an attempt not yet registered; later, it is ignored.
    *_attempt_failed(
        T.PROTOCOL_VIOLATION, frozenset({S.CONNECTED, S.REGISTERING}), close=CLOSE_PROTOCOL_ERROR
    ),
    {"trigger": T.PROTOCOL_VIOLATION.value, "source": _v(ACTIVE, S.TELEMETRY), "dest": None},
    # Phase 4 → 5: telemetry, then activation (graceful on a missing answer or a timeout).
    {
        "trigger": T.TELEMETRY_RECEIVED.value,
        "source": _v(S.TELEMETRY),
        "dest": S.IDLE.value,
        "before": "_merge_telemetry",
        "after": "_activate",
        "meaning": [M.READY],
    },
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(S.TELEMETRY),
        "dest": S.IDLE.value,
        "after": "_activate",
        "meaning": [M.READY, M.NO_TELEMETRY],
    },
    # The answer after its deadline: the device is already active without it.
    {"trigger": T.TELEMETRY_RECEIVED.value, "source": _v(ACTIVE), "dest": None},
    # Loss after activation: a recovery begins. A connection that stayed up for the stability
    # window starts the backoff over; a shorter one is a flap and the backoff keeps climbing.
    {
        "trigger": T.CONNECTION_FAILED.value,
        "source": _v(ACTIVE),
        "dest": S.BACKOFF.value,
        "conditions": STABLE,
        "before": "_lose_stable",
        "meaning": [M.LOST],
    },
    {
        "trigger": T.CONNECTION_FAILED.value,
        "source": _v(ACTIVE),
        "dest": S.BACKOFF.value,
        "unless": STABLE,
        "before": "_lose_flapping",
        "meaning": [M.LOST],
    },
    # Tasks: the app marks an activated device busy, and idle again.
    {
        "trigger": T.TASK_ASSIGNED.value,
        "source": _v(S.IDLE),
        "dest": S.BUSY.value,
        "unless": DRAINING,
        "before": "_take_task",
        "meaning": [M.TASK_STARTED],
    },
    {
        "trigger": T.TASK_FINISHED.value,
        "source": _v(S.BUSY),
        "dest": S.IDLE.value,
        "meaning": [M.TASK_FINISHED],
    },
    # The owner: retry a failed device (a fresh run), or stop any device.
    {
        "trigger": T.RETRY.value,
        "source": _v(S.FAILED),
        "dest": S.CONNECTING.value,
        "before": "_start_run",
        "meaning": [M.RUN_STARTED],
        "serves": [C.RETRY, C.CONNECT],
    },
    # Failed: its own deadline (retry_failed_after) starts a fresh run, as a retry would.
    {
        "trigger": T.TIMED_OUT.value,
        "source": _v(S.FAILED),
        "dest": S.CONNECTING.value,
        "conditions": AUTO_RETRY,
        "before": "_start_run",
        "meaning": [M.RUN_STARTED, M.WAIT_OVER],
    },
    {
        "trigger": T.DISCONNECT.value,
        "source": _v(_ALL - {S.DISCONNECTED}),
        "dest": S.DISCONNECTED.value,
        "serves": [C.DISCONNECT],
    },
    # Our own bug while driving the device: contained in this device, which fails with it.
    {
        "trigger": T.INTERNAL_ERROR.value,
        "source": _v(_ALL - {S.FAILED}),
        "dest": S.FAILED.value,
        "before": "_record_internal_error",
        "close": CLOSE_INTERNAL_ERROR,
    },
]

#: The triggers, in table order, without repeats.
TRIGGERS: Final[tuple[T, ...]] = tuple(dict.fromkeys(T(t["trigger"]) for t in TRANSITIONS))

#: The keys of a declaration that ``transitions`` reads; the others are stellate's (meanings).
MACHINE_KEYS: Final = (
    "trigger",
    "source",
    "dest",
    "conditions",
    "unless",
    "before",
    "after",
    "prepare",
)


def names(value: Any) -> tuple[str, ...]:
    """A declaration's value (None, one name, or several) as a tuple of names."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def guard_label(conditions: Iterable[str], unless: Iterable[str]) -> str:
    """``a & !b`` for guards ``a`` and ``unless b``; empty without guards."""
    return " & ".join([*conditions, *(f"!{name}" for name in unless)])


@attrs.frozen(cache_hash=True)
class Row:
    """One row of the table: a trigger from one state, under its guards, and what it means.

    ``internal`` rows (declared with ``dest: None``) change nothing: ``dest`` is their source,
    no state is left or entered, and no watcher is told (``Meaning.IGNORED``).
    """

    trigger: T
    source: S
    dest: S
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    meanings: frozenset[M] = frozenset()
    internal: bool = False
    #: The owner's commands this row serves (``connect`` on a failed device fires ``retry``).
    serves: frozenset[C] = frozenset()
    #: The close code if this row ends the socket's life (1000 unless declared).
    close_code: int = CLOSE_NORMAL

    @property
    def guard(self) -> str:
        """The guards as diagrams write them (``retries_left & !recovering``; empty: none)."""
        return guard_label(self.conditions, self.unless)

    @property
    def step(self) -> tuple[T, S, S]:
        """``(trigger, source, dest)``: what a fired row is seen as, its guards aside."""
        return (self.trigger, self.source, self.dest)

    def __str__(self) -> str:
        guard = self.guard
        return f"{self.trigger} {self.source} -> {self.dest}" + (f" [{guard}]" if guard else "")


def _meanings(declared: Iterable[M], source: S, dest: S | None) -> frozenset[M]:
    """What a row means: what it declares, and what its states declare (module docstring)."""
    out = set(declared)
    if dest is None:
        out.add(M.IGNORED)
        return frozenset(out)
    entering, leaving = SPECS[dest], SPECS[source]
    if entering.entering is not None:
        out.add(entering.entering)
    if leaving.leaving is not None and source is not dest and not out & TASK_OVER:
        out.add(leaving.leaving)
    return frozenset(out)


def expand(transitions: list[dict[str, Any]]) -> list[Row]:
    """Declarations expanded to one row per (trigger, source, dest, guards), with meanings."""
    out: list[Row] = []
    for t in transitions:
        declared = [M(m) for m in names(t.get("meaning"))]
        for source in names(t["source"]):
            dest = t["dest"]
            src = S(source)
            out.append(
                Row(
                    T(t["trigger"]),
                    src,
                    src if dest is None else S(dest),
                    names(t.get("conditions")),
                    names(t.get("unless")),
                    _meanings(declared, src, None if dest is None else S(dest)),
                    internal=dest is None,
                    serves=frozenset(C(c) for c in names(t.get("serves"))),
                    close_code=t.get("close", CLOSE_NORMAL),
                )
            )
    return out


_ROWS: Final[tuple[Row, ...]] = tuple(expand(TRANSITIONS))


def rows() -> list[Row]:
    """The table expanded to one row per (trigger, source, dest, guards), in table order:
    what coverage counts, the diagrams draw and watchers read meanings from."""
    return list(_ROWS)


_BY_STEP: Final[Mapping[tuple[T, S, S], Row]] = {row.step: row for row in _ROWS}


_SERVING: Final[Mapping[tuple[S, C], T]] = {
    (row.source, command): row.trigger for row in _ROWS for command in row.serves
}


def command_trigger(state: S, command: C) -> T | None:
    """The trigger that serves the owner's ``command`` in ``state`` (None: nothing to do)."""
    return _SERVING.get((state, command))


def row_of(trigger: T, source: S, dest: S) -> Row:
    """A row fired from ``source`` to ``dest`` by ``trigger`` (its guards aside: rows that
    differ only by guards mean the same).

    Raises:
        KeyError: no row of the table does that.
    """
    return _BY_STEP[(trigger, source, dest)]
