"""The AIP agent server: device agents and constellation clients meet here.

:class:`AgentServer` runs the sans-IO server sessions of ``stellate.protocol`` behind the
WebSocket listener of ``stellate.adapters``, answers ``/api/health`` and ``/api/clients`` on
the same port, and ``/metrics`` through :mod:`.metrics`.
"""

from __future__ import annotations

from ..adapters.listener import is_loopback_host
from .agent_server import (
    API_KEY_ENV,
    AgentServer,
    InsecureBindError,
    default_max_connections,
    server_ssl_context,
)

__all__ = [
    "API_KEY_ENV",
    "AgentServer",
    "InsecureBindError",
    "default_max_connections",
    "is_loopback_host",
    "server_ssl_context",
]
