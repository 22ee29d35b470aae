"""What the server tests read off a connection: the error a frame carries, the close that ends
a connection."""

from __future__ import annotations

import json

import pytest

from stellate.protocol.transport import Connection, ConnectionClosed


def error_of(frame: str | bytes) -> str:
    """The text of an AIP error frame (``type`` and ``status`` both "error"); fails on any
    other frame."""
    data = json.loads(frame)
    assert data["type"] == "error" and data["status"] == "error", data
    error: str = data["error"]
    return error


async def closed_with(conn: Connection) -> ConnectionClosed:
    """Read until the connection closes; a frame in between fails the test."""
    with pytest.raises(ConnectionClosed) as info:
        unexpected = await conn.receive()
        pytest.fail(f"unexpected frame {unexpected!r}")
    return info.value
