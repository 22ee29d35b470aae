"""The device agent: what runs on (or for) a device, registered with its agent server.

:class:`DeviceAgent` is one device; :func:`run_fleet` runs many in one process (``stellate
agent --count N``). It speaks the device side of AIP (``stellate.protocol``'s
``DeviceSession``) over the transport port, and reads this machine's system info through the
telemetry adapter.
"""

from __future__ import annotations

from ..text.urls import with_token
from .device_agent import AGENT_TIMING, AgentRefused, DeviceAgent, run_fleet

__all__ = ["AGENT_TIMING", "AgentRefused", "DeviceAgent", "run_fleet", "with_token"]
