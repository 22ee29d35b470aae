"""The client side over real sockets: ``WebSocketConnector`` implements the ``Connector`` port.

``open(url)`` is an async context manager that owns the connection's background reader task, so
the connection lives exactly as long as the ``async with`` block of the task that opened it.

It opens the TCP stream and does the TLS handshake itself before handing the stream to
``trio_websocket.wrap_client_stream``, instead of calling ``open_websocket_url``, because:

* trio-websocket swallows a failed TLS handshake (its reader task stops quietly and the client
  waits for a handshake answer that never comes): a bad certificate would show up as a timeout
  after ``connect_timeout`` seconds, not at once with its reason;
* a server that closes its socket without ever answering (it does after a 1009 close) would
  leave trio-websocket's reader waiting: this adapter closes the stream it owns when the block
  ends, whatever happened.

Secrets: messages only ever show :func:`stellate.redact.redact_url` forms.
"""

from __future__ import annotations

import logging
import math
import ssl
import urllib.parse
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import attrs
import trio
import trio_websocket

from ..protocol.transport import ConnectError
from ..redact import redact_url
from .ws_connection import WebSocketConnection
from .ws_limits import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["WebSocketConnector"]

logger = logging.getLogger(__name__)


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
