"""Device statuses: the states of the registration machine.

UFO's strings are kept verbatim (``disconnected`` … ``failed``) so profiles serialise the way
Galaxy users expect; ``telemetry`` and ``backoff`` are stellate's additions, because every phase
of the registration flow, and the wait between retries, must be a state one can see and test.
"""

from __future__ import annotations

from enum import StrEnum


class DeviceStatus(StrEnum):
    DISCONNECTED = "disconnected"  # phase 1: configured, not yet connected
    CONNECTING = "connecting"  # phase 2: WebSocket handshake under way
    CONNECTED = "connected"  # phase 2 done: socket open, REGISTER about to go out
    REGISTERING = "registering"  # phase 3: REGISTER sent, awaiting the server's answer
    TELEMETRY = "telemetry"  # phase 4: device_info_request sent, awaiting system info
    IDLE = "idle"  # phase 5: activated, task-ready
    BUSY = "busy"  # running a task
    BACKOFF = "backoff"  # waiting (jittered) before the next connection attempt
    FAILED = "failed"  # gave up: retries exhausted or registration rejected

    @property
    def phase(self) -> int | None:
        """The registration flow's phase (1–5) a status belongs to; None outside the five
        phases (declared with the states in ``table.py``)."""
        from .table import SPECS  # the table imports this module

        return SPECS[self].phase
