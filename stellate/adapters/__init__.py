"""Adapters: the ports of ``stellate.protocol`` and ``stellate.fsm`` over real I/O.

What custom wiring needs, re-exported here (the submodules are internal):

* WebSocket: the client connector (``WebSocketConnector``, the manager's default) and the
  server (``serve_websocket`` with its handler type and the accepted request);
* in-process connections and servers for deterministic tests (``MemoryNetwork``);
* telemetry: ``DeviceInfoProvider`` (psutil readings) and the ``Telemetry`` protocol an
  agent's own provider implements.
"""

from .memory import MemoryConnection, MemoryNetwork, memory_connection_pair
from .telemetry import DeviceInfoProvider, Telemetry
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
]
