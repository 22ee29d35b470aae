"""The per-message work of the protocol layer alone, in this process (no sockets, no trio).

What each side does for one heartbeat besides moving bytes: the manager's session builds the
heartbeat frame and interprets the ack; the server's session interprets the heartbeat (lease
renewed) and builds the ack. Each figure is the fastest of many short batches, so a busy
machine disturbs it less than a single long timing would.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

from stellate.protocol import ClientRegistry, ConstellationSession, DeviceSession, ServerSession

from .report import Row

BATCH, BATCHES = 200, 300


def _fastest(func: Callable[[], object]) -> float:
    return min(timeit.repeat(func, number=BATCH, repeat=BATCHES)) / BATCH


def measure() -> dict[str, Any]:
    manager = ConstellationSession("bench", "dev1")
    manager.register()
    manager.receive('{"type": "heartbeat", "status": "ok"}')
    device = DeviceSession("dev1", {"platform": "linux"}, "linux")
    server = ServerSession(ClientRegistry(), 0.0)
    (confirmation,) = server.receive(device.register(), 0.0)
    ack = getattr(confirmation, "frame", "")
    device.receive(ack)
    heartbeat = device.heartbeat()
    return {
        "manager_heartbeat_s": _fastest(manager.heartbeat),
        "manager_ack_s": _fastest(lambda: manager.receive(ack)),
        "server_heartbeat_s": _fastest(lambda: server.receive(heartbeat, 1.0)),
    }


def rows(result: dict[str, Any]) -> list[Row]:
    def us(key: str) -> str:
        return f"{result[key] * 1e6:.1f} µs"

    return [
        Row(
            "codec",
            "manager: build a heartbeat frame",
            us("manager_heartbeat_s"),
            value=result["manager_heartbeat_s"],
        ),
        Row(
            "codec",
            "manager: interpret a heartbeat ack",
            us("manager_ack_s"),
            value=result["manager_ack_s"],
        ),
        Row(
            "codec",
            "server: interpret a heartbeat, renew the lease, build the ack",
            us("server_heartbeat_s"),
            value=result["server_heartbeat_s"],
        ),
    ]
