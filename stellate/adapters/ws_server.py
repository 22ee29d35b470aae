"""The server side over real sockets: WebSocket upgrades and plain HTTP on one listener.

:func:`serve_websocket` serves one WebSocket path (``/ws``) and, beside it, plain HTTP routes
(``GET /api/health``...) given by the application. Every connection goes through the front of
:mod:`.http_front` first, which reads the request head within the handshake deadline, then:

* a WebSocket upgrade: path (404), ``?token=KEY`` with a constant-time comparison (403), room
  from the optional :class:`Admission` (503 + ``Retry-After``), then trio-websocket accepts it
  on a stream that replays the head, and the handler gets a :class:`WebSocketConnection`;
* a plain request: route (404), method (405), key (``X-API-Key`` or ``Authorization: Bearer``:
  401 when absent, 403 when wrong), room (503), then the route's answer; one request per
  connection. Without a key the routes answer only when the caller says so (``http_open``:
  the server binds loopback), else 403;
* a ``POST`` to an action (:class:`HttpActions`: what changes things, ``/api/reload``,
  ``/api/devices/{device_id}/retry``): a page of another origin (``Origin``: 403), then the
  actions' own key, compared in constant time like every key (401 absent, 403 wrong; without
  one configured every action answers 403 saying how to enable them), room (503), then the
  action, awaited within the request deadline.

Authentication comes before admission, so a client without the key learns nothing about the
server's load and reserves nothing. The adapter owns each connection's stream and closes it
when done (trio-websocket leaves a rejected stream open until the client hangs up). What a peer
does before it is authenticated (leaving, resetting, garbage, a wrong key, silence) costs at
most a short rate-limited line (:class:`~.listener.QuietLog`) and a count in
:class:`ListenerStats`, never a traceback; a handler that crashes is logged and its connection
closed with 1011; nothing takes the server down.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import NoReturn, Protocol

import attrs
import trio
import trio_websocket

from ..protocol.transport import AIP_PATH, Connection, ConnectionClosed
from ..text.redact import safe_json
from .http_front import (
    DEFAULT_MAX_HEAD_SIZE,
    BadRequest,
    HandshakeFailure,
    PeerGone,
    ReplayStream,
    RequestHead,
    RequestReader,
    Traffic,
    host_problem,
    origin_problem,
    peer_name,
    upgrade_problem,
)
from .listener import QuietLog, is_loopback_host, serve_listeners
from .ws_connection import WebSocketConnection
from .ws_limits import DEFAULT_MAX_MESSAGE_SIZE

__all__ = [
    "AcceptedRequest",
    "Admission",
    "HttpAction",
    "HttpActions",
    "HttpRequest",
    "HttpResponse",
    "HttpRoute",
    "ListenerStats",
    "ServerHandler",
    "serve_http",
    "serve_websocket",
]

logger = logging.getLogger(__name__)

#: Seconds a client refused with 503 is asked to wait (``Retry-After``).
RETRY_AFTER = 5


@attrs.frozen
class AcceptedRequest:
    """What a server handler learns about an accepted connection.

    Attributes:
        remote: the peer as ``host:port``.
        path: the request path, without the query string (which may hold the token).
    """

    remote: str
    path: str


ServerHandler = Callable[[Connection, AcceptedRequest], Awaitable[None]]
"""``async def handler(conn, info)``: serves one connection; returning closes it (1000).

Typed against the ``Connection`` port so one handler serves real and in-memory connections.
"""


@attrs.frozen
class HttpRequest:
    """A plain HTTP request that passed the route, method, key and admission checks."""

    method: str
    path: str
    query: str
    remote: str
    #: The ``{name}`` segments of an action's pattern, decoded (``device_id``).
    params: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class HttpResponse:
    """A route's answer."""

    body: bytes
    content_type: str = "application/json"
    status: int = 200

    @classmethod
    def json(cls, data: object, status: int = 200) -> HttpResponse:
        """Always valid JSON, every key the process knows masked (``safe_json``)."""
        return cls(safe_json(data).encode(), "application/json", status)


HttpRoute = Callable[[HttpRequest], HttpResponse]
"""``route(request) -> response``: synchronous, so it answers from one consistent moment."""

HttpAction = Callable[[HttpRequest], Awaitable[HttpResponse]]
"""``await action(request) -> response``: a ``POST`` that changes something (awaited within
the request deadline: an action that takes longer starts its work and answers 202)."""


@attrs.frozen
class HttpActions:
    """The ``POST`` routes of a listener and the key they require.

    Args:
        routes: by pattern: a path whose ``{name}`` segments match any one segment, handed to
            the action decoded in :attr:`HttpRequest.params`
            (``/api/devices/{device_id}/retry``).
        key: what ``X-API-Key`` or ``Authorization: Bearer`` must carry (compared in constant
            time); ``None``: every action answers 403 with ``disabled``.
        disabled: why the actions are off and how to turn them on, for that 403.
    """

    routes: Mapping[str, HttpAction] = attrs.field(factory=dict)
    key: str | None = attrs.field(default=None, repr=False)
    disabled: str = "actions are disabled: no key is configured for them"

    def match(self, path: str) -> tuple[str, HttpAction, dict[str, str]] | None:
        """The pattern and action serving ``path`` and its decoded ``{name}`` segments (the
        pattern is what the counts name: a peer cannot grow their keys), if any."""
        segments = path.split("/")
        for pattern, action in self.routes.items():
            wanted = pattern.split("/")
            if len(wanted) != len(segments):
                continue
            params: dict[str, str] = {}
            for want, got in zip(wanted, segments, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    if not got:
                        break
                    params[want[1:-1]] = urllib.parse.unquote(got, errors="strict")
                elif want != got:
                    break
            else:
                return pattern, action, params
        return None


@attrs.define
class ListenerStats:
    """What the listener counted (plain integers, always on; metrics read them when asked).

    Attributes:
        traffic: bytes received and sent on every connection, handshakes included.
        failures: connections that ended without a served WebSocket or a successful HTTP
            answer, by :class:`HandshakeFailure`.
        accept_errors: accepts that failed for want of resources, by errno name (``EMFILE``).
        http: plain HTTP requests answered, by ``(path, status)`` (unknown paths as ``other``).
        open: TCP connections accepted and not yet closed (handshaking, HTTP, WebSocket).
    """

    open: int = 0
    traffic: Traffic = attrs.Factory(Traffic)
    failures: Counter[str] = attrs.Factory(Counter)
    accept_errors: Counter[str] = attrs.Factory(Counter)
    http: Counter[tuple[str, int]] = attrs.Factory(Counter)


class Admission(Protocol):
    """Decides, after authentication, whether there is room for one more connection.

    ``admit`` runs synchronously just before the upgrade is accepted (so the decision and the
    bookkeeping it implies cannot interleave with another connection's); it returns ``None`` to
    admit or a reason to refuse with HTTP 503. For every admitted request exactly one of two
    things follows: the handler runs, or ``abandon`` is called (the client left before the
    upgrade completed, or it was a plain HTTP request, answered without holding a slot), so a
    reservation made in ``admit`` is always given back.
    """

    def admit(self, info: AcceptedRequest) -> str | None: ...

    def abandon(self, info: AcceptedRequest) -> None: ...


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _key_ok(candidate: str, api_key: str) -> bool:
    """Constant-time: both sides are hashed before ``hmac.compare_digest``.

    compare_digest alone returns early on a length mismatch, which tells a prober the key's
    length; equal-length digests take the same time whatever the candidate is.
    """
    return hmac.compare_digest(_digest(candidate), _digest(api_key))


def _token_ok(query: str, api_key: str) -> bool:
    """True when the query carries exactly one ``token`` equal to ``api_key``."""
    tokens = urllib.parse.parse_qs(query, keep_blank_values=True).get("token")
    if not tokens or len(tokens) != 1:
        return False
    return _key_ok(tokens[0], api_key)


def _presented_key(head: RequestHead) -> str | None:
    """The key of a plain request: ``X-API-Key``, else ``Authorization: Bearer`` (Prometheus)."""
    value = head.header(b"x-api-key")
    if value is None:
        auth = head.header(b"authorization")
        if auth is not None and auth[:7].lower() == b"bearer ":
            value = auth[7:].strip()
    return None if value is None else value.decode("utf-8", "surrogateescape")


def _detail(text: str) -> bytes:
    """A short JSON error body, as FastAPI (the reference's framework) writes them."""
    return json.dumps({"detail": text}).encode()


@attrs.frozen(kw_only=True)
class _Front:
    """One listener's settings and the code every accepted stream runs through."""

    handler: ServerHandler | None
    path: str
    api_key: str | None
    http_routes: Mapping[str, HttpRoute]
    http_actions: HttpActions
    http_open: bool
    #: Bound to loopback: answer only requests addressed to a loopback name (DNS rebinding).
    check_host: bool
    max_message_size: int
    max_head_size: int
    handshake_timeout: float
    close_timeout: float
    message_queue_size: int
    admission: Admission | None
    stats: ListenerStats
    log: QuietLog

    async def serve(self, stream: trio.abc.Stream) -> None:
        """One TCP connection: request head, checks, then a handler or an answer; always closes.

        The handshake deadline covers TLS (for an ``SSLStream`` it happens inside the first
        read), the request head, and the upgrade or the whole HTTP answer.
        """
        peer = peer_name(stream)
        self.stats.open += 1
        try:
            async with trio.open_nursery() as nursery:
                accepted = None
                with trio.move_on_after(self.handshake_timeout) as handshake:
                    accepted = await self._front(stream, peer, nursery)
                if handshake.cancelled_caught:
                    self.log.note(
                        HandshakeFailure.TIMEOUT,
                        logging.INFO,
                        "dropped %s: no complete request within %g s",
                        peer,
                        self.handshake_timeout,
                    )
                if accepted is not None:
                    assert self.handler is not None
                    await _run_handler(accepted, self.handler, self.close_timeout)
                nursery.cancel_scope.cancel()
        except Exception:
            # Our own bug, not the peer's doing: loud, but one connection never takes the
            # server down.
            logger.exception("connection from %s failed", peer)
        finally:
            self.stats.open -= 1
            await trio.aclose_forcefully(stream)

    async def _front(
        self, stream: trio.abc.Stream, peer: str, nursery: trio.Nursery
    ) -> tuple[WebSocketConnection, AcceptedRequest] | None:
        reader = RequestReader(stream, self.stats.traffic, max_head_size=self.max_head_size)
        try:
            head = await reader.read()
        except PeerGone as gone:
            level = logging.INFO if gone.reason is HandshakeFailure.TLS else logging.DEBUG
            self.log.note(gone.reason, level, "%s left before a whole request (%s)", peer, gone)
            return None
        except BadRequest as bad:
            self.log.note(HandshakeFailure.BAD_REQUEST, logging.INFO, "refused %s: %s", peer, bad)
            await reader.answer(bad.status, _detail(bad.detail), content_type="application/json")
            return None
        if self.check_host and (problem := host_problem(head)) is not None:
            await self._refuse(reader, HandshakeFailure.MISDIRECTED, 421, problem, peer)
            return None
        if head.is_upgrade:
            return await self._upgrade(stream, reader, head, peer, nursery)
        await self._http(reader, head, peer)
        return None

    async def _refuse(
        self,
        reader: RequestReader,
        kind: HandshakeFailure,
        status: int,
        detail: str,
        peer: str,
        *,
        level: int = logging.INFO,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.log.note(kind, level, "refused %s: %s (%d)", peer, detail, status)
        await reader.answer(
            status, _detail(detail), content_type="application/json", headers=headers or []
        )

    # -- WebSocket upgrades -------------------------------------------------------------------

    async def _upgrade(
        self,
        stream: trio.abc.Stream,
        reader: RequestReader,
        head: RequestHead,
        peer: str,
        nursery: trio.Nursery,
    ) -> tuple[WebSocketConnection, AcceptedRequest] | None:
        path = head.path
        if self.handler is None or path != self.path:
            await self._refuse(
                reader,
                HandshakeFailure.NOT_FOUND,
                404,
                f"no WebSocket at {path!r}",
                peer,
                level=logging.DEBUG,
            )
            return None
        problem = upgrade_problem(head)
        if problem is not None:
            status, detail, headers = problem
            await self._refuse(
                reader, HandshakeFailure.BAD_UPGRADE, status, detail, peer, headers=headers
            )
            return None
        cross_origin = origin_problem(head)
        if cross_origin is not None:
            await self._refuse(reader, HandshakeFailure.CROSS_ORIGIN, 403, cross_origin, peer)
            return None
        if self.api_key is not None and not _token_ok(head.query, self.api_key):
            # A WARNING (bounded like every peer's line): a client holding the wrong key, or
            # none, is something an operator must act on (a rotated key, a missed agent).
            missing = "token" not in urllib.parse.parse_qs(head.query, keep_blank_values=True)
            await self._refuse(
                reader,
                HandshakeFailure.BAD_TOKEN,
                403,
                "missing token" if missing else "wrong token",
                peer,
                level=logging.WARNING,
            )
            return None
        info = AcceptedRequest(peer, path)
        admitted = False
        try:
            if self.admission is not None:
                refusal = self.admission.admit(info)
                if refusal is not None:
                    await self._busy(reader, refusal, peer)
                    return None
                admitted = True
            replay = ReplayStream(stream, reader.received, peer, self.stats.traffic)
            request = await trio_websocket.wrap_server_stream(
                nursery,
                replay,
                message_queue_size=self.message_queue_size,
                max_message_size=self.max_message_size,
            )
            ws = await request.accept()
        except BaseException as exc:
            if admitted and self.admission is not None:
                self.admission.abandon(info)
            if isinstance(exc, trio_websocket.ConnectionClosed):
                self.log.note(
                    HandshakeFailure.RESET, logging.DEBUG, "%s left during the handshake", peer
                )
                return None
            raise
        return WebSocketConnection(ws), info

    async def _busy(self, reader: RequestReader, refusal: str, peer: str) -> None:
        self.log.note(HandshakeFailure.BUSY, logging.WARNING, "refused %s: %s (503)", peer, refusal)
        await reader.answer(
            503,
            refusal.encode("utf-8", "replace"),
            headers=[("Retry-After", str(RETRY_AFTER))],
        )

    # -- plain HTTP ---------------------------------------------------------------------------

    async def _http(self, reader: RequestReader, head: RequestHead, peer: str) -> None:
        path = head.path
        try:
            action = self.http_actions.match(path)
        except UnicodeDecodeError:
            action = None  # a segment that is not UTF-8 once decoded names nothing
        if action is not None:
            pattern, serve, params = action
            status = await self._action(reader, head, peer, serve, params)
            self.stats.http[pattern, status] += 1
            return
        route = self.http_routes.get(path)
        if route is None:
            if path == self.path and self.handler is not None:
                status, kind, detail = (
                    426,
                    HandshakeFailure.BAD_UPGRADE,
                    "WebSocket upgrade required",
                )
            else:
                status, kind, detail = 404, HandshakeFailure.NOT_FOUND, "Not Found"
            self.stats.http["other", status] += 1
            await self._refuse(
                reader,
                kind,
                status,
                detail,
                peer,
                level=logging.DEBUG,
                headers=[("Upgrade", "websocket")] if status == 426 else None,
            )
            return
        status = await self._http_route(reader, head, route, peer)
        self.stats.http[path, status] += 1

    async def _presented_key_ok(
        self, reader: RequestReader, head: RequestHead, key: str, peer: str
    ) -> int | None:
        """None when ``head`` carries ``key``; else the refusal sent (401 absent, 403 wrong)."""
        presented = _presented_key(head)
        if presented is None:
            await self._refuse(
                reader,
                HandshakeFailure.UNAUTHORIZED,
                401,
                "missing API key (X-API-Key)",
                peer,
                level=logging.WARNING,
            )
            return 401
        if not _key_ok(presented, key):
            await self._refuse(
                reader,
                HandshakeFailure.FORBIDDEN,
                403,
                "invalid API key",
                peer,
                level=logging.WARNING,
            )
            return 403
        return None

    async def _admitted(self, reader: RequestReader, head: RequestHead, peer: str) -> bool:
        """Held to the same limits as an upgrade, but the answer is computed at once and holds
        no slot: the reservation is given back before anyone could see it."""
        if self.admission is None:
            return True
        info = AcceptedRequest(peer, head.path)
        refusal = self.admission.admit(info)
        if refusal is not None:
            await self._busy(reader, refusal, peer)
            return False
        self.admission.abandon(info)
        return True

    async def _action(
        self,
        reader: RequestReader,
        head: RequestHead,
        peer: str,
        action: HttpAction,
        params: dict[str, str],
    ) -> int:
        """A ``POST`` that changes things: method, origin, the actions' key, room, then it."""
        if await self._wrong_method(reader, head, peer, ("POST",)):
            return 405
        cross_origin = origin_problem(head)
        if cross_origin is not None:  # a web page's form or fetch from elsewhere
            await self._refuse(reader, HandshakeFailure.CROSS_ORIGIN, 403, cross_origin, peer)
            return 403
        key = self.http_actions.key
        if key is None:
            await self._refuse(
                reader, HandshakeFailure.FORBIDDEN, 403, self.http_actions.disabled, peer
            )
            return 403
        refused = await self._presented_key_ok(reader, head, key, peer)
        if refused is not None:
            return refused
        if not await self._admitted(reader, head, peer):
            return 503
        request = HttpRequest(head.method, head.path, head.query, peer, params)
        try:
            response = await action(request)
        except Exception:
            logger.exception("HTTP action %s failed", head.path)
            response = HttpResponse(_detail("internal error"), status=500)
        return await self._answer(reader, head, peer, response)

    async def _wrong_method(
        self, reader: RequestReader, head: RequestHead, peer: str, allowed: tuple[str, ...]
    ) -> bool:
        """True once a method not ``allowed`` is refused (405, saying which are)."""
        if head.method in allowed:
            return False
        await self._refuse(
            reader,
            HandshakeFailure.METHOD,
            405,
            "Method Not Allowed",
            peer,
            headers=[("Allow", ", ".join(allowed))],
        )
        return True

    async def _answer(
        self, reader: RequestReader, head: RequestHead, peer: str, response: HttpResponse
    ) -> int:
        logger.debug("%s %s %d to %s", head.method, head.path, response.status, peer)
        await reader.answer(response.status, response.body, content_type=response.content_type)
        return response.status

    async def _http_route(
        self, reader: RequestReader, head: RequestHead, route: HttpRoute, peer: str
    ) -> int:
        if await self._wrong_method(reader, head, peer, ("GET", "HEAD")):
            return 405
        if self.api_key is not None:
            refused = await self._presented_key_ok(reader, head, self.api_key, peer)
            if refused is not None:
                return refused
        elif not self.http_open:
            await self._refuse(
                reader,
                HandshakeFailure.FORBIDDEN,
                403,
                "no API key configured: served on loopback only",
                peer,
            )
            return 403
        if not await self._admitted(reader, head, peer):
            return 503
        try:
            response = route(HttpRequest(head.method, head.path, head.query, peer))
        except Exception:
            logger.exception("HTTP route %s failed", head.path)
            response = HttpResponse(_detail("internal error"), status=500)
        return await self._answer(reader, head, peer, response)


async def serve_websocket(
    handler: ServerHandler | None,
    host: str | None,
    port: int,
    *,
    api_key: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    path: str = AIP_PATH,
    handshake_timeout: float = 10.0,
    close_timeout: float = 5.0,
    message_queue_size: int = 1,
    admission: Admission | None = None,
    http_routes: Mapping[str, HttpRoute] | None = None,
    http_actions: HttpActions | None = None,
    http_open: bool = False,
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    max_open: int | None = None,
    stats: ListenerStats | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve WebSocket connections (and plain HTTP routes) on ``host:port`` until cancelled.

    Supports ``port = await nursery.start(serve_websocket, handler, host, 0)``: ``started`` gets
    the port actually bound (useful with port 0). trio's default listen backlog is kept.

    Args:
        handler: called as ``await handler(conn, info)`` for every accepted connection
            (``None``: no WebSocket path; see :func:`serve_http`).
        host: interface to bind (``None``: all).
        api_key: when set, an upgrade must carry ``?token=<api_key>`` (else HTTP 403) and a
            plain request ``X-API-Key: <api_key>`` (401 without, 403 wrong).
        ssl_context: server TLS context for ``wss://``/``https://``; ``None``: plain.
        max_message_size: a larger incoming message closes the connection with 1009.
        path: the only WebSocket path; upgrades to other paths get HTTP 404.
        handshake_timeout: seconds a client gets for TCP, TLS and its request (and the
            upgrade, or the whole HTTP answer); a slow or silent client is then dropped.
        close_timeout: seconds granted to the closing handshake.
        message_queue_size: messages buffered per connection before its reader stops reading
            (the peer then meets TCP backpressure instead of growing our memory).
        admission: asked, after the path and key checks, whether there is room for the
            connection or request (``None``: always); a refusal is HTTP 503 with Retry-After.
        http_routes: plain ``GET`` routes by path.
        http_actions: ``POST`` routes that change things, behind their own key.
        http_open: without an ``api_key``, answer the routes anyway (the caller binds
            loopback); otherwise they answer 403.
        max_head_size: largest request head in bytes (larger: HTTP 431).
        max_open: most TCP connections held at once, handshakes included (``None``: no
            bound); more wait in the kernel's backlog until one closes.
        stats: where to count traffic and refusals (a fresh one if ``None``).
    """
    stats = stats if stats is not None else ListenerStats()
    listeners: list[trio.SocketListener] | list[trio.SSLListener[trio.SocketStream]]
    if ssl_context is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        sock = listeners[0].socket
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        sock = transport.socket
    bound: int = sock.getsockname()[1]
    front = _Front(
        handler=handler,
        path=path,
        api_key=api_key,
        http_routes=dict(http_routes or {}),
        http_actions=http_actions or HttpActions(),
        http_open=http_open,
        check_host=is_loopback_host(host),
        max_message_size=max_message_size,
        max_head_size=max_head_size,
        handshake_timeout=handshake_timeout,
        close_timeout=close_timeout,
        message_queue_size=message_queue_size,
        admission=admission,
        stats=stats,
        log=QuietLog(logger, counts=stats.failures),
    )
    capacity_log = QuietLog(logger, burst=1, counts=stats.accept_errors)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(front.log.run)
        nursery.start_soon(capacity_log.run)
        await nursery.start(
            partial(
                serve_listeners,
                front.serve,
                listeners,
                capacity_log=capacity_log,
                max_open=max_open,
            )
        )
        what = "WebSocket" if handler is not None else "HTTP"
        logger.info(
            "serving %s%s on %s:%d%s%s",
            what,
            "" if ssl_context is None else " over TLS",
            host or "*",
            bound,
            path if handler is not None else "",
            " (key required)" if api_key is not None else "",
        )
        task_status.started(bound)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def serve_http(
    routes: Mapping[str, HttpRoute],
    host: str | None,
    port: int,
    *,
    api_key: str | None = None,
    actions: HttpActions | None = None,
    http_open: bool = False,
    request_timeout: float = 10.0,
    max_open: int | None = None,
    stats: ListenerStats | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve plain HTTP ``GET`` routes (and ``POST`` ``actions``) only (no WebSocket), with
    the same front and rules."""
    await serve_websocket(
        None,
        host,
        port,
        api_key=api_key,
        http_routes=routes,
        http_actions=actions,
        http_open=http_open,
        handshake_timeout=request_timeout,
        max_open=max_open,
        stats=stats,
        task_status=task_status,
    )


async def _run_handler(
    accepted: tuple[WebSocketConnection, AcceptedRequest],
    handler: ServerHandler,
    close_timeout: float,
) -> None:
    """Run the handler; a crash is logged and closes with 1011, a peer's close is normal."""
    conn, info = accepted
    code, reason = 1000, None
    try:
        await handler(conn, info)
    except ConnectionClosed as exc:
        logger.debug("connection from %s closed: %s", info.remote, exc)
    except Exception:
        logger.exception("handler failed for %s", info.remote)
        code, reason = 1011, "internal error"
    finally:
        with trio.move_on_after(close_timeout):
            await conn.aclose(code, reason)
