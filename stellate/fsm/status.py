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
        """The registration phase (1–5) of a status; None outside the five phases.

        The phases are described in docs/registration-flow.md.
        """
        return _PHASES.get(self)


_PHASES = {
    DeviceStatus.DISCONNECTED: 1,
    DeviceStatus.CONNECTING: 2,
    DeviceStatus.CONNECTED: 2,
    DeviceStatus.REGISTERING: 3,
    DeviceStatus.TELEMETRY: 4,
    DeviceStatus.IDLE: 5,
}
