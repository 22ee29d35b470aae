"""The states of a device's registration machine, declared with everything they carry.

``DeviceStatus`` names them (UFO's strings kept verbatim, ``disconnected`` … ``failed``, so
profiles serialise the way Galaxy users expect; ``telemetry`` and ``backoff`` are stellate's
additions, because every phase of the registration flow, and the wait between retries, must be
a state one can see and test). ``STATE_SPECS`` declares each state's phase, tags (the groups
below), deadline, and what entering or leaving it means (``Meaning``: entering ``failed`` is
giving up, entering ``backoff`` backing off, leaving ``busy`` interrupts the task); the rows
that move between them are in ``table.py``. Code that needs a group of states uses the sets
here, never a list of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

import attrs

from .meaning import Meaning


class DeviceStatus(StrEnum):
    DISCONNECTED = "disconnected"  # phase 1: configured, not yet connected
    CONNECTING = "connecting"  # phase 2: WebSocket handshake under way
    CONNECTED = "connected"  # phase 2 done: socket open, REGISTER about to go out
    REGISTERING = "registering"  # phase 3: REGISTER sent, awaiting the server's answer
    TELEMETRY = "telemetry"  # phase 4: device_info_request sent, awaiting system info
    IDLE = "idle"  # phase 5: activated, task-ready
    BUSY = "busy"  # running a task
    BACKOFF = "backoff"  # waiting (jittered) before the next connection attempt
    FAILED = "failed"  # gave up: retries exhausted or registration rejected (a fresh run
    # starts after retry_failed_after, or when the owner retries)

    @property
    def phase(self) -> int | None:
        """The registration flow's phase (1–5) a status belongs to; None outside the five
        phases (declared with the states below)."""
        return SPECS[self].phase


S = DeviceStatus  # short name for the declarations below


class Tag(StrEnum):
    """Groups of states. Code that needs a group uses the sets below, never its own list."""

    #: The device has an open socket.
    HOLDS_SOCKET = "holds_socket"
    #: A connection attempt is under way: its failure is a failed attempt.
    ATTEMPTING = "attempting"
    #: Waiting for the server: the deadline passing is a failed attempt.
    AWAITING_SERVER = "awaiting_server"
    #: Activated (task-ready or working): a loss here starts a recovery.
    ACTIVE = "active"
    #: The bring-up is over, one way or the other: what "wait until settled" waits for.
    SETTLED = "settled"
    #: Nothing happens until the owner acts (connect, retry, disconnect).
    AT_REST = "at_rest"
    #: Where a connect ends: task-ready, gave up, or stopped by the owner meanwhile.
    OUTCOME = "outcome"


class DeadlineKind(StrEnum):
    """What a state's deadline is for."""

    #: How long the state may last: the server is too slow when it passes (the table's
    #: ``timed_out`` rows decide what follows).
    LIMIT = "limit"
    #: A wait the device sits out before its next attempt (``ManagerEvent.retry_in``). A
    #: setting that is None (``retry_failed_after: null``) arms no deadline: the device waits
    #: for its owner.
    WAIT = "wait"


@attrs.frozen
class Deadline:
    """How long a state may last before ``timed_out`` fires, and which settings say so.

    ``settings`` name ``Timing`` fields. A fixed deadline is the value of its one setting (None:
    the state has no deadline in that configuration); a
    drawn one (``drawn=True``) is computed by the backoff rule from all of them (jittered
    exponential backoff, the rejoin schedule, a Retry-After floor, never past the recovery
    window).
    """

    settings: tuple[str, ...]
    drawn: bool = False
    kind: DeadlineKind = DeadlineKind.LIMIT

    @property
    def label(self) -> str:
        """The deadline as a diagram names it."""
        if not self.drawn:
            return self.settings[0]
        return "backoff drawn from " + ", ".join(self.settings)


CONNECT_DEADLINE: Final = Deadline(("connect_timeout",))
REGISTRATION_DEADLINE: Final = Deadline(("registration_timeout",))
TELEMETRY_DEADLINE: Final = Deadline(("telemetry_timeout",))
BACKOFF_DEADLINE: Final = Deadline(
    ("reconnect_delay", "backoff_cap", "jitter_floor", "rejoin_delay", "recovery_window"),
    drawn=True,
    kind=DeadlineKind.WAIT,
)
#: A failed device's way back: a fresh run after ``retry_failed_after`` (null: none).
RETRY_FAILED_DEADLINE: Final = Deadline(("retry_failed_after",), kind=DeadlineKind.WAIT)


@attrs.frozen
class StateSpec:
    """One state: its phase of the registration flow, its groups, its deadline, its entry,
    and what a row into or out of it means."""

    status: S
    tags: frozenset[Tag] = frozenset()
    #: The registration flow's phase (1–5); None outside the five phases.
    phase: int | None = None
    deadline: Deadline | None = None
    #: The lifecycle method run on entering the state (its effects).
    on_enter: str | None = None
    #: The lifecycle method run on leaving the state.
    on_exit: str | None = None
    #: What every row into this state means (entering ``failed`` is giving up).
    entering: Meaning | None = None
    #: What a row out of this state means unless the row itself says how (leaving ``busy``
    #: interrupts the task, except by ``task_finished``, which declares it finished).
    leaving: Meaning | None = None


def _tags(*tags: Tag) -> frozenset[Tag]:
    return frozenset(tags)


#: The states, in the order of the registration flow.
STATE_SPECS: Final[tuple[StateSpec, ...]] = (
    StateSpec(
        S.DISCONNECTED,
        _tags(Tag.AT_REST, Tag.OUTCOME),
        1,
        on_enter="_enter_disconnected",
        entering=Meaning.STOPPED,
    ),
    StateSpec(
        S.CONNECTING,
        _tags(Tag.ATTEMPTING, Tag.AWAITING_SERVER),
        2,
        CONNECT_DEADLINE,
        "_enter_connecting",
        entering=Meaning.ATTEMPT,
    ),
    StateSpec(S.CONNECTED, _tags(Tag.ATTEMPTING, Tag.HOLDS_SOCKET), 2, None, "_enter_connected"),
    StateSpec(
        S.REGISTERING,
        _tags(Tag.ATTEMPTING, Tag.AWAITING_SERVER, Tag.HOLDS_SOCKET),
        3,
        REGISTRATION_DEADLINE,
    ),
    StateSpec(
        S.TELEMETRY,
        _tags(Tag.ATTEMPTING, Tag.HOLDS_SOCKET),
        4,
        TELEMETRY_DEADLINE,
        "_enter_telemetry",
    ),
    StateSpec(S.IDLE, _tags(Tag.ACTIVE, Tag.HOLDS_SOCKET, Tag.SETTLED, Tag.OUTCOME), 5),
    StateSpec(
        S.BUSY,
        _tags(Tag.ACTIVE, Tag.HOLDS_SOCKET),
        on_exit="_leave_busy",
        leaving=Meaning.TASK_INTERRUPTED,
    ),
    StateSpec(
        S.BACKOFF, _tags(), None, BACKOFF_DEADLINE, "_enter_backoff", entering=Meaning.BACKS_OFF
    ),
    StateSpec(
        S.FAILED,
        _tags(Tag.SETTLED, Tag.AT_REST, Tag.OUTCOME),
        None,
        RETRY_FAILED_DEADLINE,
        "_enter_failed",
        entering=Meaning.GAVE_UP,
    ),
)

INITIAL: Final = S.DISCONNECTED.value

SPECS: Final[Mapping[S, StateSpec]] = {spec.status: spec for spec in STATE_SPECS}


def tagged(tag: Tag) -> frozenset[S]:
    """The states carrying ``tag``."""
    return frozenset(spec.status for spec in STATE_SPECS if tag in spec.tags)


HOLDS_SOCKET: Final = tagged(Tag.HOLDS_SOCKET)
ATTEMPTING: Final = tagged(Tag.ATTEMPTING)
AWAITING_SERVER: Final = tagged(Tag.AWAITING_SERVER)
ACTIVE: Final = tagged(Tag.ACTIVE)
SETTLED: Final = tagged(Tag.SETTLED)
AT_REST: Final = tagged(Tag.AT_REST)
OUTCOMES: Final = tagged(Tag.OUTCOME)


#: States as ``transitions`` declares them.
def machine_states(specs: tuple[StateSpec, ...]) -> list[dict[str, Any]]:
    """States as ``transitions`` takes them: name and entry/exit callbacks."""
    declared = []
    for spec in specs:
        state: dict[str, Any] = {"name": spec.status.value}
        if spec.on_enter:
            state["on_enter"] = spec.on_enter
        if spec.on_exit:
            state["on_exit"] = spec.on_exit
        declared.append(state)
    return declared


#: The states with what a diagram shows of them: name, and the deadline's label if any.
STATES: Final[list[dict[str, Any]]] = [
    {"name": spec.status.value, **({"deadline": spec.deadline.label} if spec.deadline else {})}
    for spec in STATE_SPECS
]
