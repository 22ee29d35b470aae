"""One WebSocket connection seen through the ``Connection`` port (client and server side).

trio-websocket's connection object is wrapped thinly: one call and one ``try`` per message,
translating its ``ConnectionClosed`` into the port's (close code and reason kept).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import trio_websocket

from ..protocol.transport import ConnectionClosed

__all__ = ["WebSocketConnection"]


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
