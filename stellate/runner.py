"""One trio task per device: it drives the device's lifecycle and performs its effects.

The runner is the only code that does I/O for a device. It looks at the state, performs the one
step that state calls for (open the socket, send REGISTER, wait for the answer, request
telemetry, wait out the backoff), and feeds the outcome back into the machine as an event. The
machine decides; the runner obeys. Everything the task waits on arrives through one inbox:

* frames decoded by the connection's single reader task,
* the heartbeat task's "lease expired",
* the owner's commands (connect, retry, disconnect).

Each connection has a generation number, so a late item from a socket that is already gone can
never be mistaken for news about the current one. Heartbeats and the reader live in a nursery
that is a child of the device task: cancelling the device (or the whole manager) cancels them
and closes the socket, leaking nothing.

Rejections while recovering. A rejection of a registration made to a server that has given no
sign of trouble is final (the flow's rule: FAILED, no retry). But once this run of attempts has
met a server in flux — an attempt failed at the connection level (refused, timed out, dropped)
or the device reached IDLE and then lost its server — the server it reconnects to may not know
the device yet (a restarted server that the device agent has not re-joined: "Target device 'D'
is not connected"), or may still hold our previous socket (its close not processed yet:
"already registered"). Both are transient consequences of the trouble we are recovering from,
so while recovering the runner reports them as ``connection_failed``: the device backs off and
retries, bounded by ``max_retries`` like any failed attempt (the last reason is kept in the
failure). An explicit connect or retry by the owner starts a fresh run: a clean rejection is
final again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

import attrs
import trio

from .escape import escape_text
from .fsm import (
    CloseConnection,
    DeviceLifecycle,
    DeviceStatus,
    Effect,
    IllegalTransition,
    OpenConnection,
    RequestTelemetry,
    SendRegister,
    StartHeartbeat,
    Trigger,
)
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
)
from .protocol.lease import HeartbeatLease
from .protocol.session_client import ClientEvent
from .redact import redact_url

logger = logging.getLogger(__name__)

#: States in which the device holds an open socket.
_CONNECTED_PHASES = frozenset(
    {
        DeviceStatus.CONNECTED,
        DeviceStatus.REGISTERING,
        DeviceStatus.TELEMETRY,
        DeviceStatus.IDLE,
        DeviceStatus.BUSY,
    }
)

#: How long closing a socket may take before we drop it (a silent peer must not hold us).
CLOSE_GRACE = 2.0
#: The same when the device task is being cancelled. A WebSocket connection's own reader is
#: cancelled with us, so the peer's closing reply can never be read: waiting for it only delays
#: the shutdown. This is just long enough to get our close frame out (peers see 1000, not 1006).
CANCELLED_CLOSE_GRACE = 0.1

CommandName = Literal[Trigger.CONNECT, Trigger.RETRY, Trigger.DISCONNECT]


@attrs.frozen
class RunnerSettings:
    task_name: str = "stellate"
    #: Shared by a fleet's runners: a slot is held from the start of a connection attempt
    #: until the socket is open (None: no limit).
    connect_slots: trio.CapacityLimiter | None = None


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
    reason: str


@attrs.frozen
class _LeaseExpired:
    generation: int
    silent_for: float


InboxItem = Command | _FromPeer | _Closed | _LeaseExpired

SessionFactory = Callable[[str, str], ConstellationSession]


#: Rejections that a reconnect after a loss can expect (see the module docstring).
_TRANSIENT_WHILE_RECOVERING = frozenset(
    {RejectionKind.TARGET_NOT_YET_KNOWN, RejectionKind.ID_STILL_HELD}
)


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
        # True once this run (since the owner's last connect/retry) met a server in flux: an
        # attempt failed at the connection level, or the device reached IDLE (so any later
        # registration follows a loss). A target briefly absent then is not a rejection.
        self._recovering = False
        # Set by the inbox watch while connecting: the owner asked to disconnect.
        self._disconnect_requested = False
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

    # -- the outer loop: one state at a time ------------------------------------------------
    async def run(self) -> None:
        while True:
            state = self.lc.state
            if state is DeviceStatus.CONNECTING:
                await self._connection()
            elif state is DeviceStatus.BACKOFF:
                item = await self._next(self.lc.timeout)
                if item is None:
                    self._fire(Trigger.TIMED_OUT)
                elif isinstance(item, Command):
                    self._command_while_waiting(item)
            else:  # DISCONNECTED or FAILED: only the owner moves us on
                item = await self._next(None)
                if isinstance(item, Command):
                    self._command_while_waiting(item)

    def _command_while_waiting(self, command: Command) -> None:
        state = self.lc.state
        if command.name == Trigger.DISCONNECT:
            if state is not DeviceStatus.DISCONNECTED:
                self._fire(Trigger.DISCONNECT)
            return
        if state is DeviceStatus.DISCONNECTED:
            self._recovering = False  # a fresh run (attempts start over too)
            self._fire(Trigger.CONNECT)
        elif state is DeviceStatus.FAILED:
            self._recovering = False
            self._fire(Trigger.RETRY)
        elif state is DeviceStatus.BACKOFF:  # "connect now": cut the wait short, same run
            self._fire(Trigger.TIMED_OUT)

    async def _next(self, seconds: float | None) -> InboxItem | None:
        """The next current item from the inbox, or None when ``seconds`` pass."""
        deadline = math.inf if seconds is None else trio.current_time() + seconds
        with trio.move_on_at(deadline):
            while True:
                item = await self._inbox.receive()
                if isinstance(item, Command) or item.generation == self._generation:
                    return item
        return None

    # -- phase 2 and beyond: one connection's lifetime ----------------------------------------
    async def _connection(self) -> None:
        """One attempt: connect (within the connect timeout), then live on that socket."""
        self._disconnect_requested = False
        connect_scope = trio.CancelScope()  # its deadline is armed once a slot is held
        released = self._released = trio.Event()
        try:
            async with trio.open_nursery() as watch_nursery:
                watch_scope: trio.CancelScope = await watch_nursery.start(
                    self._watch_while_connecting, connect_scope
                )
                await self._attempt(connect_scope, watch_scope, self.lc.timeout)
                watch_scope.cancel()
        finally:
            released.set()

    async def _attempt(
        self,
        connect_scope: trio.CancelScope,
        watch_scope: trio.CancelScope,
        connect_timeout: float | None,
    ) -> None:
        # Every exception an attempt can end with is handled here, inside the watch nursery:
        # escaping it, they would arrive wrapped in an ExceptionGroup.
        url = self.lc.profile.server_url
        slots = self._settings.connect_slots
        holding = False
        try:
            with connect_scope:
                if slots is not None:
                    await slots.acquire()
                    holding = True
                if connect_timeout is not None:  # counted from here, slot in hand
                    connect_scope.deadline = trio.current_time() + connect_timeout
                async with self._connector.open(url) as conn:
                    if holding:
                        assert slots is not None
                        slots.release()
                        holding = False
                    watch_scope.cancel()
                    connect_scope.deadline = math.inf  # connected: the connect deadline is over
                    if not self._disconnect_requested:
                        await self._connected(conn)
        except (ConnectError, OSError) as exc:
            if self.lc.state is DeviceStatus.CONNECTING and not self._disconnect_requested:
                self._fire(Trigger.CONNECTION_FAILED, reason=str(exc) or type(exc).__name__)
        except ConnectionClosed as exc:  # closed while the context manager was leaving
            if self.lc.state in _CONNECTED_PHASES:
                self._fire(Trigger.CONNECTION_FAILED, reason=f"connection closed ({exc.code})")
        finally:
            if holding:
                assert slots is not None
                slots.release()
            self._generation += 1  # whatever that socket still says is stale from now on
        if self.lc.state is not DeviceStatus.CONNECTING:
            return
        if self._disconnect_requested:
            self._fire(Trigger.DISCONNECT)
        elif connect_scope.cancelled_caught:
            logger.info("device %s: connect to %s timed out", self.lc.device_id, redact_url(url))
            self._fire(Trigger.TIMED_OUT)

    async def _watch_while_connecting(
        self,
        connect_scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read the inbox while the handshake runs, so ``disconnect`` need not wait for it.

        Only commands can matter now (no socket of this generation exists yet): a disconnect
        abandons the attempt, connect and retry are already being done, older sockets' news
        is stale. The main task is inside ``Connector.open`` meanwhile, so the inbox still has
        exactly one reader at a time; it cancels this watch as soon as the socket is open.
        """
        with trio.CancelScope() as scope:
            task_status.started(scope)
            while True:
                item = await self._inbox.receive()
                if isinstance(item, Command) and item.name == Trigger.DISCONNECT:
                    self._disconnect_requested = True
                    connect_scope.cancel()
                    return

    async def _connected(self, conn: Connection) -> None:
        session = self._new_session(self._settings.task_name, self.lc.device_id)
        self._lease = None  # this socket's heartbeats have not started
        generation = self._generation
        grace = CLOSE_GRACE
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, conn, session, generation)
            try:
                pending = self._fire(Trigger.CONNECTION_OPENED)
                while True:
                    while pending:
                        pending = await self._perform(pending, conn, session, nursery)
                    if self.lc.state not in _CONNECTED_PHASES:
                        break
                    item = await self._next(self.lc.timeout)
                    pending = self._on_item(item)
            except trio.Cancelled:
                grace = CANCELLED_CLOSE_GRACE
                raise
            finally:
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
    ) -> list[Effect]:
        """Perform effects in order; return the effects of any event they caused."""
        follow_up: list[Effect] = []
        for effect in effects:
            if isinstance(effect, SendRegister):
                if await self._send(conn, session.register()):
                    follow_up += self._fire(Trigger.REGISTER_SENT)
                else:
                    return []
            elif isinstance(effect, RequestTelemetry):
                if not await self._send(conn, session.request_device_info()):
                    return []
            elif isinstance(effect, StartHeartbeat):
                self._recovering = True
                nursery.start_soon(self._heartbeat, conn, session, self._generation)
            elif isinstance(effect, CloseConnection | OpenConnection):
                pass  # the connection's lifetime is the ``async with`` in _connection
        return follow_up

    async def _send(self, conn: Connection, frame: str) -> bool:
        try:
            await conn.send(frame)
        except ConnectionClosed as exc:
            self._fire(Trigger.CONNECTION_FAILED, reason=f"connection closed ({exc.code})")
            return False
        return True

    def _on_item(self, item: InboxItem | None) -> list[Effect]:
        state = self.lc.state
        if item is None:
            return self._fire(Trigger.TIMED_OUT)
        if isinstance(item, Command):
            if item.name == Trigger.DISCONNECT:
                return self._fire(Trigger.DISCONNECT)
            return []  # already connecting or connected
        if isinstance(item, _Closed):
            return self._fire(Trigger.CONNECTION_FAILED, reason=item.reason)
        if isinstance(item, _LeaseExpired):
            return self._fire(
                Trigger.CONNECTION_FAILED,
                reason=f"heartbeat lease expired (silent for {item.silent_for:.1f}s)",
            )
        event = item.event
        if self._lease is not None:  # any frame on this socket shows the server alive
            self._lease.heard()
        if isinstance(event, Registered) and state is DeviceStatus.REGISTERING:
            return self._fire(Trigger.REGISTRATION_ANSWERED, accepted=True)
        if isinstance(event, Rejected) and state is DeviceStatus.REGISTERING:
            if self._recovering and event.kind in _TRANSIENT_WHILE_RECOVERING:
                return self._fire(Trigger.CONNECTION_FAILED, reason=event.reason)
            return self._fire(Trigger.REGISTRATION_ANSWERED, accepted=False, reason=event.reason)
        if isinstance(event, DeviceInfo):
            if state is DeviceStatus.TELEMETRY:
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
            if state in (DeviceStatus.REGISTERING,):
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
            await self._to_inbox.send(_Closed(generation, reason))

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
        try:
            effects = self.lc.fire(trigger, **data)
        except IllegalTransition:
            logger.exception("device %s: runner fired an illegal event", self.lc.device_id)
            raise
        if self.lc.state is DeviceStatus.BACKOFF:  # only failed or lost connections lead here
            self._recovering = True
        return effects
