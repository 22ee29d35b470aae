"""One trio task per device: it performs the effects its lifecycle asks for and feeds back what
happened.

The runner is the only code that does I/O for a device, and it decides nothing: every rule is a
row or a guard of the transition table (``stellate/fsm/table.py``). It performs the effects each
transition returns — ``OpenConnection`` starts a socket's life, ``CloseConnection`` ends it (with
the code and the reason the row gave it, made to fit a close frame),
``SendRegister``/``RequestTelemetry`` send frames, ``StartHeartbeat`` starts the lease — arms the
deadline the new state declares (``DeviceLifecycle.timeout``), and turns what comes back into the
next event. Everything the device task waits for arrives in its mailbox (a list, and the task
parked on it):

* frames decoded by the connection's single reader task,
* the owner's commands (connect, retry, disconnect), fired if the machine accepts them now,
* alarms from the fleet's timer (``stellate.manager.alarms``): the state's deadline, a heartbeat
  due, the heartbeat lease's verdict.

The message path is kept short because it runs for every device at every heartbeat (see
docs/performance.md): the device task sends its own heartbeats when the fleet's timer says one
is due, and the reader handles heartbeat answers where it reads them (the lease is told, the
profile stamped) instead of queuing them for the device task. A send that blocks (a peer that
stopped reading) cannot hold the device: a command the machine accepts, or the lease running
out, interrupts it (the connection's cancel scope is cancelled, and the item is handled once
it has unwound), as it interrupts a connection attempt.

Each connection has a generation number, so a late item from a socket that is already gone can
never be mistaken for news about the current one. The reader lives in a nursery that is a child
of the device task: cancelling the device (or the whole manager) cancels it and closes the
socket, leaking nothing.

What the runner classifies (with ``stellate.protocol``'s functions, never by reading text
itself): a refused handshake or a policy close before registration that refuses our key
(``auth_rejected``), a registration refusal's kind (passed to the table as event data), a
Retry-After on a refused handshake (event data: the backoff waits at least that long), and a
frame the protocol forbids (``protocol_violation``: whether it spoils the attempt or is
ignored is the table's rows, by state).

A bug of ours (an exception the runner did not expect, an illegal event) is contained in its
device: logged with its traceback, the device fails through the table's ``internal_error`` row
and the rest of the fleet runs on. In strict mode (``RunnerSettings.strict``, which the test
suite switches on) the error is re-raised instead, so a test cannot pass over it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final

import attrs
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

from ..fsm import OwnerCommand, Trigger
from ..fsm.effects import (
    CloseConnection,
    Effect,
    OpenConnection,
    RequestTelemetry,
    SendRegister,
    StartHeartbeat,
)
from ..fsm.event_data import (
    AuthRejected,
    ConnectionFailed,
    EventData,
    InternalError,
    ProtocolViolated,
    RegistrationAnswer,
    TelemetryAnswer,
)
from ..fsm.lifecycle import DeviceLifecycle
from ..protocol import (
    ConnectError,
    Connection,
    ConnectionClosed,
    Connector,
    ConstellationSession,
    DeviceInfo,
    HeartbeatAck,
    PeerError,
    ProtocolViolation,
    Registered,
    Rejected,
    RejectionKind,
    classify_close,
    classify_handshake,
)
from ..protocol.closing import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, close_reason
from ..protocol.lease import HeartbeatLease
from ..protocol.session_client import ClientEvent
from ..text.escape import escape_text
from ..text.redact import redact_url
from .alarms import Alarms

logger = logging.getLogger(__name__)

#: How long closing a socket may take before we drop it (a silent peer must not hold us).
CLOSE_GRACE = 2.0
#: The same when the device task is being cancelled. A WebSocket connection's own reader is
#: cancelled with us, so the peer's closing reply can never be read: waiting for it only delays
#: the shutdown. This is just long enough to get our close frame out (peers see 1000, not 1006).
CANCELLED_CLOSE_GRACE = 0.1
#: Items from the reader the device task may have unread before the reader stops reading (and
#: the socket's own buffers push back on the server).
MAILBOX_LIMIT = 64
#: How a socket is closed when the device task ends without the machine closing it: cancelled
#: (the manager stops without waiting), or an error of ours (contained once the socket is shut).
_CANCELLED_CLOSE: Final = CloseConnection("manager stopped", CLOSE_GOING_AWAY)
_BUG_CLOSE: Final = CloseConnection("internal error", CLOSE_INTERNAL_ERROR)
#: The server's confirmation, as the machine takes it (one instance: it carries nothing else).
_ACCEPTED: Final = RegistrationAnswer(accepted=True)


@attrs.frozen
class RunnerSettings:
    task_name: str = "stellate"
    #: Shared by a fleet's runners: a slot is held from the start of a connection attempt
    #: until the socket is open (None: no limit).
    connect_slots: trio.CapacityLimiter | None = None
    #: Re-raise a contained internal error (tests) instead of only failing its device.
    strict: bool = False
    #: The fleet's timer (its ``run`` must be running in the owner's nursery).
    alarms: Alarms = attrs.field(kw_only=True)


@attrs.frozen
class Command:
    """An instruction from the device's owner (the manager); the table says which trigger it
    fires in the device's state (``DeviceLifecycle.serving``)."""

    name: OwnerCommand


@attrs.frozen
class _FromPeer:
    generation: int
    event: ClientEvent


@attrs.frozen
class _Closed:
    generation: int
    code: int | None
    reason: str


@attrs.frozen
class _LeaseExpired:
    generation: int
    silent_for: float


class _Beat:
    """The lease says a heartbeat is due (an item ``_next`` returns, never queued)."""


_BEAT: Final = _Beat()


class _Finish:
    """The owner is done with the device and no socket is held (an item ``_next`` returns)."""


_FINISH: Final = _Finish()

InboxItem = Command | _FromPeer | _Closed | _LeaseExpired

SessionFactory = Callable[[str, str], ConstellationSession]


class DeviceRunner:
    """Runs one device until cancelled. Send it ``Command``s with ``command``."""

    def __init__(
        self,
        lifecycle: DeviceLifecycle,
        connector: Connector,
        settings: RunnerSettings,
        session_factory: SessionFactory = ConstellationSession,
        *,
        key_source: str | None = None,
    ) -> None:
        self.lc = lifecycle
        # Where the key in the device's URL came from, named when a server refuses it.
        self._key_source = key_source
        self._connector = connector
        self._settings = settings
        self._alarms = settings.alarms
        self._new_session = session_factory
        self._generation = 0
        # -- the mailbox: items in arrival order, and who is parked on it --------------------
        self._items: list[InboxItem] = []
        self._waiter: Task | None = None  # the device task, parked in _next
        self._reader_waiting: Task | None = None  # a reader, parked while the mailbox is full
        # The alarm the fleet's timer holds for us (the earliest one still wanted), if any.
        self._alarm_at: float | None = None
        # The current state's deadline (trio time) and the entry it belongs to (``lc.entered``).
        self._deadline_at: float | None = None
        self._deadline_of = -1
        # -- interruptions -----------------------------------------------------------------------
        # While the device task is busy in a connection attempt or a send, the scope an item
        # that must not wait (an accepted command, the lease's verdict) cancels; else None.
        self._interruptible: trio.CancelScope | None = None
        # Set when an item interrupted: handled as soon as the interrupted work has unwound.
        self._interrupting: Command | _LeaseExpired | None = None
        # The current socket's heartbeat lease, once heartbeats have started.
        self._lease: HeartbeatLease | None = None
        # Set while the runner holds no socket (replaced by a fresh one per attempt).
        self._released = trio.Event()
        self._released.set()
        # The owner is done with the device (``finish``): ``run`` returns once no socket is held.
        self._finishing = False

    @property
    def released(self) -> bool:
        """True while the runner holds no socket (its last closing handshake is over)."""
        return self._released.is_set()

    def finish(self) -> None:
        """Have ``run`` return as soon as the runner holds no socket (at once if it is
        waiting without one): the owner stopping a fleet ends each device task this way,
        without a cancellation to raise through it. A socket still open stays open: whoever
        calls this cancels the devices it must not wait for."""
        self._finishing = True
        if self._waiter is not None:
            self._wake()

    async def wait_released(self) -> None:
        """Wait until the runner holds no socket (its closing handshake is over).

        The status says DISCONNECTED as soon as the machine decides; the close that follows
        takes a round trip. Whoever is about to cancel the runner (the manager stopping) waits
        for this first, or the peer's closing reply could never be read.
        """
        await self._released.wait()

    def deadline_in(self, now: float) -> float | None:
        """Seconds from ``now`` (trio time) until the current state's deadline passes (None:
        the state has none); counted from the entry as the runner armed it, or the whole
        deadline if the runner has not looked at the new state yet."""
        lc = self.lc
        if lc.entered != self._deadline_of:
            return lc.timeout
        at = self._deadline_at
        return None if at is None else max(0.0, at - now)

    # -- the mailbox ------------------------------------------------------------------------------
    def command(self, command: Command) -> None:
        """Queue an owner's command (handled in order; at once if it must interrupt)."""
        self._items.append(command)
        if self._waiter is not None:
            self._wake()
        elif (
            self._interruptible is not None
            and self._interrupting is None
            and self.lc.serving(command.name) is not None
        ):
            self._items.pop()
            self._interrupt(command)

    def on_alarm(self, when: float) -> None:
        """The fleet's timer: ``when`` has come (see ``stellate.manager.alarms``)."""
        if when != self._alarm_at:
            return  # superseded by an earlier alarm
        self._alarm_at = None
        if self._waiter is not None:
            self._wake()
            return
        lease = self._lease
        if lease is None or self._interruptible is None or self._interrupting is not None:
            return  # busy: it looks at the clock itself before it parks again
        if lease.expired(when):  # a send is holding the device past the lease: interrupt it
            self._interrupt(self._lease_expired(when))
        elif lease.expires_at < math.inf:
            self._arm(lease.expires_at)

    async def _deliver(self, item: _FromPeer | _Closed) -> None:
        """The reader's way in: stops reading while the device task is ``MAILBOX_LIMIT`` behind."""
        self._items.append(item)
        if self._waiter is not None:
            self._wake()
        if len(self._items) < MAILBOX_LIMIT:
            return
        self._reader_waiting = current_task()

        def abort(_: object) -> Abort:
            self._reader_waiting = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        assert waiter is not None
        reschedule(waiter)

    def _interrupt(self, item: Command | _LeaseExpired) -> None:
        assert self._interruptible is not None
        self._interrupting = item
        self._interruptible.cancel()

    def _arm(self, when: float) -> None:
        """Have the fleet's timer wake us at ``when`` (unless an alarm at least as early is set)."""
        at = self._alarm_at
        if at is None or when < at:
            self._alarm_at = when
            self._alarms.set(when, self)

    def _take(self) -> InboxItem | None:
        """The next current item: an interruption first, then the mailbox in order."""
        interrupting = self._interrupting
        if interrupting is not None:
            self._interrupting = None
            return interrupting
        items = self._items
        while items:
            item = items.pop(0)
            if self._reader_waiting is not None and len(items) < MAILBOX_LIMIT:
                reader, self._reader_waiting = self._reader_waiting, None
                reschedule(reader)
            if isinstance(item, Command) or item.generation == self._generation:
                return item
        return None  # no socket of an older generation is news

    def _deadline(self) -> float | None:
        """When the current state's deadline passes: counted from the first look after the
        state was entered, so an item that changes nothing (a frame the table ignores, a
        command with nothing to do) never restarts it."""
        lc = self.lc
        if lc.entered != self._deadline_of:
            self._deadline_of = lc.entered
            timeout = lc.timeout
            self._deadline_at = None if timeout is None else trio.current_time() + timeout
        return self._deadline_at

    async def _next(self, deadline: float | None) -> InboxItem | _Beat | _Finish | None:
        """The next current item; ``_BEAT`` when a heartbeat is due (or the lease's verdict);
        ``_FINISH`` once the owner is done and no socket is held; None once ``deadline``
        (trio time) has come."""
        if deadline is not None and deadline <= trio.current_time():
            return None  # no time left: the deadline wins over anything queued
        while True:
            if self._finishing and self._released.is_set():
                return _FINISH
            item = self._take()
            if item is not None:
                return item
            now = trio.current_time()
            if deadline is not None and now >= deadline:
                return None
            wake = deadline
            lease = self._lease
            if lease is not None:
                if lease.expired(now):
                    return self._lease_expired(now)
                if lease.beat_due(now):
                    return _BEAT
                wake = lease.wake_at if wake is None else min(wake, lease.wake_at)
            if wake is not None:
                self._arm(wake)
            self._waiter = current_task()

            def abort(_: object) -> Abort:
                self._waiter = None
                return Abort.SUCCEEDED

            await wait_task_rescheduled(abort)

    def _lease_expired(self, now: float) -> _LeaseExpired:
        assert self._lease is not None
        since = self._lease.unanswered_since
        self._lease = None  # one verdict per socket
        return _LeaseExpired(self._generation, now - since if since is not None else 0.0)

    # -- the outer loop: effects in, events out -----------------------------------------------
    async def run(self) -> None:
        """Run the device until cancelled, or until ``finish`` finds it without a socket."""
        pending: list[Effect] | None = []
        while pending is not None:
            try:
                pending = await self._step(pending)
            except Exception as exc:  # our bug: contain it in this device (see the docstring)
                pending = self._contain(exc)

    async def _step(self, pending: list[Effect]) -> list[Effect] | None:
        """Perform ``pending`` without a socket, then wait for the next event; return the
        effects it caused (None: finished). An ``OpenConnection`` runs a whole connection
        (attempt and life)."""
        if self._finishing:
            return None  # the owner is done: no new connection, no more waiting
        for effect in pending:
            if isinstance(effect, OpenConnection):
                return await self._connection(effect.url)
            if not isinstance(effect, CloseConnection):  # closing nothing is fine
                raise RuntimeError(f"{effect!r} needs an open socket and there is none")
        item = await self._next(self._deadline())
        if item is None:
            return self._fire(Trigger.TIMED_OUT)
        if isinstance(item, Command):
            return self._command(item)
        if item is _FINISH:
            return None
        return []  # no socket of this generation exists: nothing else can be current

    def _command(self, command: Command) -> list[Effect]:
        effects = self.lc.serve(command.name)
        return [] if effects is None else effects  # None: already done, nothing to do

    def _contain(self, exc: Exception) -> list[Effect]:
        """Log a bug of ours with its traceback and fail only this device (or re-raise)."""
        strict = self._settings.strict
        logger.error(
            "device %s: internal error in its task (%s)",
            self.lc.device_id,
            "strict mode: re-raised"
            if strict
            else "contained: this device fails, the others run on",
            exc_info=exc,
        )
        if strict:
            raise exc
        leaf = _first_leaf(exc)
        reason = f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__
        failure = InternalError(reason)
        if not self.lc.accepts(failure):
            return []  # already FAILED: it stays so, with its reason
        return self._fire(failure)

    # -- one connection: the attempt, then its life --------------------------------------------
    async def _connection(self, url: str) -> list[Effect]:
        """Connect within the state's deadline, then live on that socket until a transition
        closes it; return the effects pending once the socket is gone."""
        released = self._released = trio.Event()
        try:
            return await self._attempt(url, self.lc.timeout)
        finally:
            self._interruptible = None
            self._interrupting = None
            released.set()

    async def _attempt(self, url: str, connect_timeout: float | None) -> list[Effect]:
        """Open the socket (a command the machine accepts meanwhile abandons the attempt), then
        live on it; every exception an attempt can end with is handled here."""
        slots = self._settings.connect_slots
        holding = opened = False
        pending: list[Effect] = []
        # The connection's context (its reader nursery) is entered inside this scope, so the
        # scope lasts as long as the connection; its deadline is armed once a slot is held.
        connect_scope = self._interruptible = trio.CancelScope()
        try:
            with connect_scope:
                if slots is not None:
                    await slots.acquire()
                    holding = True
                if connect_timeout is not None:  # counted from here, slot in hand
                    connect_scope.deadline = trio.current_time() + connect_timeout
                async with self._connector.open(url) as conn:
                    opened = True
                    self._interruptible = None
                    if holding:
                        assert slots is not None
                        slots.release()
                        holding = False
                    connect_scope.deadline = math.inf  # connected: the connect deadline is over
                    if self._interrupting is None:
                        pending = await self._connected(conn)
        except (ConnectError, OSError) as exc:
            if opened:
                raise  # not a connect failure: a bug somewhere on the open socket
            if self._interrupting is None:
                pending = self._connect_failed(exc)
        except ConnectionClosed:  # closed while the context manager was leaving
            pass  # the socket's life was over: what it caused is already pending
        finally:
            self._interruptible = None
            if holding:
                assert slots is not None
                slots.release()
            self._generation += 1  # whatever that socket still says is stale from now on
        interrupting, self._interrupting = self._interrupting, None
        if interrupting is not None:  # a command abandoned the attempt
            assert isinstance(interrupting, Command)
            return self._command(interrupting)
        if connect_scope.cancelled_caught and not opened:
            logger.info("device %s: connect to %s timed out", self.lc.device_id, redact_url(url))
            return self._fire(Trigger.TIMED_OUT)
        return pending

    def _connect_failed(self, exc: ConnectError | OSError) -> list[Effect]:
        reason = str(exc) or type(exc).__name__
        status = exc.status if isinstance(exc, ConnectError) else None
        if classify_handshake(status) is RejectionKind.AUTH:
            return self._fire(AuthRejected(reason, key_source=self._key_source))
        retry_after = exc.retry_after if isinstance(exc, ConnectError) else None
        return self._fire(ConnectionFailed(reason, retry_after))

    async def _connected(self, conn: Connection) -> list[Effect]:
        """The socket's life: from ``connection_opened`` until a transition closes it."""
        session = self._new_session(self._settings.task_name, self.lc.device_id)
        self._lease = None  # this socket's heartbeats have not started
        grace = CLOSE_GRACE
        pending: list[Effect] = []
        # How the socket is closed: the machine's CloseConnection, or, when the device task
        # ends without one, going away (cancelled) or our own error (an exception).
        close: CloseConnection | None = None
        unclosed = _BUG_CLOSE
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, conn, session, self._generation)
            try:
                close, pending = await self._live(conn, session, nursery.cancel_scope)
            except trio.Cancelled:
                if self._interrupting is None:  # not ours: the device is being cancelled
                    grace = CANCELLED_CLOSE_GRACE
                    unclosed = _CANCELLED_CLOSE
                raise
            finally:
                self._lease = None
                self._interruptible = None
                nursery.cancel_scope.cancel()
                interrupting, self._interrupting = self._interrupting, None
                if interrupting is None:
                    pass
                elif close is not None:  # the socket's life ended anyway: a command waits its turn
                    if isinstance(interrupting, Command):
                        self._items.insert(0, interrupting)
                else:  # it cancelled what the device was doing: now it is handled
                    close, pending = _until_close(self._on_item(interrupting, session))
                    if close is None:
                        raise RuntimeError(f"{interrupting!r} interrupted; the socket stays open")
                close = close or unclosed
                with trio.CancelScope(shield=True) as close_scope:
                    close_scope.deadline = trio.current_time() + grace
                    await conn.aclose(close.code, close_reason(f"stellate: {close.reason}"))
        return pending

    async def _live(
        self, conn: Connection, session: ConstellationSession, scope: trio.CancelScope
    ) -> tuple[CloseConnection, list[Effect]]:
        """Perform effects and handle items until a transition closes the socket; return its
        ``CloseConnection`` and the effects that follow it."""
        pending = self._fire(Trigger.CONNECTION_OPENED)
        while True:
            queue = list(pending)
            while queue:
                effect = queue.pop(0)
                if isinstance(effect, CloseConnection):
                    return effect, queue
                if isinstance(effect, SendRegister):
                    failed = await self._send(conn, session, session.register(), scope)
                    queue += failed if failed is not None else self._fire(Trigger.REGISTER_SENT)
                elif isinstance(effect, RequestTelemetry):
                    failed = await self._send(conn, session, session.request_device_info(), scope)
                    queue += failed or []
                elif isinstance(effect, StartHeartbeat):
                    self._lease = HeartbeatLease(self.lc.timing, trio.current_time())
                else:
                    raise RuntimeError(f"{effect!r} while a socket is open")
            item = await self._next(self._deadline())
            if item is _BEAT:
                pending = await self._beat(conn, session, scope)
            else:
                assert not isinstance(item, _Beat | _Finish)  # a socket is held: never finished
                pending = self._on_item(item, session)

    async def _send(
        self,
        conn: Connection,
        session: ConstellationSession,
        frame: str,
        scope: trio.CancelScope,
    ) -> list[Effect] | None:
        """Send ``frame``; None when it went out, else the effects of the close it revealed.

        Meanwhile an accepted command or the lease's verdict cancels ``scope`` (the
        connection's): a peer that stopped reading cannot hold the device.
        """
        self._interruptible = scope
        try:
            await conn.send(frame)
        except ConnectionClosed as exc:
            return self._closed(session, exc.code, f"connection closed ({exc.code})")
        finally:
            self._interruptible = None
        return None

    async def _beat(
        self, conn: Connection, session: ConstellationSession, scope: trio.CancelScope
    ) -> list[Effect]:
        """Send the heartbeat that is due (the lease's rule: ``HeartbeatLease``, shared with the
        device agent). A closed socket stops the heartbeats; the reader reports the closure."""
        lease = self._lease
        assert lease is not None
        lease.sent(trio.current_time())
        self._arm(lease.wake_at)  # the verdict must come on time even if the send blocks
        self._interruptible = scope
        try:
            await conn.send(session.heartbeat())
        except ConnectionClosed:
            self._lease = None
        finally:
            self._interruptible = None
        return []

    def _closed(self, session: ConstellationSession, code: int | None, reason: str) -> list[Effect]:
        """The socket was closed under us: a refused key, or a lost connection."""
        registered = not session.registration_pending
        if classify_close(code, registered=registered) is RejectionKind.AUTH:
            return self._fire(AuthRejected(reason, key_source=self._key_source))
        return self._fire(ConnectionFailed(reason))

    def _on_item(self, item: InboxItem | None, session: ConstellationSession) -> list[Effect]:
        """What a mailbox item means while a socket is open, as the machine's next event."""
        if item is None:
            return self._fire(Trigger.TIMED_OUT)
        if isinstance(item, Command):
            return self._command(item)
        if isinstance(item, _Closed):
            return self._closed(session, item.code, item.reason)
        if isinstance(item, _LeaseExpired):
            silent = f"heartbeat lease expired (unanswered for {item.silent_for:.1f}s)"
            return self._fire(ConnectionFailed(silent))
        event = item.event
        if isinstance(event, Registered):
            return self._fire(_ACCEPTED)
        if isinstance(event, Rejected):
            return self._fire(RegistrationAnswer(False, event.reason, event.kind))
        if isinstance(event, DeviceInfo):  # after its deadline, the table ignores it
            return self._fire(TelemetryAnswer(event.system_info))
        if isinstance(event, PeerError):
            return self._fire(ConnectionFailed(f"server error: {event.reason}"))
        if isinstance(event, ProtocolViolation):
            logger.warning(
                "device %s: protocol violation: %s", self.lc.device_id, escape_text(event.reason)
            )
            # The table decides: the attempt is spoiled before registration, ignored after.
            return self._fire(ProtocolViolated(f"protocol violation: {event.reason}"))
        return []

    # -- the connection's reader --------------------------------------------------------------
    async def _read(self, conn: Connection, session: ConstellationSession, generation: int) -> None:
        """The socket's only reader: decode frames, and handle or queue what they mean.

        Any frame shows the server alive (the lease is told here, at once). A heartbeat answer
        is handled here too — it is not an event of the machine, only a stamp on the profile —
        so the path of the most frequent message never wakes the device task. Everything else
        goes to the mailbox.

        A frame the session cannot even interpret (it raised instead of reporting a
        violation) is still only a bad frame from one server: it is reported as a
        ``ProtocolViolation`` of this socket. Letting it escape would crash this task, and
        with it the manager's nursery: every device of the constellation.
        """
        try:
            while True:
                frame = await conn.receive()
                try:
                    events = session.receive(frame)
                except Exception as exc:
                    logger.error(
                        "device %s: frame could not be interpreted (%s)",
                        self.lc.device_id,
                        type(exc).__name__,
                        exc_info=True,
                    )
                    events = [ProtocolViolation(f"uninterpretable frame ({type(exc).__name__})")]
                for event in events:
                    lease = self._lease
                    if lease is not None:
                        lease.heard()
                    if isinstance(event, HeartbeatAck):
                        self.lc.heartbeat_seen()  # stamped by the lifecycle's own clock
                    else:
                        await self._deliver(_FromPeer(generation, event))
        except ConnectionClosed as exc:
            reason = f"connection closed by server (code {exc.code})"
            if exc.reason:
                reason += f": {exc.reason}"
            await self._deliver(_Closed(generation, exc.code, reason))

    # -- the machine --------------------------------------------------------------------------
    def _fire(self, event: Trigger | EventData) -> list[Effect]:
        return self.lc.fire(event)


def _until_close(effects: list[Effect]) -> tuple[CloseConnection | None, list[Effect]]:
    """The first ``CloseConnection`` and the effects after it, or None and all of them."""
    for index, effect in enumerate(effects):
        if isinstance(effect, CloseConnection):
            return effect, effects[index + 1 :]
    return None, effects


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: the error a reason should name."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
