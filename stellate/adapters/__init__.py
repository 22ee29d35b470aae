"""Adapters: the ports of ``stellate.protocol`` and ``stellate.fsm`` over real I/O.

* :mod:`.websocket` — trio-websocket client (``WebSocketConnector``) and server
  (``serve_websocket``);
* :mod:`.memory` — in-process connections and servers for deterministic tests;
* :mod:`.telemetry` — psutil-based ``DeviceInfoProvider``.
"""

from .memory import MemoryConnection, MemoryNetwork, memory_connection_pair
from .telemetry import DeviceInfoProvider, Telemetry, unknown_system_info
from .websocket import (
    AcceptedRequest,
    ServerHandler,
    WebSocketConnection,
    WebSocketConnector,
    serve_websocket,
)

__all__ = [
    "AcceptedRequest",
    "DeviceInfoProvider",
    "MemoryConnection",
    "MemoryNetwork",
    "ServerHandler",
    "Telemetry",
    "WebSocketConnection",
    "WebSocketConnector",
    "memory_connection_pair",
    "serve_websocket",
    "unknown_system_info",
]
