"""The transport port over real sockets (trio-websocket): one import for both sides.

* :mod:`.ws_client` — :class:`WebSocketConnector` (``Connector``);
* :mod:`.ws_server` — :func:`serve_websocket`, :class:`AcceptedRequest`, :class:`Admission`;
* :mod:`.ws_connection` — :class:`WebSocketConnection` (``Connection``), used by both;
* :mod:`.ws_limits` — shared limits and the redacting filter on trio-websocket's logger.
"""

from __future__ import annotations

from .ws_client import WebSocketConnector
from .ws_connection import WebSocketConnection
from .ws_limits import DEFAULT_MAX_MESSAGE_SIZE
from .ws_server import AcceptedRequest, Admission, ServerHandler, serve_websocket

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "AcceptedRequest",
    "Admission",
    "ServerHandler",
    "WebSocketConnection",
    "WebSocketConnector",
    "serve_websocket",
]
