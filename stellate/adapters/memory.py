"""An in-process transport: the ``Connection``/``Connector`` ports over trio memory channels.

Deterministic under ``trio.testing.MockClock`` (no sockets, no threads, no real time), so a
whole fleet, faults included, runs in milliseconds. It keeps the WebSocket semantics the
engine relies on:

* messages keep their type (``str`` stays text, ``bytes`` stays binary) and order;
* buffers are bounded both ways (a slow reader blocks the sender, as a full socket would);
* closing one side delivers what was already sent, then the other side's ``receive`` raises
  ``ConnectionClosed(code, reason)`` with the closer's code; ``send`` after a close raises;
  the side that closed discards its unread messages (as trio-websocket does);
* :meth:`MemoryConnection.abort` drops the link without a closing handshake (code 1006).

:class:`MemoryNetwork` plays the servers: ``listen(url, handler)`` registers an
``async handler(conn, info)`` and :meth:`MemoryNetwork.open` (``network.connector``) has the
shape of ``WebSocketConnector.open``. Handlers run in a nursery the network owns.
"""

from __future__ import annotations

import hmac
import logging
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

import trio

from ..protocol.transport import ConnectError, ConnectionClosed
from ..text.urls import InvalidUrl, parse_ws_url, redact_url, token_of
from .websocket import AcceptedRequest, ServerHandler

__all__ = ["MemoryConnection", "MemoryNetwork", "memory_connection_pair"]

logger = logging.getLogger(__name__)

ABNORMAL_CLOSURE = 1006


class _Link:
    """State shared by the two ends: who closed first, and with what code."""

    __slots__ = ("closed", "code", "reason")

    def __init__(self) -> None:
        self.closed = False
        self.code: int | None = None
        self.reason: str | None = None

    def close(self, code: int | None, reason: str | None) -> None:
        if not self.closed:
            self.closed, self.code, self.reason = True, code, reason

    def error(self) -> ConnectionClosed:
        return ConnectionClosed(self.code, self.reason)


class MemoryConnection:
    """One end of an in-memory connection (implements ``Connection``)."""

    __slots__ = ("_link", "_local_closed", "_receiver", "_sender", "name")

    def __init__(
        self,
        link: _Link,
        sender: trio.MemorySendChannel[str | bytes],
        receiver: trio.MemoryReceiveChannel[str | bytes],
        name: str,
    ) -> None:
        self._link = link
        self._sender = sender
        self._receiver = receiver
        self._local_closed = False
        self.name = name

    async def send(self, message: str | bytes) -> None:
        """Queue one message for the peer; blocks while the peer's buffer is full.

        Raises:
            ConnectionClosed: either side has closed.
            TypeError: ``message`` is neither ``str`` nor ``bytes``.
        """
        if not isinstance(message, (str, bytes)):
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        if self._link.closed:
            await trio.lowlevel.checkpoint()
            raise self._link.error()
        try:
            await self._sender.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._link.error() from None

    async def receive(self) -> str | bytes:
        """Next message; after the peer closed, the remaining ones, then ConnectionClosed."""
        try:
            return await self._receiver.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._link.error() from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close both directions (idempotent); the peer sees ``code`` and ``reason``."""
        self._close(code, reason)
        await trio.lowlevel.checkpoint_if_cancelled()

    def abort(self) -> None:
        """Drop the link with no closing handshake: both sides see code 1006."""
        self._close(ABNORMAL_CLOSURE, None)

    def _close(self, code: int | None, reason: str | None) -> None:
        if self._local_closed:
            return
        self._local_closed = True
        self._link.close(code, reason)
        self._sender.close()  # the peer drains what was sent, then gets EndOfChannel
        self._receiver.close()  # our unread messages are dropped; peer's sends fail

    @property
    def closed(self) -> bool:
        """True once either side has closed."""
        return self._link.closed

    def __repr__(self) -> str:
        return f"<MemoryConnection {self.name} closed={self.closed}>"


def memory_connection_pair(
    buffer: int = 16, names: tuple[str, str] = ("client", "server")
) -> tuple[MemoryConnection, MemoryConnection]:
    """Two connected ends, each with a ``buffer``-message queue toward the other."""
    link = _Link()
    a_to_b, b_from_a = trio.open_memory_channel[str | bytes](buffer)
    b_to_a, a_from_b = trio.open_memory_channel[str | bytes](buffer)
    return (
        MemoryConnection(link, a_to_b, a_from_b, names[0]),
        MemoryConnection(link, b_to_a, b_from_a, names[1]),
    )


def _endpoint(url: str) -> tuple[str, str, str]:
    """(``scheme://netloc``, path, query) of a URL."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/", parts.query


class MemoryNetwork:
    """In-process servers keyed by URL, with a connector to reach them.

    Use as ``async with MemoryNetwork() as net:`` or ``await nursery.start(net.run)``: server
    handlers run in the network's nursery, so they outlive the connecting task's block exactly
    as a remote server would, and are cancelled when the network stops.

    Args:
        buffer: per-direction message buffer of each connection.
        raise_handler_errors: let a crashing handler crash the network (and the test) instead of
            logging it and closing the connection with 1011 like the real server does.
    """

    def __init__(self, *, buffer: int = 16, raise_handler_errors: bool = False) -> None:
        self._buffer = buffer
        self._raise_handler_errors = raise_handler_errors
        self._servers: dict[tuple[str, str], tuple[ServerHandler, str | None]] = {}
        self._hanging: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._runner: _NetworkScope | None = None
        self.connections = 0  # accepted so far (handy in assertions)

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._runner = _NetworkScope()
        self._nursery = await self._runner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._runner is not None
        runner, self._runner = self._runner, None
        try:
            return await runner.__aexit__(exc_type, exc, tb)
        finally:
            self._nursery = None

    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (``await nursery.start(network.run)``)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # -- servers ----------------------------------------------------------------------------

    def listen(self, url: str, handler: ServerHandler, *, api_key: str | None = None) -> None:
        """Serve ``url`` (scheme, host, port and path; the query is ignored) with ``handler``.

        With ``api_key``, a connect without ``?token=<api_key>`` fails with status 403.
        """
        origin, path, _ = _endpoint(url)
        self._servers[(origin, path)] = (handler, api_key)

    def unlisten(self, url: str) -> None:
        """Stop serving ``url``: new connects are refused; open connections are untouched."""
        origin, path, _ = _endpoint(url)
        self._servers.pop((origin, path), None)

    def hang(self, url: str, hanging: bool = True) -> None:
        """Make connects to ``url``'s host hang until cancelled (a black-holed address)."""
        origin, _, _ = _endpoint(url)
        (self._hanging.add if hanging else self._hanging.discard)(origin)

    # -- client side ------------------------------------------------------------------------

    @property
    def connector(self) -> MemoryNetwork:
        """An object with ``open(url)``: the network itself (it implements ``Connector``)."""
        return self

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[MemoryConnection]:
        """Connect to a listening handler for the duration of the ``async with`` block.

        Raises (on entering):
            ConnectError: nothing listens there ("refused"), wrong path (404), bad token (403).
        """
        conn = await self._connect(url)
        try:
            yield conn
        finally:
            await conn.aclose()

    async def _connect(self, url: str) -> MemoryConnection:
        safe = redact_url(url)
        try:
            target = parse_ws_url(url)
        except InvalidUrl as exc:
            raise ConnectError(f"invalid WebSocket URL: {exc}") from None
        origin, path, query = _endpoint(url)
        if origin in self._hanging:
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        if self._nursery is None:
            raise RuntimeError("MemoryNetwork is not running (use `async with` or `run`)")
        entry = self._servers.get((origin, path))
        if entry is None:
            if any(key[0] == origin for key in self._servers):
                raise ConnectError(f"{safe} refused the WebSocket upgrade: HTTP 404", status=404)
            raise ConnectError(f"connection refused ({target.address})")
        handler, api_key = entry
        if api_key is not None:
            token = token_of("?" + query)
            if token is None or not hmac.compare_digest(
                token.encode("utf-8"), api_key.encode("utf-8")
            ):
                raise ConnectError(f"{safe} refused the WebSocket upgrade: HTTP 403", status=403)
        self.connections += 1
        client, server = memory_connection_pair(
            self._buffer, (f"client#{self.connections}", f"server#{self.connections}")
        )
        info = AcceptedRequest(remote=f"memory#{self.connections}", path=path)
        self._nursery.start_soon(self._serve, handler, server, info)
        return client

    async def _serve(
        self, handler: ServerHandler, conn: MemoryConnection, info: AcceptedRequest
    ) -> None:
        code, reason = 1000, None
        try:
            await handler(conn, info)
        except ConnectionClosed:
            pass
        except Exception:
            if self._raise_handler_errors:
                raise
            logger.exception("memory handler failed for %s", info.remote)
            code, reason = 1011, "internal error"
        finally:
            conn._close(code, reason)


class _NetworkScope:
    """``trio.open_nursery()`` whose exit cancels the handlers instead of waiting for them."""

    def __init__(self) -> None:
        self._manager = trio.open_nursery()
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> trio.Nursery:
        self._nursery = await self._manager.__aenter__()
        return self._nursery

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if exc is not None and any(e is exc for e in group.exceptions):
                return False  # the body's own exception propagates, not wrapped in a group
            raise
