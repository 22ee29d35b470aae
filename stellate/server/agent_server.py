"""The AIP agent server at the trio edge: sockets in, ``ServerSession`` decisions out.

Each connection is served by exactly one task (the one ``serve_websocket`` gives the handler),
which reads, feeds the session, and performs its actions. Nothing else ever writes to that
socket: when one connection must end another (a device left, so its constellations are told;
a stale registration is replaced), it leaves a notice on the other connection's handle and
cancels that connection's read, and the owner sends the last frame and closes. All waiting is
on trio deadlines (``CancelScope.deadline``), so ``trio.testing.MockClock`` drives the
registration deadline and the heartbeat lease in tests.

Security defaults (the README's Security section has the whole picture): the server binds
127.0.0.1; it will not listen on any other interface without an API key unless told
``insecure_no_auth``; it serves ``wss://`` when given a TLS context; and it bounds what clients
can hold — connections, sockets that have not registered yet, frame size, and the time a socket
may stay silent or refuse to read.
"""

from __future__ import annotations

import logging
import resource
import ssl

import attrs
import trio

from ..adapters.listener import is_loopback_host
from ..adapters.ws_server import (
    AcceptedRequest,
    HttpRequest,
    HttpResponse,
    HttpRoute,
    ListenerStats,
    serve_websocket,
)
from ..errors import LocalError
from ..protocol.registry import ClientRegistry
from ..protocol.rejections import RejectionKind
from ..protocol.server_counts import FrameRefusal, ServerCounts
from ..protocol.session_client import default_new_id, default_now
from ..protocol.session_server import (
    CLOSE_TOO_BIG,
    Close,
    Evict,
    Send,
    ServerAction,
    ServerPhase,
    ServerPolicy,
    ServerSession,
)
from ..protocol.transport import Connection, ConnectionClosed
from .metrics import metrics_route

__all__ = [
    "API_KEY_ENV",
    "AgentServer",
    "InsecureBindError",
    "default_max_connections",
    "server_ssl_context",
]

logger = logging.getLogger(__name__)

API_KEY_ENV = "STELLATE_API_KEY"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
#: File descriptors kept free of connections (listeners, logs, the 503 answers themselves).
FD_HEADROOM = 64
#: WebSocket close code "try again later": a connection over the limits on a transport that
#: has no HTTP handshake to refuse it with 503 (the in-memory one).
CLOSE_TRY_AGAIN_LATER = 1013


class InsecureBindError(LocalError, ValueError):
    """Refused to serve off loopback without an API key (pass ``insecure_no_auth`` to insist)."""


def default_max_connections() -> int:
    """What this process can hold: its open-file soft limit less ``FD_HEADROOM``.

    A server that runs out of descriptors stops accepting and its clients hang until their
    connect timeout; below this cap they get an immediate HTTP 503 instead.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65536
    return max(16, soft - FD_HEADROOM)


def server_ssl_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server TLS context with the certificate chain of ``certfile`` (key in it or ``keyfile``).

    Python's defaults for a server context: TLS 1.2 at least, no compression, modern ciphers.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: the files are not a certificate and its matching private key.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


@attrs.define
class _Notice:
    """Another connection asked this one to say ``frame`` and close."""

    frame: str | None
    code: int
    reason: str


@attrs.define
class _Handle:
    """What other tasks may touch of a connection: its notice slot and its read's scope."""

    conn: Connection
    notice: _Notice | None = None
    read_scope: trio.CancelScope | None = None


_SHUTDOWN_NOTICE = _Notice(None, 1001, "server shutting down")


class AgentServer:
    """An AIP agent server: devices register on it, constellations ask it about them.

    Args:
        api_key: shared key clients must present as ``?token=`` (checked at the handshake,
            constant-time; never logged). ``None`` accepts everyone, and is only allowed on a
            loopback address unless ``insecure_no_auth``.
        policy: what clients are allowed: its ``timing`` gives the registration deadline (for
            the WebSocket handshake, and again for the register frame) and the heartbeat lease.
        ssl_context: serve ``wss://`` with this server context (see :func:`server_ssl_context`);
            ``None`` serves plain ``ws://``.
        max_message_size: a larger frame closes its connection with 1009 (default 1 MiB).
        max_connections: WebSocket connections held at once; one more is refused at the
            handshake with HTTP 503 (default: :func:`default_max_connections`).
        max_unregistered: connections that have not registered yet; one more is refused with
            HTTP 503 (default: a quarter of ``max_connections``, at least 16). Keeps room for
            registered clients when many sockets arrive and say nothing.
        send_timeout: a peer that does not take a frame within this many seconds is dropped
            (so a client that never reads holds its socket for at most this plus
            ``close_timeout``, and never slows anyone else: each socket has its own task).
        close_timeout: seconds granted to a closing handshake.
        insecure_no_auth: allow serving without an API key on a non-loopback interface.
        metrics: count what the sessions decide and serve ``GET /metrics`` (Prometheus text,
            same key rule as ``/api/*``); see :mod:`stellate.server.metrics`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        policy: ServerPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_connections: int | None = None,
        max_unregistered: int | None = None,
        send_timeout: float = 10.0,
        close_timeout: float = 5.0,
        insecure_no_auth: bool = False,
        metrics: bool = True,
    ) -> None:
        policy = policy or ServerPolicy()
        if max_connections is None:
            max_connections = default_max_connections()
        if max_unregistered is None:
            max_unregistered = max(16, max_connections // 4)
        if max_message_size < 1 or max_connections < 1 or max_unregistered < 1:
            raise ValueError("max_message_size, max_connections and max_unregistered must be >= 1")
        self._api_key = api_key or None
        self.policy = policy
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        self.max_connections = max_connections
        self.max_unregistered = min(max_unregistered, max_connections)
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.insecure_no_auth = insecure_no_auth
        self.registry = ClientRegistry()
        self._handles: dict[ServerSession, _Handle] = {}
        self._unregistered: set[ServerSession] = set()
        self._gate = _Gate(self)
        #: What the listener counted (traffic, refused requests and handshakes by kind).
        self.listener_stats = ListenerStats()
        #: What the sessions decided (registrations, refusals, heartbeats); None: not counted.
        self.counts = ServerCounts() if metrics else None
        self._closing = False
        self._all_closed = trio.Event()
        self._all_closed.set()

    @property
    def connections(self) -> int:
        """Connections held now (served, or admitted and about to be)."""
        return len(self._handles) + self._gate.reserved

    @property
    def unregistered(self) -> int:
        """Connections held now that have not registered (yet)."""
        return len(self._unregistered) + self._gate.reserved

    def _refusal(self) -> str | None:
        """Why one more connection cannot be taken now (``None``: it can)."""
        if self._closing:
            return "server shutting down"
        if self.connections >= self.max_connections:
            return f"too many connections (limit {self.max_connections})"
        if self.unregistered >= self.max_unregistered:
            return f"too many connections waiting to register (limit {self.max_unregistered})"
        return None

    def __repr__(self) -> str:  # never shows the key
        return f"<AgentServer clients={len(self.registry)} connections={self.connections}>"

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 5005,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``ws://host:port/ws`` (``wss://`` with a TLS context) until cancelled.

        ``nursery.start`` gets the bound port.

        Raises:
            InsecureBindError: ``host`` is not a loopback address, there is no API key, and
                ``insecure_no_auth`` was not given.
            OSError: the address cannot be bound.
        """
        self.check_bind(host)
        if not is_loopback_host(host) and self.ssl_context is None:
            logger.warning(
                "serving %s without TLS: the API key and all traffic cross the network in "
                "clear text (give a certificate to serve wss://)",
                host or "every interface",
            )
        await serve_websocket(
            self._serve_accepted,
            host,
            port,
            api_key=self._api_key,
            ssl_context=self.ssl_context,
            max_message_size=self.max_message_size,
            handshake_timeout=self.policy.timing.registration_timeout,
            close_timeout=self.close_timeout,
            admission=self._gate,
            http_routes=self.http_routes(),
            http_open=self.http_open(host),
            stats=self.listener_stats,
            task_status=task_status,
        )

    # -- the HTTP API, on the same port ---------------------------------------------------------

    def http_routes(self) -> dict[str, HttpRoute]:
        """The plain HTTP routes served beside ``/ws`` (the reference server's API)."""
        routes: dict[str, HttpRoute] = {
            "/api/health": self._api_health,
            "/api/clients": self._api_clients,
        }
        if self.counts is not None:
            routes["/metrics"] = metrics_route(self)
        return routes

    def http_open(self, host: str | None) -> bool:
        """Whether the HTTP routes answer without a key: only a keyless server on loopback."""
        return self._api_key is None and is_loopback_host(host)

    def online_clients(self) -> list[str]:
        """Ids of the registered devices and constellations, in registration order."""
        return [entry.client_id for entry in self.registry]

    def _api_health(self, _request: HttpRequest) -> HttpResponse:
        return HttpResponse.json({"status": "healthy", "online_clients": self.online_clients()})

    def _api_clients(self, _request: HttpRequest) -> HttpResponse:
        return HttpResponse.json({"online_clients": self.online_clients()})

    def check_bind(self, host: str | None) -> None:
        """Refuse to expose an unauthenticated server beyond this machine.

        Raises:
            InsecureBindError: as for :meth:`serve`.
        """
        if self._api_key is None and not self.insecure_no_auth and not is_loopback_host(host):
            raise InsecureBindError(
                f"refusing to serve on {host or 'every interface'} without an API key: anyone "
                f"who can reach it could register devices. Set {API_KEY_ENV} (or --api-key-file),"
                " bind 127.0.0.1, or pass --insecure-no-auth to accept the risk."
            )

    async def _serve_accepted(self, conn: Connection, _request: AcceptedRequest) -> None:
        # The gate reserved this connection's slot at the handshake; take it over before the
        # first checkpoint, so the counts never miss it.
        self._gate.reserved -= 1
        await self._handle(conn, admitted=True)

    async def handle_connection(self, conn: Connection) -> None:
        """Serve one accepted connection until it ends (any transport: tests use memory).

        Connections that did not come through :meth:`serve`'s handshake are held to the same
        limits here: one too many is closed at once with 1013 (try again later).
        """
        await self._handle(conn, admitted=False)

    async def _handle(self, conn: Connection, *, admitted: bool) -> None:
        if not admitted:
            refusal = self._refusal()
            if refusal is not None and not self._closing:
                logger.warning("refused a connection: %s (1013)", refusal)
                await self._close(conn, CLOSE_TRY_AGAIN_LATER, refusal)
                return
        session = ServerSession(
            self.registry,
            trio.current_time(),
            policy=self.policy,
            now=default_now,
            new_id=default_new_id,
            counts=self.counts,
        )
        handle = _Handle(conn)
        if self._closing:
            handle.notice = _SHUTDOWN_NOTICE
        self._handles[session] = handle
        self._unregistered.add(session)
        self._all_closed = trio.Event() if self._all_closed.is_set() else self._all_closed
        try:
            await self._serve_session(session, handle)
        finally:
            del self._handles[session]
            self._unregistered.discard(session)
            self._deliver(session.connection_lost(trio.current_time()))
            if not self._handles:
                self._all_closed.set()

    async def shutdown(self) -> None:
        """Close every connection with 1001 (going away) and wait, at most ``close_timeout``.

        Cancelling ``serve`` alone would drop the sockets without a closing handshake (the
        peers would see 1006); agents reconnect either way, but a clean 1001 tells them why.
        Connections accepted after this call are closed at once.
        """
        self._closing = True
        for handle in self._handles.values():
            if handle.notice is None:
                handle.notice = _SHUTDOWN_NOTICE
                if handle.read_scope is not None:
                    handle.read_scope.cancel()
        with trio.move_on_after(self.close_timeout):
            await self._all_closed.wait()

    async def _serve_session(self, session: ServerSession, handle: _Handle) -> None:
        conn = handle.conn
        while session.phase is not ServerPhase.CLOSED:
            if handle.notice is not None:
                await self._leave_on_notice(handle, handle.notice)
                return
            frame: str | bytes | None = None
            with trio.CancelScope(deadline=session.deadline) as scope:
                handle.read_scope = scope
                try:
                    frame = await conn.receive()
                except ConnectionClosed as exc:
                    logger.debug("%r: connection closed (%s)", session, exc.code)
                    if exc.code == CLOSE_TOO_BIG and self.counts is not None:
                        self._count_too_big(session)
                    return
                finally:
                    handle.read_scope = None
            if frame is None:
                if handle.notice is not None:
                    continue  # another connection asked us to leave
                actions = session.deadline_passed(trio.current_time())
            else:
                actions = session.receive(frame, trio.current_time())
            if session.phase is not ServerPhase.AWAITING_REGISTER:
                self._unregistered.discard(session)
            if not await self._perform(handle, actions):
                return

    def _count_too_big(self, session: ServerSession) -> None:
        """The transport closed a connection with 1009: a refused frame (or registration)."""
        assert self.counts is not None
        if session.phase is ServerPhase.REGISTERED:
            self.counts.refused[FrameRefusal.TOO_BIG] += 1
        elif session.phase is ServerPhase.AWAITING_REGISTER:
            self.counts.rejected[RejectionKind.FINAL] += 1

    async def _perform(self, handle: _Handle, actions: list[ServerAction]) -> bool:
        """Carry out a session's actions; False once the connection is finished."""
        self._deliver(actions)
        for action in actions:
            if isinstance(action, Send):
                if not await self._send(handle.conn, action.frame):
                    return False
            elif isinstance(action, Close):
                await self._close(handle.conn, action.code, action.reason)
                return False
        return True

    def _deliver(self, actions: list[ServerAction]) -> None:
        """Hand ``Evict`` actions to the connections they name (never blocks)."""
        for action in actions:
            if not isinstance(action, Evict):
                continue
            other = self._handles.get(action.session)
            if other is None or other.notice is not None:
                continue
            other.notice = _Notice(action.frame, action.code, action.reason)
            if other.read_scope is not None:
                other.read_scope.cancel()

    async def _leave_on_notice(self, handle: _Handle, notice: _Notice) -> None:
        if notice.frame is not None and not await self._send(handle.conn, notice.frame):
            return
        await self._close(handle.conn, notice.code, notice.reason)

    async def _send(self, conn: Connection, frame: str) -> bool:
        with trio.move_on_after(self.send_timeout) as scope:
            try:
                await conn.send(frame)
            except ConnectionClosed:
                return False
        if scope.cancelled_caught:
            # The transport's own teardown drops the socket once the handler returns.
            logger.warning("peer did not take a frame within %g s; dropping it", self.send_timeout)
            return False
        return True

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        with trio.move_on_after(self.close_timeout):
            await conn.aclose(code, reason)


class _Gate:
    """The server's :class:`~stellate.adapters.websocket.Admission`: limits at the handshake.

    ``reserved`` counts connections admitted whose handler has not started yet, so that two
    handshakes finishing together cannot both take the last slot.
    """

    def __init__(self, server: AgentServer) -> None:
        self._server = server
        self.reserved = 0

    def admit(self, info: AcceptedRequest) -> str | None:
        refusal = self._server._refusal()
        if refusal is None:
            self.reserved += 1
        return refusal

    def abandon(self, info: AcceptedRequest) -> None:
        self.reserved -= 1
