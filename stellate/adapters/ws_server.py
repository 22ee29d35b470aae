"""The server side over real sockets: :func:`serve_websocket`.

It serves one path (``/ws``), checks ``?token=KEY`` with a constant-time comparison and refuses
at the handshake (HTTP 404 / 403), asks an optional :class:`Admission` whether there is room
(HTTP 503 when not), then calls the handler with a :class:`WebSocketConnection`. It owns each
connection's stream and closes it when the handler is done (trio-websocket leaves a rejected or
1009-closed stream open until the client hangs up). A handler that crashes is logged and its
connection closed with 1011; it never takes the server down.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from functools import partial
from typing import NoReturn, Protocol

import attrs
import trio
import trio_websocket

from ..protocol.transport import Connection, ConnectionClosed
from ..redact import add_log_secret
from .ws_connection import WebSocketConnection, _endpoint_str
from .ws_limits import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["AcceptedRequest", "Admission", "ServerHandler", "serve_websocket"]

logger = logging.getLogger(__name__)


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
