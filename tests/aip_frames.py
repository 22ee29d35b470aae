"""Minimal AIP frames written by hand, for tests that speak to a server frame by frame."""

from __future__ import annotations

import json
from typing import Any

from stellate.protocol.transport import Connection


def device_register(device_id: str, system_info: Any = None, platform: Any = "linux") -> str:
    """A device's register frame; ``system_info`` defaults to a small valid one."""
    info = system_info if system_info is not None else {"device_id": device_id, "platform": "linux"}
    return json.dumps(
        {
            "type": "register",
            "status": "ok",
            "client_type": "device",
            "client_id": device_id,
            "metadata": {"system_info": info, "platform": platform},
        }
    )


def constellation_register(device_id: str, task: str = "sec", client_id: str | None = None) -> str:
    return json.dumps(
        {
            "type": "register",
            "status": "ok",
            "client_type": "constellation",
            "client_id": client_id or f"{task}@{device_id}",
            "target_id": device_id,
            "metadata": {"type": "constellation_client", "targeted_device_id": device_id},
        }
    )


def heartbeat(client_id: str, client_type: str = "device") -> str:
    return json.dumps(
        {"type": "heartbeat", "status": "ok", "client_id": client_id, "client_type": client_type}
    )


def device_info_request(client_id: str, target: str, request_id: str = "r1") -> str:
    return json.dumps(
        {
            "type": "device_info_request",
            "status": "ok",
            "client_type": "constellation",
            "client_id": client_id,
            "target_id": target,
            "request_id": request_id,
        }
    )


async def receive_json(conn: Connection) -> dict[str, Any]:
    frame = await conn.receive()
    assert isinstance(frame, str), frame
    data: dict[str, Any] = json.loads(frame)
    return data


async def register(conn: Connection, frame: str) -> None:
    """Send a register frame and expect the confirmation (a heartbeat/ok frame)."""
    await conn.send(frame)
    answer = await receive_json(conn)
    assert (answer["type"], answer["status"]) == ("heartbeat", "ok"), answer
