"""The transport port: what protocol code needs from a message-oriented connection.

Implemented by ``stellate.adapters.websocket`` (trio-websocket, real sockets) and
``stellate.adapters.memory`` (in-process, for deterministic tests under MockClock). Protocol
and lifecycle code depend only on these names, never on trio_websocket.

Rules every implementation keeps:
* ``receive`` is called by exactly one task per connection (one reader per socket).
* ``receive`` returns a text frame as ``str`` and a binary frame as ``bytes``.
* when the peer closes, or the connection breaks, ``receive`` and ``send`` raise
  ``ConnectionClosed`` (with the close code and reason when known).
* ``aclose`` is idempotent and never raises for an already-closed connection.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

from ..errors import RemoteError

#: The path on which AIP servers (the reference's and stellate's) accept WebSocket upgrades.
AIP_PATH: Final = "/ws"


class TransportError(RemoteError):
    """Base class of transport failures."""


class ConnectError(TransportError):
    """The connection could not be opened (refused, DNS, handshake rejected or malformed, TLS).

    ``status`` carries the HTTP status when the server refused the handshake (e.g. 403, 503).
    ``retry_after`` is the server's ``Retry-After`` in seconds (``None`` when it sent none or
    an unreadable one): the earliest moment another attempt is welcome. The message says what
    failed and where, with the URL redacted and any text from the server escaped.
    """

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ConnectionClosed(TransportError):
    """The connection is closed; ``code`` is the WebSocket close code when known."""

    def __init__(self, code: int | None = None, reason: str | None = None) -> None:
        super().__init__(f"connection closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


class Connection(Protocol):
    """One open, message-oriented, bidirectional connection."""

    async def send(self, message: str | bytes) -> None: ...

    async def receive(self) -> str | bytes: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...

    @property
    def closed(self) -> bool: ...


class Connector(Protocol):
    """Opens client connections.

    ``open`` returns an async context manager because a trio-websocket client owns a nursery
    (its background reader): the connection lives exactly as long as the ``async with`` block
    of the task that opened it, so cancelling that task can leak neither task nor socket.

    Raises (on entering the context):
        ConnectError: the connection could not be established.
    """

    def open(self, url: str) -> AbstractAsyncContextManager[Connection]: ...
