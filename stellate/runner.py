"""One trio task per device: it performs the effects its lifecycle asks for and feeds back what
happened.

The runner is the only code that does I/O for a device, and it decides nothing: every rule is a
row or a guard of the transition table (``stellate/fsm/table.py``). It performs the effects each
transition returns — ``OpenConnection`` starts a socket's life, ``CloseConnection`` ends it,
``SendRegister``/``RequestTelemetry`` send frames, ``StartHeartbeat`` starts the lease — arms the
deadline the new state declares (``DeviceLifecycle.timeout``), and turns what comes back into the
next event. Everything the task waits on arrives through one inbox:

* frames decoded by the connection's single reader task,
* the heartbeat task's "lease expired",
* the owner's commands (connect, retry, disconnect), fired if the machine accepts them now.

Each connection has a generation number, so a late item from a socket that is already gone can
never be mistaken for news about the current one. Heartbeats and the reader live in a nursery
that is a child of the device task: cancelling the device (or the whole manager) cancels them
and closes the socket, leaking nothing.

What the runner classifies (with ``stellate.protocol``'s functions, never by reading text
itself): a refused handshake or a policy close before registration that refuses our key
(``auth_rejected``), a registration refusal's kind (passed to the table as event data), and a
Retry-After on a refused handshake (event data: the backoff waits at least that long).

A bug of ours (an exception the runner did not expect, an illegal event) is contained in its
device: logged with its traceback, the device fails through the table's ``internal_error`` row
and the rest of the fleet runs on. In strict mode (``RunnerSettings.strict``, which the test
suite switches on) the error is re-raised instead, so a test cannot pass over it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Literal

import attrs
import trio

from .escape import escape_text
from .fsm import Trigger
from .fsm.effects import (
    CloseConnection,
    Effect,
    OpenConnection,
    RequestTelemetry,
    SendRegister,
    StartHeartbeat,
)
from .fsm.lifecycle import DeviceLifecycle
from .protocol import (
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
from .protocol.lease import HeartbeatLease
from .protocol.session_client import ClientEvent
from .redact import redact_url

logger = logging.getLogger(__name__)

#: How long closing a socket may take before we drop it (a silent peer must not hold us).
CLOSE_GRACE = 2.0
#: The same when the device task is being cancelled. A WebSocket connection's own reader is
#: cancelled with us, so the peer's closing reply can never be read: waiting for it only delays
#: the shutdown. This is just long enough to get our close frame out (peers see 1000, not 1006).
CANCELLED_CLOSE_GRACE = 0.1

CommandName = Literal[Trigger.CONNECT, Trigger.RETRY, Trigger.DISCONNECT]

#: What each of the owner's commands may fire, first accepted wins: "connect" connects a
#: stopped device, retries a failed one, or cuts a backoff short; otherwise it is already done.
_COMMAND_TRIGGERS: Final[dict[CommandName, tuple[Trigger, ...]]] = {
    Trigger.CONNECT: (Trigger.CONNECT, Trigger.RETRY),
    Trigger.RETRY: (Trigger.RETRY,),
    Trigger.DISCONNECT: (Trigger.DISCONNECT,),
}


@attrs.frozen
class RunnerSettings:
    task_name: str = "stellate"
    #: Shared by a fleet's runners: a slot is held from the start of a connection attempt
    #: until the socket is open (None: no limit).
    connect_slots: trio.CapacityLimiter | None = None
    #: Re-raise a contained internal error (tests) instead of only failing its device.
    strict: bool = False


@attrs.frozen
class Command:
    """An instruction from the device's owner (the manager)."""

    name: CommandName


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


InboxItem = Command | _FromPeer | _Closed | _LeaseExpired

SessionFactory = Callable[[str, str], ConstellationSession]


class DeviceRunner:
    """Runs one device until cancelled. Create with an inbox; send ``Command``s into it."""

    def __init__(
        self,
        lifecycle: DeviceLifecycle,
        connector: Connector,
        settings: RunnerSettings,
        inbox: trio.MemoryReceiveChannel[InboxItem],
        inbox_sender: trio.MemorySendChannel[InboxItem],
        session_factory: SessionFactory = ConstellationSession,
    ) -> None:
        self.lc = lifecycle
        self._connector = connector
        self._settings = settings
        self._inbox = inbox
        self._to_inbox = inbox_sender
        self._new_session = session_factory
        self._generation = 0
        # The current socket's heartbeat lease, once heartbeats have started.
        self._lease: HeartbeatLease | None = None
        # Set by the inbox watch while connecting: an owner's command that abandons the attempt.
        self._interrupting: Command | None = None
        # Set while the runner holds no socket (replaced by a fresh one per attempt).
        self._released = trio.Event()
        self._released.set()

    async def wait_released(self) -> None:
        """Wait until the runner holds no socket (its closing handshake is over).

        The status says DISCONNECTED as soon as the machine decides; the close that follows
        takes a round trip. Whoever is about to cancel the runner (the manager stopping) waits
        for this first, or the peer's closing reply could never be read.
        """
        await self._released.wait()

    # -- the outer loop: effects in, events out -----------------------------------------------
    async def run(self) -> None:
        pending: list[Effect] = []
        while True:
            try:
                pending = await self._step(pending)
            except Exception as exc:  # our bug: contain it in this device (see the docstring)
                pending = self._contain(exc)

    async def _step(self, pending: list[Effect]) -> list[Effect]:
        """Perform ``pending`` without a socket, then wait for the next event; return the
        effects it caused. An ``OpenConnection`` runs a whole connection (attempt and life)."""
        for effect in pending:
            if isinstance(effect, OpenConnection):
                return await self._connection(effect.url)
            if not isinstance(effect, CloseConnection):  # closing nothing is fine
                raise RuntimeError(f"{effect!r} needs an open socket and there is none")
        item = await self._next(self.lc.timeout)
        if item is None:
            return self._fire(Trigger.TIMED_OUT)
        if isinstance(item, Command):
            return self._command(item)
        return []  # no socket of this generation exists: nothing else can be current

    def _command(self, command: Command) -> list[Effect]:
        for trigger in _COMMAND_TRIGGERS[command.name]:
            if self.lc.accepts(trigger):
                return self._fire(trigger)
        return []  # already done (connecting, connected, stopped): nothing to do

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
        if not self.lc.accepts(Trigger.INTERNAL_ERROR):
            return []  # already FAILED: it stays so, with its reason
        return self._fire(Trigger.INTERNAL_ERROR, reason=reason)

    async def _next(self, seconds: float | None) -> InboxItem | None:
        """The next current item from the inbox, or None when ``seconds`` pass."""
        deadline = math.inf if seconds is None else trio.current_time() + seconds
        with trio.move_on_at(deadline):
            while True:
                item = await self._inbox.receive()
                if isinstance(item, Command) or item.generation == self._generation:
                    return item
        return None

    # -- one connection: the attempt, then its life --------------------------------------------
    async def _connection(self, url: str) -> list[Effect]:
        """Connect within the state's deadline, then live on that socket until a transition
        closes it; return the effects pending once the socket is gone."""
        self._interrupting = None
        connect_scope = trio.CancelScope()  # its deadline is armed once a slot is held
        released = self._released = trio.Event()
        try:
            async with trio.open_nursery() as watch_nursery:
                watch_scope: trio.CancelScope = await watch_nursery.start(
                    self._watch_while_connecting, connect_scope
                )
                pending = await self._attempt(url, connect_scope, watch_scope, self.lc.timeout)
                watch_scope.cancel()
        finally:
            released.set()
        return pending

    async def _attempt(
        self,
        url: str,
        connect_scope: trio.CancelScope,
        watch_scope: trio.CancelScope,
        connect_timeout: float | None,
    ) -> list[Effect]:
        # Every exception an attempt can end with is handled here, inside the watch nursery:
        # escaping it, they would arrive wrapped in an ExceptionGroup.
        slots = self._settings.connect_slots
        holding = opened = False
        pending: list[Effect] = []
        try:
            with connect_scope:
                if slots is not None:
                    await slots.acquire()
                    holding = True
                if connect_timeout is not None:  # counted from here, slot in hand
                    connect_scope.deadline = trio.current_time() + connect_timeout
                async with self._connector.open(url) as conn:
                    opened = True
                    if holding:
                        assert slots is not None
                        slots.release()
                        holding = False
                    watch_scope.cancel()
                    connect_scope.deadline = math.inf  # connected: the connect deadline is over
                    if self._interrupting is None:
                        pending = await self._connected(conn)
        except (ConnectError, OSError) as exc:
            if opened:
                raise  # not a connect failure: a bug somewhere on the open socket
            if self._interrupting is None:
                pending = self._connect_failed(exc)
        except ConnectionClosed as exc:  # closed while the context manager was leaving
            if self._socket_alive:
                pending = self._fire(
                    Trigger.CONNECTION_FAILED, reason=f"connection closed ({exc.code})"
                )
        finally:
            if holding:
                assert slots is not None
                slots.release()
            self._generation += 1  # whatever that socket still says is stale from now on
        if self._interrupting is not None:
            return self._command(self._interrupting)
        if connect_scope.cancelled_caught and not opened:
            logger.info("device %s: connect to %s timed out", self.lc.device_id, redact_url(url))
            return self._fire(Trigger.TIMED_OUT)
        return pending

    def _connect_failed(self, exc: ConnectError | OSError) -> list[Effect]:
        reason = str(exc) or type(exc).__name__
        status = exc.status if isinstance(exc, ConnectError) else None
        if classify_handshake(status) is RejectionKind.AUTH:
            return self._fire(Trigger.AUTH_REJECTED, reason=reason)
        retry_after = exc.retry_after if isinstance(exc, ConnectError) else None
        return self._fire(Trigger.CONNECTION_FAILED, reason=reason, retry_after=retry_after)

    async def _watch_while_connecting(
        self,
        connect_scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read the inbox while the handshake runs, so ``disconnect`` need not wait for it.

        Only commands can matter now (no socket of this generation exists yet): one the
        machine accepts in this state abandons the attempt and is fired once it has unwound;
        the others are already being done, and older sockets' news is stale. The main task is
        inside ``Connector.open`` meanwhile, so the inbox still has exactly one reader at a
        time; it cancels this watch as soon as the socket is open.
        """
        with trio.CancelScope() as scope:
            task_status.started(scope)
            while True:
                item = await self._inbox.receive()
                if isinstance(item, Command) and any(
                    self.lc.accepts(t) for t in _COMMAND_TRIGGERS[item.name]
                ):
                    self._interrupting = item
                    connect_scope.cancel()
                    return

    _socket_alive = False

    async def _connected(self, conn: Connection) -> list[Effect]:
        """The socket's life: from ``connection_opened`` until a transition closes it."""
        session = self._new_session(self._settings.task_name, self.lc.device_id)
        self._lease = None  # this socket's heartbeats have not started
        generation = self._generation
        grace = CLOSE_GRACE
        self._socket_alive = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, conn, session, generation)
            try:
                pending = self._fire(Trigger.CONNECTION_OPENED)
                while True:
                    pending, closing = await self._perform(pending, conn, session, nursery)
                    if closing:
                        return pending
                    item = await self._next(self.lc.timeout)
                    pending = self._on_item(item, session)
            except trio.Cancelled:
                grace = CANCELLED_CLOSE_GRACE
                raise
            finally:
                self._socket_alive = False
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True) as close_scope:
                    close_scope.deadline = trio.current_time() + grace
                    await conn.aclose(1000, "stellate: device released")

    async def _perform(
        self,
        effects: list[Effect],
        conn: Connection,
        session: ConstellationSession,
        nursery: trio.Nursery,
    ) -> tuple[list[Effect], bool]:
        """Perform effects in order, and those of the events they cause; stop at a
        ``CloseConnection`` (returning what follows it, and True: the socket's life is over)."""
        queue = list(effects)
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, CloseConnection):
                return queue, True
            if isinstance(effect, SendRegister):
                failed = await self._send(conn, session, session.register())
                queue += failed if failed is not None else self._fire(Trigger.REGISTER_SENT)
            elif isinstance(effect, RequestTelemetry):
                failed = await self._send(conn, session, session.request_device_info())
                queue += failed or []
            elif isinstance(effect, StartHeartbeat):
                nursery.start_soon(self._heartbeat, conn, session, self._generation)
            else:
                raise RuntimeError(f"{effect!r} while a socket is open")
        return [], False

    async def _send(
        self, conn: Connection, session: ConstellationSession, frame: str
    ) -> list[Effect] | None:
        """Send ``frame``; None when it went out, else the effects of the close it revealed."""
        try:
            await conn.send(frame)
        except ConnectionClosed as exc:
            return self._closed(session, exc.code, f"connection closed ({exc.code})")
        return None

    def _closed(self, session: ConstellationSession, code: int | None, reason: str) -> list[Effect]:
        """The socket was closed under us: a refused key, or a lost connection."""
        registered = not session.registration_pending
        if classify_close(code, registered=registered) is RejectionKind.AUTH:
            return self._fire(Trigger.AUTH_REJECTED, reason=reason)
        return self._fire(Trigger.CONNECTION_FAILED, reason=reason)

    def _on_item(self, item: InboxItem | None, session: ConstellationSession) -> list[Effect]:
        """What an inbox item means while a socket is open, as the machine's next event."""
        if item is None:
            return self._fire(Trigger.TIMED_OUT)
        if isinstance(item, Command):
            return self._command(item)
        if isinstance(item, _Closed):
            return self._closed(session, item.code, item.reason)
        if isinstance(item, _LeaseExpired):
            return self._fire(
                Trigger.CONNECTION_FAILED,
                reason=f"heartbeat lease expired (unanswered for {item.silent_for:.1f}s)",
            )
        event = item.event
        if self._lease is not None:  # any frame on this socket shows the server alive
            self._lease.heard()
        if isinstance(event, Registered):
            return self._fire(Trigger.REGISTRATION_ANSWERED, accepted=True)
        if isinstance(event, Rejected):
            return self._fire(
                Trigger.REGISTRATION_ANSWERED, accepted=False, reason=event.reason, kind=event.kind
            )
        if isinstance(event, DeviceInfo):
            if self.lc.accepts(Trigger.TELEMETRY_RECEIVED):
                return self._fire(Trigger.TELEMETRY_RECEIVED, system_info=event.system_info)
            return []  # a late answer after the telemetry deadline: nothing to do
        if isinstance(event, HeartbeatAck):
            self.lc.heartbeat_seen(datetime.now(UTC))
            return []
        if isinstance(event, PeerError):
            return self._fire(Trigger.CONNECTION_FAILED, reason=f"server error: {event.reason}")
        if isinstance(event, ProtocolViolation):
            logger.warning(
                "device %s: protocol violation: %s", self.lc.device_id, escape_text(event.reason)
            )
            if session.registration_pending:  # the attempt is spoiled
                return self._fire(
                    Trigger.CONNECTION_FAILED, reason=f"protocol violation: {event.reason}"
                )
            return []  # garbage after registration is logged and ignored
        return []

    # -- child tasks of one connection ------------------------------------------------------
    async def _read(self, conn: Connection, session: ConstellationSession, generation: int) -> None:
        """The socket's only reader: decode frames and queue what they mean.

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
                    await self._to_inbox.send(_FromPeer(generation, event))
        except ConnectionClosed as exc:
            reason = f"connection closed by server (code {exc.code})"
            if exc.reason:
                reason += f": {exc.reason}"
            await self._to_inbox.send(_Closed(generation, exc.code, reason))

    async def _heartbeat(
        self, conn: Connection, session: ConstellationSession, generation: int
    ) -> None:
        """Send a heartbeat every interval; report the lease expired when answers stop coming.

        The rule is ``HeartbeatLease``'s (shared with the device agent): lost once
        ``miss_limit`` heartbeats in a row went unanswered. Any frame on this socket answers
        (``_on_item`` tells the lease). The verdict is a deadline of its own, so a send that
        blocks on a peer that stopped reading cannot postpone it.
        """
        timing = self.lc.timing
        lease = self._lease = HeartbeatLease(
            timing.heartbeat_interval, timing.miss_limit, trio.current_time()
        )
        while True:
            await trio.sleep_until(lease.wake_at)
            now = trio.current_time()
            if lease.expired(now):
                since = lease.unanswered_since
                silent = now - since if since is not None else 0.0
                await self._to_inbox.send(_LeaseExpired(generation, silent))
                return
            if not lease.beat_due(now):
                continue
            lease.sent(now)
            with trio.move_on_at(lease.expires_at):
                try:
                    await conn.send(session.heartbeat())
                except ConnectionClosed:
                    return  # the reader reports the closure

    # -- the machine --------------------------------------------------------------------------
    def _fire(self, trigger: Trigger, **data: object) -> list[Effect]:
        return self.lc.fire(trigger, **data)


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: the error a reason should name."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
