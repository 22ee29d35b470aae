"""The transport port over real sockets: trio-websocket client and server.

Client: :class:`WebSocketConnector` implements ``Connector``: ``open(url)`` is an async context
manager that owns the connection's background reader task, so the connection lives exactly as
long as the ``async with`` block of the task that opened it.

It opens the TCP stream and does the TLS handshake itself before handing the stream to
``trio_websocket.wrap_client_stream``, instead of calling ``open_websocket_url``, because:

* trio-websocket swallows a failed TLS handshake (its reader task stops quietly and the client
  waits for a handshake answer that never comes): a bad certificate would show up as a timeout
  after ``connect_timeout`` seconds, not at once with its reason;
* a server that closes its socket without ever answering (it does after a 1009 close) would
  leave trio-websocket's reader waiting: this adapter closes the stream it owns when the block
  ends, whatever happened.

Server: :func:`serve_websocket` serves one path (``/ws``), checks ``?token=KEY`` with a
constant-time comparison and refuses at the handshake (HTTP 404 / 403), asks an optional
:class:`Admission` whether there is room (HTTP 503 when not), then calls the handler with a
:class:`WebSocketConnection`. It too owns each connection's stream and closes it when the
handler is done (trio-websocket leaves a rejected or 1009-closed stream open until the client
hangs up). A handler that crashes is logged and its connection closed with 1011; it never takes
the server down.

Secrets: messages and logs only ever show :func:`stellate.redact.redact_url` forms. trio-websocket
itself logs every handshake event at DEBUG, the request target (``/ws?token=KEY``) included, so a
:data:`~stellate.redact.LOG_FILTER` sits on its logger (``trio-websocket``) from import on, and
the server adds its key to it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, suppress
from functools import partial
from types import TracebackType
from typing import Any, NoReturn, Protocol

import attrs
import trio
import trio_websocket

from ..protocol.transport import ConnectError, Connection, ConnectionClosed
from ..redact import LOG_FILTER, add_log_secret, redact_url

__all__ = [
    "AcceptedRequest",
    "Admission",
    "ServerHandler",
    "WebSocketConnection",
    "WebSocketConnector",
    "serve_websocket",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

# Mask ``?token=`` values (and every key a server registers) in trio-websocket's own records.
# A filter on a logger sees the records logged *on that logger*, which is where trio-websocket
# logs (it has no child loggers), so every handler anywhere only gets the redacted text.
if LOG_FILTER not in logging.getLogger("trio-websocket").filters:
    logging.getLogger("trio-websocket").addFilter(LOG_FILTER)


def _closed(exc: trio_websocket.ConnectionClosed) -> ConnectionClosed:
    reason = exc.reason
    if reason is None:
        return ConnectionClosed()
    return ConnectionClosed(reason.code, reason.reason)


class WebSocketConnection:
    """A trio-websocket connection seen through the ``Connection`` port.

    A thin wrapper: one method call and one ``try`` per message, translating trio-websocket's
    ``ConnectionClosed`` into the port's (with the close code and reason).
    """

    __slots__ = ("_ws",)

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    async def send(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        try:
            await self._ws.send_message(message)
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def receive(self) -> str | bytes:
        """Next message: ``str`` for a text frame, ``bytes`` for a binary one.

        Messages the peer sent before closing are delivered first.

        Raises:
            ConnectionClosed: the connection is closed (code 1009 if a message was too big).
        """
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Run the closing handshake; idempotent, never raises for a closed connection."""
        with suppress(trio_websocket.ConnectionClosed):
            await self._ws.aclose(code, reason)

    @property
    def closed(self) -> bool:
        """True once either side started closing (or the connection broke)."""
        return self._ws.closed is not None

    @property
    def remote(self) -> str:
        """The peer's address as ``host:port`` (for logs)."""
        return _endpoint_str(self._ws.remote)

    def __repr__(self) -> str:
        return f"<WebSocketConnection {self._ws} remote={self.remote} closed={self.closed}>"


def _endpoint_str(endpoint: Any) -> str:
    if isinstance(endpoint, trio_websocket.Endpoint):
        address = str(endpoint.address)
        if ":" in address:
            address = f"[{address}]"
        return f"{address}:{endpoint.port}"
    return str(endpoint)


# ----------------------------------------------------------------------------------------------
# Client


@attrs.frozen
class _Target:
    """A parsed ``ws://`` / ``wss://`` URL (``safe`` is the redacted form, for messages)."""

    host: str
    port: int
    resource: str
    host_header: str
    secure: bool
    safe: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        safe = redact_url(url)
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConnectError(f"invalid WebSocket URL {safe}") from None
        if parts.scheme not in ("ws", "wss"):
            raise ConnectError(f"invalid WebSocket URL {safe}: the scheme must be ws or wss")
        host = parts.hostname
        if not host:
            raise ConnectError(f"invalid WebSocket URL {safe}: no host")
        secure = parts.scheme == "wss"
        if port is None:
            port = 443 if secure else 80
        resource = parts.path or "/"
        if parts.query:
            resource += "?" + parts.query
        shown_host = f"[{host}]" if ":" in host else host
        host_header = shown_host if port == (443 if secure else 80) else f"{shown_host}:{port}"
        return cls(host, port, resource, host_header, secure, safe)


class WebSocketConnector:
    """Opens client WebSocket connections (the ``Connector`` port over trio-websocket).

    One connector serves any number of connections and tasks; it holds only settings and the
    (lazily built, shared) default TLS context.

    Args:
        ssl_context: TLS settings for ``wss://`` URLs. Default: the system CA store
            (``ssl.create_default_context()``), plus ``cafile`` if given.
        cafile: extra CA bundle (PEM) to trust for ``wss://``, e.g. a private CA.
        max_message_size: larger incoming messages close the connection with 1009.
        connect_timeout: seconds for TCP connect + TLS + WebSocket handshake together. Must be
            finite in practice (``None`` waits forever): a server that accepts TCP and never
            answers the upgrade would otherwise hang the caller.
        close_timeout: seconds granted to the closing handshake before the socket is dropped.
        message_queue_size: messages buffered by the reader before it stops reading (backpressure).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        connect_timeout: float | None = 10.0,
        close_timeout: float = 5.0,
        message_queue_size: int = 1,
    ) -> None:
        self._ssl_context = ssl_context
        self._cafile = cafile
        self.max_message_size = max_message_size
        self.connect_timeout = math.inf if connect_timeout is None else connect_timeout
        self.close_timeout = close_timeout
        self.message_queue_size = message_queue_size

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context used for ``wss://`` (built on first use: loading CAs takes time)."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self._cafile)
        return self._ssl_context

    def open(self, url: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        """Connect to ``url`` (``ws://`` or ``wss://``) for the duration of an ``async with``.

        Raises (on entering):
            ConnectError: bad URL, refused, DNS failure, TLS failure, HTTP rejection of the
                upgrade (``status`` set, e.g. 403) or timeout. The message never contains the
                URL's secrets.
        """
        return _ClientSession(self, url)

    async def _open_stream(self, target: _Target) -> _ClientStream:
        """TCP connect, then TLS handshake for wss; every failure becomes a ConnectError."""
        where = f"{target.host}:{target.port}"
        try:
            tcp = await trio.open_tcp_stream(target.host, target.port)
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to {where} ({target.safe}): {_os_reason(exc)}"
            ) from None
        if not target.secure:
            return tcp
        stream = trio.SSLStream(
            tcp, self.ssl_context, server_hostname=target.host, https_compatible=True
        )
        try:
            await stream.do_handshake()
        except BaseException as exc:
            await trio.aclose_forcefully(tcp)
            if isinstance(exc, trio.BrokenResourceError):
                raise ConnectError(
                    f"TLS handshake with {where} failed ({target.safe}): "
                    f"{_tls_reason(exc.__cause__)}"
                ) from None
            raise
        return stream


_ClientStream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


def _tls_reason(cause: BaseException | None) -> str:
    """Say why a TLS handshake failed in words an operator can act on.

    A verification failure names itself ("certificate verify failed: ...") so that it is never
    mistaken for a network fault; a server that does not speak TLS at all (``wss://`` to a
    ``ws://`` port) shows up as a protocol error, and gets a hint.
    """
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message or cause.reason or str(cause)
        return f"certificate verify failed: {detail}"
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or str(cause)
        if reason in ("WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
            return f"{reason} (is the server speaking plain ws:// rather than wss://?)"
        return str(reason)
    if cause is None:
        return "connection lost during the TLS handshake (does the server speak TLS?)"
    return str(cause) or type(cause).__name__


class _ClientSession(AbstractAsyncContextManager[WebSocketConnection]):
    """One client connection's lifetime: stream, reader-task nursery, closing handshake.

    Written as a class rather than an ``@asynccontextmanager`` generator so that ``__aexit__``
    can hand the body's exception to the nursery and let it propagate untouched (not wrapped
    in an exception group) — callers catch ``ConnectionClosed``, not groups.
    """

    def __init__(self, connector: WebSocketConnector, url: str) -> None:
        self._connector = connector
        self._url = url
        self._stream: _ClientStream | None = None
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        self._connection: WebSocketConnection | None = None

    async def __aenter__(self) -> WebSocketConnection:
        if self._nursery_manager is not None:
            raise RuntimeError("a connection context can be entered only once")
        connector = self._connector
        target = _Target.parse(self._url)
        deadline = trio.current_time() + connector.connect_timeout
        with trio.move_on_at(deadline) as scope:
            stream = await connector._open_stream(target)
        if scope.cancelled_caught:
            raise _timeout(target, connector.connect_timeout)
        self._stream = stream
        nursery_manager = self._nursery_manager = trio.open_nursery()
        nursery = self._nursery = await nursery_manager.__aenter__()
        try:
            with trio.move_on_at(deadline) as scope:
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    target.host_header,
                    target.resource,
                    message_queue_size=connector.message_queue_size,
                    max_message_size=connector.max_message_size,
                )
            if scope.cancelled_caught:
                raise _timeout(target, connector.connect_timeout)
        except BaseException as exc:
            nursery.cancel_scope.cancel()
            try:
                await nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseException as group:
                raise _handshake_failure(group, target) from None
            finally:
                await trio.aclose_forcefully(stream)
            raise
        logger.debug("connected to %s", target.safe)
        self._connection = WebSocketConnection(ws)
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._nursery_manager is not None and self._nursery is not None
        assert self._stream is not None and self._connection is not None
        try:
            with trio.move_on_after(self._connector.close_timeout):
                await self._connection.aclose()
        finally:
            try:
                # The reader would otherwise wait for the server's TCP close; we own the stream.
                await trio.aclose_forcefully(self._stream)
            finally:
                # No checkpoint between cancelling the nursery and leaving it: the body of a
                # nursery runs inside its cancel scope.
                self._nursery.cancel_scope.cancel()
                try:
                    await self._nursery_manager.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    if exc is not None and any(e is exc for e in group.exceptions):
                        for other in group.exceptions:
                            if other is not exc and not isinstance(other, trio.Cancelled):
                                logger.warning("connection reader failed", exc_info=other)
                        return False  # the body's own exception propagates unchanged
                    raise _collapse(group) from None
        return False


def _os_reason(exc: OSError) -> str:
    """The most specific reason: trio reports "all attempts failed" with the causes attached."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        reasons = {
            leaf.strerror or str(leaf) for leaf in _leaves(cause) if isinstance(leaf, OSError)
        }
        if reasons:
            return "; ".join(sorted(reasons))
    return exc.strerror or str(exc) or type(exc).__name__


def _timeout(target: _Target, seconds: float) -> ConnectError:
    return ConnectError(f"timed out after {seconds:g}s connecting to {target.safe}")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _collapse(exc: BaseException) -> BaseException:
    """The one meaningful exception in a nursery's group (the group itself if there are more)."""
    leaves = _leaves(exc)
    real = [leaf for leaf in leaves if not isinstance(leaf, trio.Cancelled)]
    if len(real) == 1:
        return real[0]
    if not real and leaves:
        return leaves[0]
    return exc


def _handshake_failure(exc: BaseException, target: _Target) -> BaseException:
    """Map what came out of the handshake nursery to ConnectError (cancellation stays as is)."""
    for leaf in _leaves(exc):
        if isinstance(leaf, trio_websocket.ConnectionRejected):
            return ConnectError(
                f"{target.safe} refused the WebSocket upgrade: HTTP {leaf.status_code}",
                status=leaf.status_code,
            )
    collapsed = _collapse(exc)
    if isinstance(collapsed, (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed)):
        return ConnectError(f"WebSocket handshake with {target.safe} failed")
    return collapsed


# ----------------------------------------------------------------------------------------------
# Server


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


class Admission(Protocol):
    """Decides, at the handshake, whether there is room for one more connection.

    ``admit`` runs synchronously just before the upgrade is accepted (so the decision and the
    bookkeeping it implies cannot interleave with another connection's); it returns ``None`` to
    admit or a reason to refuse with HTTP 503. For every admitted request exactly one of two
    things follows: the handler runs, or (the client left before the upgrade completed)
    ``abandon`` is called, so a reservation made in ``admit`` is always given back.
    """

    def admit(self, info: AcceptedRequest) -> str | None: ...

    def abandon(self, info: AcceptedRequest) -> None: ...


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _token_ok(query: str, api_key: str) -> bool:
    """True when the query carries exactly one ``token`` equal to ``api_key``.

    Both sides are hashed before ``hmac.compare_digest``: the comparison then takes the same
    time whatever the candidate is, its length included (compare_digest alone returns early on
    a length mismatch, which tells a prober the key's length).
    """
    tokens = urllib.parse.parse_qs(query, keep_blank_values=True).get("token")
    if not tokens or len(tokens) != 1:
        return False
    return hmac.compare_digest(_digest(tokens[0]), _digest(api_key))


async def serve_websocket(
    handler: ServerHandler,
    host: str | None,
    port: int,
    *,
    api_key: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    path: str = "/ws",
    handshake_timeout: float = 10.0,
    close_timeout: float = 5.0,
    message_queue_size: int = 1,
    admission: Admission | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve WebSocket connections on ``host:port`` until cancelled.

    Supports ``port = await nursery.start(serve_websocket, handler, host, 0)``: ``started`` gets
    the port actually bound (useful with port 0). trio's default listen backlog is kept.

    Args:
        handler: called as ``await handler(conn, info)`` for every accepted connection.
        host: interface to bind (``None``: all).
        api_key: when set, a request must carry ``?token=<api_key>`` (else HTTP 403).
        ssl_context: server TLS context for ``wss://``; ``None`` serves plain ``ws://``.
        max_message_size: a larger incoming message closes the connection with 1009.
        path: the only path served; other paths get HTTP 404.
        handshake_timeout: seconds a client gets to complete TCP, TLS and the upgrade; a
            slow or silent client is dropped when they run out.
        close_timeout: seconds granted to the closing handshake.
        message_queue_size: messages buffered per connection before its reader stops reading
            (the peer then meets TCP backpressure instead of growing our memory).
        admission: asked, after the path and token checks, whether there is room for the
            connection (``None``: always admitted); a refusal is HTTP 503 with Retry-After.
    """
    add_log_secret(api_key)
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
    serve_one = partial(
        _serve_connection,
        handler=handler,
        api_key=api_key,
        path=path,
        max_message_size=max_message_size,
        handshake_timeout=handshake_timeout,
        close_timeout=close_timeout,
        message_queue_size=message_queue_size,
        admission=admission,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve_one, listeners)
        logger.info(
            "serving %s on %s:%d%s%s",
            "WebSocket" if ssl_context is None else "WebSocket over TLS",
            host or "*",
            bound,
            path,
            " (token required)" if api_key is not None else "",
        )
        task_status.started(bound)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve_connection(
    stream: trio.abc.Stream,
    *,
    handler: ServerHandler,
    api_key: str | None,
    path: str,
    max_message_size: int,
    handshake_timeout: float,
    close_timeout: float,
    message_queue_size: int,
    admission: Admission | None,
) -> None:
    """One TCP connection: handshake, checks, handler; always closes the stream it owns.

    The handshake deadline covers the TLS handshake too: for an ``SSLStream`` it happens
    lazily inside the first read, i.e. inside ``wrap_server_stream``.
    """
    try:
        async with trio.open_nursery() as nursery:
            ws = None
            with trio.move_on_after(handshake_timeout) as handshake:
                request = await trio_websocket.wrap_server_stream(
                    nursery,
                    stream,
                    message_queue_size=message_queue_size,
                    max_message_size=max_message_size,
                )
                ws = await _check_and_accept(request, api_key, path, admission)
            if handshake.cancelled_caught:
                logger.info("dropped a client that did not finish its handshake in time")
            if ws is not None:
                await _run_handler(ws, handler, close_timeout)
            nursery.cancel_scope.cancel()
    except Exception:
        # Never let one connection take the server down (serve_listeners would propagate).
        logger.exception("WebSocket connection failed")
    finally:
        await trio.aclose_forcefully(stream)


async def _check_and_accept(
    request: trio_websocket.WebSocketRequest,
    api_key: str | None,
    path: str,
    admission: Admission | None,
) -> tuple[WebSocketConnection, AcceptedRequest] | None:
    """Check path, token and room; accept, or reject with 404/403/503 (``None``).

    The order matters: authentication comes before admission, so a client without the key
    learns nothing about the server's load, and only authenticated requests reserve a slot.
    """
    remote = _endpoint_str(request.remote)
    target = urllib.parse.urlsplit(request.path)
    info = AcceptedRequest(remote, target.path)
    admitted = False
    try:
        if target.path != path:
            logger.info("refused %s: unknown path %r (404)", remote, target.path)
            await request.reject(404, body=b"not found")
            return None
        if api_key is not None and not _token_ok(target.query, api_key):
            logger.warning("refused %s: missing or wrong token (403)", remote)
            await request.reject(403, body=b"forbidden")
            return None
        if admission is not None:
            refusal = admission.admit(info)
            if refusal is not None:
                logger.warning("refused %s: %s (503)", remote, refusal)
                await request.reject(
                    503,
                    extra_headers=[(b"Retry-After", b"5")],
                    body=refusal.encode("utf-8", "replace"),
                )
                return None
            admitted = True
        ws = await request.accept()
    except BaseException as exc:
        if admitted and admission is not None:
            admission.abandon(info)
        if isinstance(exc, trio_websocket.ConnectionClosed):
            logger.debug("client %s left during the handshake", remote)
            return None
        raise
    return WebSocketConnection(ws), info


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
