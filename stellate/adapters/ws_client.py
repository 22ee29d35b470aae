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
  ends, whatever happened;
* a malformed answer to the upgrade (bad status line, wrong ``Sec-WebSocket-Accept``, headers
  that are not headers, a close or reset mid-answer) makes trio-websocket fail with an h11
  error that says nothing about the server, or wait until the timeout: during the handshake
  the stream is read through an :class:`~.ws_handshake.UpgradeCheck` (``_GuardedStream``),
  so every way an upgrade can fail is one :class:`ConnectError` with its reason, at once.

URLs are read by :func:`stellate.text.urls.parse_ws_url`; messages only ever show redacted URLs
and escaped server text.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import ssl
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import h11
import trio
import trio_websocket
import wsproto.utilities

from ..protocol.transport import AIP_PATH, ConnectError
from ..text.escape import escape_text
from ..text.urls import InvalidUrl, WsUrl, parse_ws_url
from .ws_connection import WebSocketConnection
from .ws_handshake import UpgradeCheck, UpgradeFailed
from .ws_limits import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["WebSocketConnector"]

logger = logging.getLogger(__name__)


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
                upgrade (``status`` set, e.g. 403; ``retry_after`` from its header), an answer
                that is not a valid upgrade, a connection closed or reset mid-handshake, or
                timeout. The message never contains the URL's secrets.
        """
        return _ClientSession(self, url)

    async def _open_stream(self, target: WsUrl) -> _ClientStream:
        """TCP connect, then TLS handshake for wss; every failure becomes a ConnectError."""
        where = target.address
        try:
            tcp = await _open_tcp(target.host, target.port)
        except socket.gaierror as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ConnectError(f"cannot resolve {target.host}: {reason} ({target.safe})") from None
        except OSError as exc:
            raise ConnectError(f"{_os_reason(exc)} ({where})") from None
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


async def _open_tcp(host: str, port: int) -> trio.SocketStream:
    """TCP connect; an IP address is connected to directly.

    ``trio.open_tcp_stream`` resolves the name and races the addresses it gets (happy
    eyeballs) in a nursery of its own; for an address there is nothing to resolve or race, and
    skipping both is most of the client's connect cost (docs/performance.md).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return await trio.open_tcp_stream(host, port)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


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
        try:
            target = parse_ws_url(self._url)
        except InvalidUrl as exc:
            raise ConnectError(f"invalid WebSocket URL: {exc}") from None
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
                    _GuardedStream(stream, target),  # type: ignore[arg-type]
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
            if not self._connection.closed:  # the body did not close it (a closed one: no-op)
                with trio.move_on_after(self._connector.close_timeout):
                    await self._connection.aclose()
        finally:
            try:
                # The reader would otherwise wait for the server's TCP close; we own the stream.
                if not _socket_closed(self._stream):
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


def _socket_closed(stream: _ClientStream) -> bool:
    """True once the socket under ``stream`` is closed (trio-websocket closes it at the end of
    its closing handshake): closing it again would only cost a cancelled checkpoint."""
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = getattr(inner, "socket", None)  # None: a stream of another kind (tests' memory pairs)
    return sock is not None and bool(sock.fileno() == -1)


def _os_reason(exc: OSError) -> str:
    """The most specific reason, in the system's words (``connection refused``).

    trio reports "all attempts failed" with one cause per address tried, and a single failure
    as "Error connecting to ('127.0.0.1', 9): Connection refused" with only the errno to go by.
    """
    cause = exc.__cause__
    leaves = _leaves(cause) if isinstance(cause, BaseExceptionGroup) else [exc]
    reasons = {_errno_text(leaf) for leaf in leaves if isinstance(leaf, OSError)}
    return "; ".join(sorted(reasons)) or str(exc) or type(exc).__name__


def _errno_text(exc: OSError) -> str:
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return escape_text(exc.strerror or str(exc) or type(exc).__name__)


def _path_hint(target: WsUrl, status: int) -> str:
    """For a 404 on a path other than ``/ws``: where AIP servers answer (``ws://h:p`` without
    a path is the usual slip; retrying it can never succeed)."""
    if status != 404 or target.resource.partition("?")[0] == AIP_PATH:
        return ""
    scheme = "wss" if target.secure else "ws"
    return f"; AIP servers answer on {AIP_PATH}: try {scheme}://{target.host_header}{AIP_PATH}"


def _timeout(target: WsUrl, seconds: float) -> ConnectError:
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


def _handshake_failure(exc: BaseException, target: WsUrl) -> BaseException:
    """Map what came out of the handshake nursery to ConnectError (cancellation stays as is).

    The guard turns every failure it can see into :class:`UpgradeFailed`; an h11 or wsproto
    protocol error can only come from a rule of wsproto's that the guard does not check, and
    still becomes a failed attempt of this connection, not a crash of its caller.
    """
    for leaf in _leaves(exc):
        if isinstance(leaf, UpgradeFailed):
            if leaf.status is not None:
                return ConnectError(
                    f"{target.safe} refused the WebSocket upgrade: {leaf.reason}"
                    + _path_hint(target, leaf.status),
                    status=leaf.status,
                    retry_after=leaf.retry_after,
                )
            return ConnectError(f"WebSocket handshake with {target.safe} failed: {leaf.reason}")
    for leaf in _leaves(exc):
        if isinstance(leaf, trio_websocket.ConnectionRejected):  # pragma: no cover - guarded
            return ConnectError(
                f"{target.safe} refused the WebSocket upgrade: HTTP {leaf.status_code}",
                status=leaf.status_code,
            )
        if isinstance(leaf, h11.ProtocolError | wsproto.utilities.ProtocolError):
            reason = escape_text(str(leaf) or type(leaf).__name__)
            return ConnectError(f"WebSocket handshake with {target.safe} failed: {reason}")
    collapsed = _collapse(exc)
    if isinstance(collapsed, (trio_websocket.HandshakeError, trio_websocket.ConnectionClosed)):
        return ConnectError(f"WebSocket handshake with {target.safe} failed")
    return collapsed


#: Once a refusal's status line is in, how long its body (the server's reason) is waited for.
REASON_GRACE = 1.0


class _GuardedStream(trio.abc.Stream):
    """The connection's stream as trio-websocket sees it: the handshake passes an UpgradeCheck.

    Until the server's ``101`` has been checked, everything sent and received is shown to the
    check, and a broken or closed connection becomes :class:`UpgradeFailed` (trio-websocket
    would wait for an answer that cannot come). From then on, ``send_all`` and
    ``receive_some`` are the inner stream's own bound methods: no cost per message.
    """

    def __init__(self, inner: _ClientStream, target: WsUrl) -> None:
        self._inner = inner
        self._target = target
        self._check = UpgradeCheck()

    def __repr__(self) -> str:  # trio-websocket shows a stream it cannot name by its repr
        return self._target.address

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check.request_sent(bytes(data))
        try:
            await self._inner.send_all(data)
        except trio.BrokenResourceError as exc:
            raise UpgradeFailed(
                f"the connection broke while sending the upgrade request ({_broken(exc)})"
            ) from None

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            if self._check.refusal_pending:
                with trio.move_on_after(REASON_GRACE) as scope:
                    data = await self._inner.receive_some(max_bytes)
                if scope.cancelled_caught:
                    raise self._check.refused()
            else:
                data = await self._inner.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            if self._check.refusal_pending:
                raise self._check.refused() from None
            raise UpgradeFailed(
                f"the connection broke during the WebSocket handshake ({_broken(exc)})"
            ) from None
        if self._check.answer_received(bytes(data)):
            # Upgraded: from now on trio-websocket talks to the inner stream directly.
            self.receive_some = self._inner.receive_some  # type: ignore[method-assign]
            self.send_all = self._inner.send_all  # type: ignore[method-assign]
        return data

    async def aclose(self) -> None:
        await self._inner.aclose()


def _broken(exc: trio.BrokenResourceError) -> str:
    cause = exc.__cause__
    if isinstance(cause, OSError):
        return cause.strerror or type(cause).__name__
    if cause is not None:
        return escape_text(str(cause) or type(cause).__name__)
    return str(exc) or "connection reset"
