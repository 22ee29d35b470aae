"""Reading a raw byte stream the way the tests that speak HTTP by hand do."""

from __future__ import annotations

import trio


async def receive_until(stream: trio.abc.ReceiveStream, marker: bytes) -> bytes:
    """Bytes from ``stream`` up to a chunk holding ``marker`` (everything received so far), or
    to the end of the stream: the caller checks that ``marker`` came."""
    received = b""
    while marker not in received:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        received += chunk
    return received
