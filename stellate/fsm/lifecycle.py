"""DeviceLifecycle: one device's AgentProfile, driven by the shared transition table.

A ``transitions.Machine`` is shared by every device of an engine (one model per device, against
31–67 KiB for a machine each). The engine's machine keeps its models in an identity-keyed
registry and binds no per-model convenience methods (``connect()``, ``may_connect()``,
``is_status_idle()``): the lifecycle fires through the machine's events instead. Stock
``add_model`` checks a list (quadratic over a fleet) and binds ~30 partials per model; here
adding a model is a dict insert and ``set_state``, flat up to 10,000 devices (see
docs/performance.md).

Why transitions is pinned exactly (``transitions==0.9.3`` in pyproject.toml) — the one place
this is written: this module uses two things that are not transitions' public API.

1. ``Machine._can_trigger``: ``accepts`` asks whether an event would fire without firing it,
   guards included (the public ``may_<trigger>`` is the same call, bound per model, which
   ``_SharedMachine`` does not do).
2. The ``Machine.models`` attribute, which ``_SharedMachine`` replaces with an identity-keyed
   registry (a fleet registers in linear time).

Which row fired (for the coverage gate, and for what it means) is not read from transitions'
internals: each transition is built as a ``_TableTransition`` carrying its ``Row``, through the
extension point ``Machine.add_transition`` documents (extra keyword arguments of a declaration
go to the machine's ``transition_cls``).

A release may rename or retype either of them without notice. tests/fsm/test_fsm_pin.py fails
on any other version and holds each use to the behaviour relied on here, so an upgrade is a
decision made with these in view, not an accident of ``pip install``.

The lifecycle is that machine's model; its ``status`` is stored in the frozen profile, so the
only way a profile's status changes is a trigger fired here. Everything is synchronous and free
of I/O: ``fire`` returns the effects the trio edge must perform, and ``timeout`` the deadline of
the new state (as the table declares it). Guards read event data and the lifecycle's own data;
time comes from an injected monotonic clock (trio's in the manager, a fake one in tests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import attrs
from transitions import Event, Machine, MachineError, State, Transition

from ..errors import LocalError
from ..protocol.rejections import AUTH_REJECTED, RejectionKind, explained
from ..timing import RandomSource, Timing, default_random
from . import coverage as _coverage
from .checks import check_table
from .effects import (
    CloseConnection,
    Effect,
    OpenConnection,
    RequestTelemetry,
    SendRegister,
    StartHeartbeat,
)
from .event_data import (
    DATA_OF,
    AuthRejected,
    ConnectionFailed,
    EventData,
    RegistrationAnswer,
    TaskAssigned,
    TelemetryAnswer,
    data_problem,
)
from .meaning import Meaning
from .profile import AgentProfile, merge_system_info
from .states import (
    INITIAL,
    SPECS,
    STATE_SPECS,
    Deadline,
    DeadlineKind,
    DeviceStatus,
    machine_states,
)
from .table import MACHINE_KEYS, TRANSITIONS, TRIGGERS, Row, command_trigger, expand, row_of
from .trigger import OwnerCommand, Trigger

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]

#: Refusals that a run which met a server in flux may expect (the table's ``transient_rejection``).
TRANSIENT_KINDS = frozenset({RejectionKind.TARGET_NOT_YET_KNOWN, RejectionKind.ID_STILL_HELD})


class IllegalTransition(LocalError):
    """An event the current state does not accept. Nothing was changed."""

    def __init__(
        self,
        device_id: str,
        status: DeviceStatus,
        trigger: Trigger | str,
        why: str = "",
        *,
        message: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.status = status
        self.trigger = trigger
        detail = f" ({why})" if why else ""
        # Plain words (values, not enum reprs); ``message`` replaces them where the caller
        # knows what the user asked for (``set_device_idle`` on an idle device).
        super().__init__(
            message or f"device {device_id!r} is {status}: {trigger} is not accepted there{detail}"
        )


class InvalidEventData(IllegalTransition):
    """An event fired with the wrong data: a trigger that carries data fired without it, or a
    field of the wrong type. Nothing was changed."""


#: The classes ``fire`` takes as event data.
_DATA_CLASSES: tuple[type[EventData], ...] = tuple(DATA_OF.values())


@attrs.frozen
class TransitionRecord:
    """One fired row of the table, as observers and path tests see it."""

    device_id: str
    trigger: Trigger
    source: DeviceStatus
    dest: DeviceStatus
    #: True when this transition merged system info into the profile (phase 4 answered).
    telemetry_merged: bool = False
    #: The task this transition started (``task_assigned``) or ended (finished, or
    #: interrupted by a loss, a failure or a disconnect while busy).
    task_id: str | None = None
    #: The row that fired (the lifecycle passes it; found from trigger, source and dest
    #: otherwise). Raises KeyError if the table has no such row.
    row: Row = attrs.field(kw_only=True, eq=False, repr=False)

    @row.default
    def _row(self) -> Row:
        return row_of(self.trigger, self.source, self.dest)

    @property
    def meanings(self) -> frozenset[Meaning]:
        """What this transition means (declared with the table: ready, lost, gave up...)."""
        return self.row.meanings

    @property
    def step(self) -> tuple[Trigger, str, str]:
        return (self.trigger, self.source.value, self.dest.value)


Observer = Callable[[TransitionRecord, "DeviceLifecycle"], None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeviceLifecycle:
    """The model object a shared machine drives. Create it through ``LifecycleEngine.create``.

    Events: a ``Trigger`` for those that carry nothing (``fire(Trigger.CONNECT)``), an
    instance of the trigger's data class for the others (``stellate.fsm.event_data``:
    ``fire(ConnectionFailed("refused"))``, ``fire(RegistrationAnswer(accepted=True))``, ...).
    """

    def __init__(
        self,
        profile: AgentProfile,
        timing: Timing,
        rng: RandomSource,
        clock: Clock,
        observer: Observer | None,
        machine: _SharedMachine | None = None,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self._machine = machine
        self._profile = profile
        #: The device's timing settings (deadlines, backoff, windows).
        self.timing = timing
        self._rng = rng
        self._clock = clock
        self._now = monotonic
        self._observer = observer
        self._effects: list[Effect] = []
        self._merged = False  # set by _merge_telemetry, reported and cleared by _notify
        self._task_ended: str | None = None  # reported and cleared by _notify
        #: Seconds the current state may last before the runner feeds ``timed_out``.
        self.timeout: float | None = None
        #: States entered so far (an internal row enters none): the runner counts the current
        #: state's deadline once per entry, so an event that changes nothing never restarts it.
        self.entered = 0
        #: Why the device is FAILED (rejection text, last connection error), else None.
        self.failure_reason: str | None = None
        #: The last connection error seen (kept across retries for display).
        self.last_error: str | None = None
        #: The owner disconnects the device once its task is over (``drain``): no new task.
        self.drain_requested = False
        # -- the run's memory, read by the guards ------------------------------------------
        #: Failures in a row that climb the backoff (failed attempts, and losses of
        #: connections that did not stay up for the stability window).
        self.consecutive_failures = 0
        # When the activated connection was lost (monotonic; None: not recovering).
        self._lost_at: float | None = None
        # When the device was last activated (monotonic), for the stability window.
        self._activated_at: float | None = None
        # This run was moved from another manager (``fsm.resume``): the server is in flux
        # for it, as after a failed attempt (the old owner's id may still be held there).
        self._moved = False
        # The wait entering BACKOFF will draw, set by the row's callback: (low, high) bounds.
        self._wait: tuple[float, float] = (0.0, 0.0)
        self._retry_after = 0.0

    # -- state storage: transitions reads and writes ``status`` -------------------------------
    @property
    def status(self) -> str:
        return self._profile.status.value

    @status.setter
    def status(self, value: str) -> None:
        self._profile = attrs.evolve(self._profile, status=DeviceStatus(value))

    @property
    def profile(self) -> AgentProfile:
        """The current snapshot. Immutable: safe to hand out."""
        return self._profile

    @property
    def device_id(self) -> str:
        return self._profile.device_id

    @property
    def state(self) -> DeviceStatus:
        return self._profile.status

    @property
    def recovering_since(self) -> float | None:
        """When the device lost its activated connection (monotonic clock), while it is
        reconnecting after that loss; None otherwise."""
        return self._lost_at

    @property
    def next_attempt_in(self) -> float | None:
        """Seconds from entering the current state until the device's next attempt, when the
        state is a wait that ends by itself (``backoff``; ``failed`` with
        ``retry_failed_after``); None otherwise (a failed device waiting for its owner too)."""
        deadline = SPECS[self.state].deadline
        if deadline is None or deadline.kind is not DeadlineKind.WAIT:
            return None
        return self.timeout

    # -- the one way in -----------------------------------------------------------------------
    def fire(self, event: Trigger | str | EventData) -> list[Effect]:
        """Apply one event; return the effects to perform, in order.

        Args:
            event: a ``Trigger`` that carries no data, or the data of one that does
                (``ConnectionFailed(...)``, ``RegistrationAnswer(...)``...: each names its
                trigger).

        Raises:
            InvalidEventData: a trigger fired without its data, or data with a field of the
                wrong type (an ``IllegalTransition``).
            IllegalTransition: the current state does not accept the event (or no guarded
                alternative holds). The profile, status and deadline are left exactly as they were.
        """
        trigger, data = self._unpack(event)
        transition = self._event(trigger)
        if transition is None:
            raise IllegalTransition(self.device_id, self.state, trigger, "unknown event")
        try:
            fired = transition.trigger(self) if data is None else transition.trigger(self, data)
        except MachineError as exc:
            raise IllegalTransition(self.device_id, self.state, trigger) from exc
        if not fired:  # every guarded alternative refused: the table forbids this
            raise IllegalTransition(self.device_id, self.state, trigger, "no guard holds")
        effects, self._effects = self._effects, []
        return effects

    def accepts(self, event: Trigger | str | EventData) -> bool:
        """Would ``fire(event)`` be legal now (its data included)? Changes nothing."""
        machine = self._machine
        try:
            trigger, data = self._unpack(event)
        except InvalidEventData:
            return False
        if machine is None or self._event(trigger) is None:
            return False
        args = () if data is None else (data,)
        return bool(machine._can_trigger(self, trigger, *args))

    def _unpack(self, event: Trigger | str | EventData) -> tuple[Trigger | str, EventData | None]:
        """The trigger and data of ``event``, checked against the trigger's data class."""
        if isinstance(event, str):
            wanted = DATA_OF.get(event)  # type: ignore[call-overload]
            if wanted is not None:
                raise InvalidEventData(
                    self.device_id,
                    self.state,
                    event,
                    f"it carries {wanted.__name__}: fire({wanted.__name__}(...))",
                )
            return event, None
        if not isinstance(event, _DATA_CLASSES):
            raise InvalidEventData(
                self.device_id, self.state, repr(event), "not a Trigger nor event data"
            )
        problem = data_problem(event)
        if problem is not None:
            raise InvalidEventData(self.device_id, self.state, event.trigger, problem)
        return event.trigger, event

    def serving(self, command: OwnerCommand) -> Trigger | None:
        """The trigger the owner's ``command`` fires now, if the machine accepts it (None:
        nothing to do here). Which trigger serves which command is the table's (``serves``)."""
        trigger = command_trigger(self.state, command)
        return trigger if trigger is not None and self.accepts(trigger) else None

    def serve(self, command: OwnerCommand) -> list[Effect] | None:
        """Fire the trigger the owner's ``command`` maps to now, if the machine accepts it;
        None when it does not (nothing to do here: nothing changed).

        The same as ``fire(serving(command))``, in one pass through the machine instead of
        asking it first (``accepts`` builds the event and checks the guards, then ``fire``
        does it all again).
        """
        trigger = command_trigger(self.state, command)
        if trigger is None:
            return None
        name, _ = self._unpack(trigger)  # a command's trigger carries no data
        transition = self._event(name)
        if transition is None:
            return None
        try:
            fired = transition.trigger(self)
        except MachineError:  # the state takes no such event: nothing was changed
            return None
        if not fired:  # every guarded alternative refused: nothing was changed
            return None
        effects, self._effects = self._effects, []
        return effects

    def _event(self, trigger: Trigger | str) -> Event | None:
        if trigger not in TRIGGERS or self._machine is None:
            return None
        event: Event = self._machine.events[trigger]
        return event

    # -- guards (named by the table) ----------------------------------------------------------
    def retries_left(self, event: Any) -> bool:
        """attempts < max_retries; ``max_retries=None`` means retry forever."""
        limit = self._profile.max_retries
        return limit is None or self._profile.connection_attempts < limit

    def accepted(self, event: Any) -> bool:
        """The server confirmed the REGISTER (False: it sent an error frame)."""
        answer: RegistrationAnswer = event.args[0]
        return answer.accepted

    def recovering(self, event: Any) -> bool:
        """The device is reconnecting after losing its activated connection, under a recovery
        window (``Timing.recovery_window`` > 0): attempts do not spend ``max_retries``."""
        return self._lost_at is not None and self.timing.recovery_window > 0

    def window_open(self, event: Any) -> bool:
        """The recovery window has not passed yet."""
        lost = self._lost_at
        return lost is not None and self._now() < lost + self.timing.recovery_window

    def transient_rejection(self, event: Any) -> bool:
        """A refusal this run can expect: the server does not know the target yet or still
        holds our id, after an earlier attempt of this run failed, the activated connection
        was lost, or the device was moved here from another manager (``fsm.resume``): the
        server is in flux, and this is part of it."""
        answer: RegistrationAnswer = event.args[0]
        if answer.accepted:
            return False
        in_flux = self._profile.connection_attempts > 1 or self._lost_at is not None or self._moved
        return answer.kind in TRANSIENT_KINDS and in_flux

    def stable(self, event: Any) -> bool:
        """The connection being lost stayed up for at least the stability window."""
        activated = self._activated_at
        return activated is not None and (self._now() - activated >= self.timing.stability_window)

    def draining(self, event: Any) -> bool:
        """The owner is draining the device (``drain``): it takes no new task."""
        return self.drain_requested

    def auto_retry(self, event: Any) -> bool:
        """A failed device starts a fresh run by itself (``Timing.retry_failed_after`` is set;
        None: FAILED waits for the owner, and no deadline is armed there)."""
        return self.timing.retry_failed_after is not None

    # -- callbacks named by the table -------------------------------------------------------
    def _leave_state(self, event: Any) -> None:
        if not event.transition.row.internal:  # an internal row keeps the state's deadline
            self.timeout = None

    def _notify(self, event: Any) -> None:
        row: Row = event.transition.row
        if _coverage.enabled:
            _coverage.record(row)
        if row.internal:  # nothing changed: nobody is told
            return
        dest = row.dest
        self.timeout = self._deadline(SPECS[dest].deadline)
        self.entered += 1
        merged, self._merged = self._merged, False
        task, self._task_ended = self._task_ended, None
        if self._observer is not None:
            record = TransitionRecord(
                self.device_id,
                row.trigger,
                row.source,
                dest,
                telemetry_merged=merged,
                task_id=task,
                row=row,
            )
            self._observer(record, self)

    def _deadline(self, deadline: Deadline | None) -> float | None:
        """The seconds ``deadline`` (as the table declares it) gives the state just entered."""
        if deadline is None:
            return None
        if not deadline.drawn:
            value: float | None = getattr(self.timing, deadline.settings[0])
            return value  # None: switched off in this configuration (retry_failed_after)
        low, high = self._wait
        wait = max(self._rng.uniform(low, high), self._retry_after)
        lost = self._lost_at
        if lost is not None and self.timing.recovery_window > 0:  # never past the window
            wait = min(wait, max(lost + self.timing.recovery_window - self._now(), 0.0))
        return wait

    def _enter_disconnected(self, event: Any) -> None:
        self.failure_reason = None  # the owner stopped the device: nothing has failed
        self.drain_requested = False
        self._effects.append(CloseConnection("disconnect", event.transition.row.close_code))

    def _enter_connecting(self, event: Any) -> None:
        attempts = self._profile.connection_attempts + 1
        self._profile = attrs.evolve(self._profile, connection_attempts=attempts)
        self.failure_reason = None
        self._effects.append(OpenConnection(self._profile.server_url))

    def _enter_connected(self, event: Any) -> None:
        self._effects.append(SendRegister())

    def _enter_telemetry(self, event: Any) -> None:
        self._effects.append(RequestTelemetry())

    def _enter_backoff(self, event: Any) -> None:
        self.last_error = self._reason(event, "timed out")
        data = _data(event)
        retry_after = data.retry_after if isinstance(data, ConnectionFailed) else None
        self._retry_after = float(retry_after) if retry_after is not None else 0.0
        self._effects.append(CloseConnection(self.last_error, event.transition.row.close_code))

    def _enter_failed(self, event: Any) -> None:
        if self.failure_reason is None:
            cause = (
                f"timed out while {event.transition.source}"
                if event.event.name == Trigger.TIMED_OUT
                else "retries exhausted"
            )
            attempts = self._profile.connection_attempts
            self.failure_reason = f"gave up after {attempts} attempts: {self._reason(event, cause)}"
        self._effects.append(CloseConnection(self.failure_reason, event.transition.row.close_code))

    def _leave_busy(self, event: Any) -> None:
        """Whatever ends a task (finished, or the device lost, failed or stopped) clears it."""
        self._task_ended = self._profile.current_task_id
        self._profile = attrs.evolve(self._profile, current_task_id=None)

    def _start_run(self, event: Any) -> None:
        """The owner's connect or retry: attempts, backoff and recovery start over."""
        self._profile = attrs.evolve(self._profile, connection_attempts=0)
        self.failure_reason = None
        self.drain_requested = False
        self.consecutive_failures = 0
        self._lost_at = None
        self._activated_at = None
        self._moved = False

    def _count_failure(self, event: Any) -> None:
        """A failed attempt: the backoff climbs."""
        self.consecutive_failures += 1
        self._wait = self.timing.backoff_bounds(self.consecutive_failures)

    def _count_recovery_failure(self, event: Any) -> None:
        """A failed attempt while recovering from a loss: the backoff climbs, from the shorter
        of ``rejoin_delay`` and ``reconnect_delay`` (a server restarting should not leave its
        fleet waiting out the long steps of the schedule once it is back)."""
        self.consecutive_failures += 1
        self._wait = self.timing.backoff_bounds(self.consecutive_failures, recovering=True)

    def _await_rejoin(self, event: Any) -> None:
        """The server is up but does not know the target yet: a short wait that never climbs."""
        self._wait = self.timing.rejoin_bounds()

    def _lose_stable(self, event: Any) -> None:
        """A connection that stayed up long enough was lost: the backoff starts over."""
        self.consecutive_failures = 0
        self._wait = self.timing.backoff_bounds(0)
        self._lost_at = self._now()

    def _lose_flapping(self, event: Any) -> None:
        """A connection lost before the stability window: a flap, so the backoff climbs."""
        self.consecutive_failures += 1
        self._wait = self.timing.backoff_bounds(self.consecutive_failures)
        self._lost_at = self._now()

    def _record_rejection(self, event: Any) -> None:
        reason = self._reason(event, "no reason given")
        data = _data(event)
        kind = data.kind if isinstance(data, RegistrationAnswer) else RejectionKind.FINAL
        self.failure_reason = f"registration rejected: {explained(reason, kind)}"

    def _record_auth_rejection(self, event: Any) -> None:
        data = _data(event)
        source = data.key_source if isinstance(data, AuthRejected) else None
        self.failure_reason = f"{AUTH_REJECTED} ({source})" if source else AUTH_REJECTED
        self.last_error = self._reason(event, AUTH_REJECTED)

    def _record_window_passed(self, event: Any) -> None:
        window = self.timing.recovery_window
        last = self._reason(event, self.last_error or "no connection")
        self.failure_reason = (
            f"recovery window of {window:g}s passed without reconnecting (last error: {last})"
        )

    def _record_internal_error(self, event: Any) -> None:
        self.failure_reason = f"internal error: {self._reason(event, 'unknown')}"

    def _merge_telemetry(self, event: Any) -> None:
        answer: TelemetryAnswer = event.args[0]
        info = answer.system_info
        if info is not None:
            self._profile = merge_system_info(self._profile, info)
            self._merged = True

    def _activate(self, event: Any) -> None:
        self._profile = attrs.evolve(
            self._profile,
            connection_attempts=0,
            current_task_id=None,
            last_heartbeat=self._clock(),
        )
        self.last_error = None
        self._lost_at = None
        self._activated_at = self._now()
        self._moved = False
        self._effects.append(StartHeartbeat())

    def _take_task(self, event: Any) -> None:
        assigned: TaskAssigned = event.args[0]
        task_id = assigned.task_id
        self._profile = attrs.evolve(self._profile, current_task_id=task_id)
        self._task_ended = task_id  # reported with the record: the task this row started

    # -- bookkeeping the runner reports outside transitions ---------------------------------
    def drain(self) -> None:
        """The owner will disconnect the device once its task is over: it takes no new task
        (the table's ``draining`` guard) until it is stopped or a new run starts. Data, like a
        heartbeat stamp: the status does not change."""
        self.drain_requested = True

    def heartbeat_seen(self, at: datetime | None = None) -> None:
        """Record a heartbeat answer (not a state change: last_heartbeat is data)."""
        self._profile = attrs.evolve(self._profile, last_heartbeat=at or self._clock())

    @staticmethod
    def _reason(event: Any, default: str) -> str:
        reason = getattr(_data(event), "reason", None)  # every data class with a reason
        return str(reason) if reason else default


def _data(event: Any) -> EventData | None:
    """The data an event was fired with (``fire`` checked it against its trigger)."""
    return event.args[0] if event.args else None


class _ModelRegistry:
    """``Machine.models`` keyed by identity: O(1) membership, insertion and removal.

    transitions keeps a list and checks ``model not in models`` on every ``add_model`` (and
    ``list.remove`` on ``remove_model``), which makes registering a fleet quadratic. Supports
    what transitions does with ``models``: ``in``, ``append``, ``remove``, iteration, ``len``,
    indexing. Iteration walks a snapshot, so callbacks may add or remove models meanwhile.
    """

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, object] = {}

    def __contains__(self, model: object) -> bool:
        return id(model) in self._by_id

    def append(self, model: object) -> None:
        self._by_id[id(model)] = model

    def remove(self, model: object) -> None:
        if self._by_id.pop(id(model), None) is None:
            raise ValueError("model is not registered with this machine")

    def __iter__(self) -> Iterator[object]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __getitem__(self, index: int) -> object:
        return list(self._by_id.values())[index]


class _TableTransition(Transition):
    """A ``transitions`` transition that knows which row of the table it is.

    ``Machine.add_transition`` hands extra keyword arguments of a declaration to the machine's
    ``transition_cls`` (transitions' documented way to extend a transition): here ``rows``,
    the declaration's rows by source. The lifecycle reads ``row`` when it fires: meanings are
    looked up once per row, when the machine is built, never computed per event.
    """

    def __init__(
        self,
        source: str,
        dest: str | None,
        conditions: Any = None,
        unless: Any = None,
        before: Any = None,
        after: Any = None,
        prepare: Any = None,
        *,
        rows: Mapping[str, Row],
    ) -> None:
        # transitions' stub says str; None is its documented internal transition.
        super().__init__(source, dest, conditions, unless, before, after, prepare)  # type: ignore[arg-type]
        self.row = rows[source]


def machine_transitions() -> list[dict[str, Any]]:
    """The table's declarations as the engine's machine takes them: ``transitions``' keys, and
    each declaration's rows (``_TableTransition``)."""
    declared = []
    for declaration in TRANSITIONS:
        item: dict[str, Any] = {k: declaration[k] for k in MACHINE_KEYS if k in declaration}
        item["rows"] = {row.source.value: row for row in expand([declaration])}
        declared.append(item)
    return declared


class _SharedMachine(Machine):
    """A ``Machine`` for many models that binds nothing onto them.

    ``add_model`` only registers the model and sets its initial state. The stock one also binds
    a trigger and a ``may_`` partial per event, an ``is_`` partial per state, and picks up
    ``on_enter_<state>``/``on_exit_<state>`` methods found on the model: the lifecycle needs
    none of that (it fires through ``machine.events``, and the table names every callback), so
    ``DeviceLifecycle`` must not rely on ``on_enter_<state>`` naming.
    """

    transition_cls = _TableTransition

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(model=None, **kwargs)
        # A duck-typed stand-in for the list transitions declares (it uses only the API above).
        self.models = _ModelRegistry()  # type: ignore[assignment]

    def add_model(self, model: Any, initial: str | Enum | State | None = None) -> None:
        start = self.initial if initial is None else initial
        if start is None:
            raise ValueError("no initial state: pass one to add_model")
        for mod in model if isinstance(model, list | tuple) else [model]:
            if mod not in self.models:
                self.set_state(start, model=mod)
                self.models.append(mod)


#: The machine-level callbacks every engine's machine is built with.
_MACHINE_CALLBACKS = {"before_state_change": "_leave_state", "after_state_change": "_notify"}

# A broken table fails here, at import, with every problem named (see checks.py).
check_table(
    STATE_SPECS, TRANSITIONS, DeviceLifecycle, machine_callbacks=_MACHINE_CALLBACKS.values()
)


class LifecycleEngine:
    """One shared ``transitions.Machine`` and the lifecycles it drives.

    An app (or a test) may hold several engines; each device belongs to exactly one.
    """

    def __init__(self) -> None:
        self._machine = _SharedMachine(
            states=machine_states(STATE_SPECS),
            transitions=machine_transitions(),
            initial=INITIAL,
            auto_transitions=False,
            send_event=True,
            model_attribute="status",
            **_MACHINE_CALLBACKS,
        )
        self._count = 0

    def create(
        self,
        profile: AgentProfile,
        *,
        timing: Timing | None = None,
        rng: RandomSource | None = None,
        clock: Clock | None = None,
        observer: Observer | None = None,
        monotonic: Monotonic | None = None,
    ) -> DeviceLifecycle:
        """A lifecycle starting in ``profile.status`` (DISCONNECTED for a configured device).

        Args:
            profile: the device (its status is where the lifecycle starts).
            timing: deadlines, backoff and windows (default ``Timing()``).
            rng: the backoff's jitter source (seed it for reproducible runs).
            clock: wall time for ``last_heartbeat`` stamps.
            observer: called after every transition with its record.
            monotonic: the clock the recovery and stability windows are measured on
                (``trio.current_time`` in the manager; default ``time.monotonic``).
        """
        lifecycle = DeviceLifecycle(
            profile,
            timing or Timing(),
            rng if rng is not None else default_random(),
            clock or _utc_now,
            observer,
            self._machine,
            monotonic or time.monotonic,
        )
        self._machine.add_model(lifecycle, initial=profile.status.value)
        self._count += 1
        return lifecycle

    def release(self, lifecycle: DeviceLifecycle) -> None:
        """Detach a lifecycle so the machine no longer keeps it alive."""
        self._machine.remove_model(lifecycle)
        self._count -= 1

    def __len__(self) -> int:
        return self._count
