"""The device agent: registers this machine on an agent server and keeps it registered.

One task per agent and one per socket, and that task does everything on its socket: it reads
with a deadline set to whichever comes first — the next heartbeat to send, or the moment the
server counts as gone (``miss_limit`` heartbeats unanswered) — so there is never a second reader
or a concurrent writer. When the server goes away the agent reconnects after a jittered,
exponentially growing wait (``Timing.backoff_delay``) that resets once a registration
succeeds: a server restart is not met by every agent at the same instant.

Some refusals no retry can fix, and the agent stops on them with :class:`AgentRefused` instead
of retrying forever: the server refused the API key (HTTP 401/403 at the handshake, or a 1008
close before the registration was answered), or refused the registration itself on the first
attempt of the run (another live agent holds the device id, or the frame was refused). After a
first success, an "id still held" refusal is our own previous socket not yet gone on the
server: retried like any other failure.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..adapters.listener import QuietLog
from ..errors import RemoteError
from ..protocol.ids import id_refusal
from ..protocol.lease import HeartbeatLease
from ..protocol.messages import ClientType
from ..protocol.rejections import (
    AUTH_REJECTED,
    RejectionKind,
    classify_close,
    classify_handshake,
)
from ..protocol.session_client import (
    DeviceSession,
    HeartbeatAck,
    Ignored,
    PeerError,
    ProtocolViolation,
    Registered,
    Rejected,
    Reply,
)
from ..protocol.transport import ConnectError, Connection, ConnectionClosed, Connector
from ..text.escape import escape_text
from ..text.redact import redact_url
from ..text.urls import InvalidUrl, parse_ws_url, with_token
from ..timing import RandomSource, Timing

if TYPE_CHECKING:
    from ..adapters.telemetry import Telemetry

__all__ = ["AGENT_TIMING", "AgentRefused", "DeviceAgent", "run_fleet"]

logger = logging.getLogger(__name__)

#: Stopping is a cancellation: the socket's reader is cancelled too, so the server's close reply
#: can never be read. Send our close frame (1001, so the server deregisters at once) and go.
GOODBYE_TIMEOUT = 0.1
#: An agent's timing: ``Timing``'s defaults, except that it comes back sooner than a
#: constellation retries (its server may be restarting), and gives a connection attempt 10 s.
AGENT_TIMING = Timing(reconnect_delay=1.0, backoff_cap=30.0, connect_timeout=10.0)


#: Numbers in a failure's text (ports, byte counts, seconds): left out of its kind.
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: Characters of a failure's text that make its kind.
KIND_LIMIT = 200


class _SessionEnded(RemoteError):
    """The current socket is done for (rejected, timed out, server silent); reconnect."""


class AgentRefused(RemoteError):
    """The server refused this agent in a way retrying cannot fix; the agent has stopped.

    ``kind`` says how (``RejectionKind.AUTH``: the API key; ``ID_STILL_HELD``: another live
    agent holds the device id; ``FINAL``: the registration frame was refused).
    """

    def __init__(self, device_id: str, kind: RejectionKind, reason: str) -> None:
        super().__init__(f"{device_id}: {reason}")
        self.device_id = device_id
        self.kind = kind
        self.reason = reason


class _Rejected(_SessionEnded):
    """The server answered the REGISTER with a refusal."""

    def __init__(self, event: Rejected) -> None:
        super().__init__(f"registration rejected: {event.reason}")
        self.event = event


class DeviceAgent:
    """A device agent: one device id, one server, registered for as long as it runs.

    Args:
        server_url: ``ws://host:port/ws`` (a ``?token=`` in it is kept).
        device_id: the id the device registers under.
        api_key: the server's shared key, added as ``?token=`` if the URL has none.
        custom_metadata: sent in ``system_info.custom_metadata``.
        timing: the agent's heartbeat (``heartbeat_interval``; the server counts as gone after
            ``miss_limit`` unanswered), backoff between attempts (``reconnect_delay``,
            ``backoff_cap``, ``jitter_floor``) and deadlines (``connect_timeout``, for the
            default connector; ``registration_timeout``). Default: :data:`AGENT_TIMING`.
        connector: opens connections (default: the trio-websocket connector, which verifies
            ``wss://`` servers against the system CA store plus ``cafile`` and gives up after
            ``timing.connect_timeout``; a connector given here keeps its own deadline).
        cafile: a PEM CA bundle to trust for ``wss://`` besides the system's (only used to build
            the default connector). There is deliberately no way to skip verification.
        info_provider: collects ``system_info`` (default: the psutil ``DeviceInfoProvider``).
        system_info: a ready ``system_info`` (skips collection; fleets share one).
        rng: jitter source (seed it in tests).
        on_registered: called after every successful registration.
        log: where the agent's lines go, limited per kind (``QuietLog``); agents of one fleet
            share one (``run_fleet``), so 200 agents meeting the same failure write three
            lines and a count, not 200 identical warnings.

    Raises:
        ValueError: ``device_id`` breaks the id rule (``stellate.protocol.ids``) or
            ``server_url`` is not a WebSocket URL (``stellate.text.urls``): retrying cannot help.
    """

    def __init__(
        self,
        server_url: str,
        device_id: str,
        *,
        api_key: str | None = None,
        custom_metadata: dict[str, Any] | None = None,
        timing: Timing = AGENT_TIMING,
        connector: Connector | None = None,
        cafile: str | None = None,
        info_provider: Telemetry | None = None,
        system_info: dict[str, Any] | None = None,
        rng: RandomSource | None = None,
        on_registered: Callable[[DeviceAgent], None] | None = None,
        log: QuietLog | None = None,
    ) -> None:
        refusal = id_refusal(device_id, ClientType.DEVICE)
        if refusal is not None:
            raise ValueError(refusal)
        try:
            parse_ws_url(server_url)
        except InvalidUrl as exc:
            raise ValueError(f"invalid server URL: {exc}") from None
        self._url = with_token(server_url, api_key)
        self.device_id = device_id
        self.custom_metadata = dict(custom_metadata or {})
        self.timing = timing
        self._connector = connector
        self._cafile = cafile
        self._info_provider = info_provider
        self.system_info = system_info
        self._rng: RandomSource = rng or random.Random()
        self.on_registered = on_registered
        self.registered = False
        self.registrations = 0
        self.failures = 0
        self.log = log if log is not None else QuietLog(logger)
        # When the server was lost (None: it was not, or this run has not registered yet).
        self._lost_at: float | None = None
        # The last failure said at WARNING: an identical one after it is said at DEBUG only.
        self._warned: str | None = None

    def __repr__(self) -> str:
        state = "registered" if self.registered else "not registered"
        return f"<DeviceAgent {self.device_id} {redact_url(self._url)} {state}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register and stay registered until cancelled.

        ``nursery.start(agent.run)`` returns once the first registration is confirmed, so a
        caller can rely on the device being on the server (``stellate up`` does).
        """
        connector = self._connector or _default_connector(self._cafile, self.timing)
        system_info = self._system_info()
        platform = str(system_info.get("platform", "unknown"))
        started = False
        while True:
            session = DeviceSession(self.device_id, system_info, platform)
            retry_after = 0.0  # a refusing server's Retry-After: the shortest next wait
            failure: str | None = None  # why this attempt failed (None: the server was lost)
            try:
                async with connector.open(self._url) as conn:
                    try:
                        await self._register(conn, session)
                        self._registered()
                        if not started:
                            started = True
                            task_status.started()
                        await self._stay_registered(conn, session)
                    except trio.Cancelled:
                        await self._say_goodbye(conn)
                        raise
            except ConnectError as exc:
                if classify_handshake(exc.status) is RejectionKind.AUTH:
                    reason = f"{AUTH_REJECTED} (HTTP {exc.status})"
                    raise self._refused(RejectionKind.AUTH, reason) from None
                failure = f"cannot connect: {exc}"
                retry_after = exc.retry_after or 0.0
            except _Rejected as exc:
                kind = exc.event.kind
                if kind is not RejectionKind.ID_STILL_HELD or self.registrations == 0:
                    raise self._refused(kind, str(exc)) from None
                failure = str(exc)
            except ConnectionClosed as exc:
                if classify_close(exc.code, registered=self.registered) is RejectionKind.AUTH:
                    reason = f"{AUTH_REJECTED} (closed {exc.code}: {exc.reason or 'no reason'})"
                    raise self._refused(RejectionKind.AUTH, reason) from None
                failure = self._lost(escape_text(exc))
            except (_SessionEnded, trio.BrokenResourceError) as exc:
                failure = self._lost(escape_text(exc))
            finally:
                self.registered = False
            self.failures += 1
            delay = max(self.timing.backoff_delay(self.failures, self._rng), retry_after)
            if failure is None:
                logger.debug("%s: reconnecting in %.2f s", self.device_id, delay)
            else:
                self._failed(failure, delay)
            await trio.sleep(delay)

    def _lost(self, reason: str) -> str | None:
        """The socket ended: a loss of the server if we were registered (one INFO line, and
        None), else a failed attempt (its reason, for :meth:`_failed`)."""
        if not self.registered:
            return reason
        self._lost_at = trio.current_time()
        self.log.note(
            "lost the server",
            logging.INFO,
            "%s: lost the server %s: %s; reconnecting",
            self.device_id,
            redact_url(self._url),
            reason,
        )
        return None

    def _failed(self, reason: str, delay: float) -> None:
        """A failed attempt: said at WARNING when it differs from the last one said (so a
        failure that keeps recurring is said once, never forever), else at DEBUG. Agents of a
        fleet meeting the same failure share one limit (``log``)."""
        if reason == self._warned:
            logger.debug("%s: %s; retrying in %.1f s", self.device_id, reason, delay)
            return
        self._warned = reason
        self.log.note(
            _kind(reason),
            logging.WARNING,
            "%s: %s; retrying in %.1f s (the same failure again is logged at DEBUG)",
            self.device_id,
            reason,
            delay,
        )

    def _refused(self, kind: RejectionKind, reason: str) -> AgentRefused:
        """The error that stops the agent, logged at WARNING (an operator must act)."""
        logger.warning("%s: %s; not retrying", self.device_id, reason)
        return AgentRefused(self.device_id, kind, reason)

    async def _say_goodbye(self, conn: Connection) -> None:
        """Stopping: close with 1001 so the server deregisters us at once (not at lease end)."""
        with trio.CancelScope(shield=True), trio.move_on_after(GOODBYE_TIMEOUT):
            await conn.aclose(1001, "agent stopping")

    def _system_info(self) -> dict[str, Any]:
        if self.system_info is None:
            provider = self._info_provider
            if provider is None:
                from ..adapters.telemetry import DeviceInfoProvider

                provider = DeviceInfoProvider()
            self.system_info = provider.collect_system_info(self.device_id, self.custom_metadata)
        return self.system_info

    def _registered(self) -> None:
        """One INFO line: the first registration, or a rejoin after a loss (how long away)."""
        if self._lost_at is None:
            self.log.note(
                "registered",
                logging.INFO,
                "%s registered on %s",
                self.device_id,
                redact_url(self._url),
            )
        else:
            self.log.note(
                "rejoined",
                logging.INFO,
                "%s: rejoined %s after %.1f s away (%d failed attempt(s))",
                self.device_id,
                redact_url(self._url),
                trio.current_time() - self._lost_at,
                self.failures,
            )
        self.registered = True
        self.registrations += 1
        self.failures = 0
        self._lost_at = None
        self._warned = None  # the next outage is said again
        if self.on_registered is not None:
            self.on_registered(self)

    async def _register(self, conn: Connection, session: DeviceSession) -> None:
        await conn.send(session.register())
        with trio.move_on_after(self.timing.registration_timeout):
            while True:
                for event in session.receive(await conn.receive()):
                    if isinstance(event, Registered):
                        return
                    if isinstance(event, Rejected):
                        raise _Rejected(event)
                    logger.warning("%s: while registering: %s", self.device_id, escape_text(event))
        raise _SessionEnded(f"no registration answer within {self.timing.registration_timeout:g} s")

    async def _stay_registered(self, conn: Connection, session: DeviceSession) -> None:
        """Heartbeat and read until the socket fails or the server stops answering.

        The server counts as gone by the heartbeat lease's rule (``HeartbeatLease``):
        ``miss_limit`` heartbeats in a row unanswered. Reading with the lease's next wake-up
        as deadline keeps this task the socket's only reader and only writer.
        """
        lease = HeartbeatLease(self.timing, trio.current_time())
        while True:
            frame: str | bytes | None = None
            with trio.move_on_at(lease.wake_at):
                frame = await conn.receive()
            now = trio.current_time()
            if frame is not None:
                for event in session.receive(frame):
                    if isinstance(event, HeartbeatAck):
                        lease.heard()
                    elif isinstance(event, Reply):
                        await conn.send(event.frame)
                    elif isinstance(event, PeerError | ProtocolViolation | Ignored):
                        logger.warning("%s: %s", self.device_id, escape_text(event))
            if lease.expired(now):
                raise _SessionEnded(
                    f"server left {self.timing.miss_limit} heartbeat(s) unanswered "
                    f"for {self.timing.lease:g} s"
                )
            if lease.beat_due(now):
                await conn.send(session.heartbeat())
                lease.sent(now)


def _kind(reason: str) -> str:
    """The kind a failure is limited and counted under: its text with the numbers left out,
    so a fleet's kinds stay few however long it runs (a byte count or a Retry-After differs
    from one failure to the next; the template does not)."""
    return _NUMBER.sub("N", reason)[:KIND_LIMIT]


def _default_connector(cafile: str | None, timing: Timing) -> Connector:
    from ..adapters.websocket import WebSocketConnector

    return WebSocketConnector(cafile=cafile, connect_timeout=timing.connect_timeout)


async def run_fleet(
    agents: list[DeviceAgent], *, on_all_registered: Callable[[], None] | None = None
) -> None:
    """Run many agents in one nursery until cancelled; report once all have registered."""
    waiting = {agent.device_id for agent in agents}

    def registered(agent: DeviceAgent) -> None:
        if agent.device_id in waiting:
            waiting.discard(agent.device_id)
            if not waiting and on_all_registered is not None:
                on_all_registered()

    log = QuietLog(logger)  # one limit per kind of line for the whole fleet
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.run)  # the count of what was held back, once a minute
        for agent in agents:
            agent.on_registered = registered
            agent.log = log
            nursery.start_soon(agent.run)
