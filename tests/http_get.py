"""A real HTTP client for tests: the standard library's ``http.client`` in a worker thread.

Shared by every suite that asks a stellate listener something over plain HTTP (the server's
``/api/*`` and ``/metrics``, the manager's metrics port), so each one talks to it the way curl
or Prometheus would, over a real socket on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

import attrs
import trio
from byte_streams import receive_until
from real_time import PATIENCE


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


async def http_get(
    port: int,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    tls: ssl.SSLContext | None = None,
) -> Reply:
    """``method path`` on 127.0.0.1:``port`` (HTTPS with ``tls``); the whole answer."""

    def fetch() -> Reply:
        conn = (
            http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
            if tls is None
            else http.client.HTTPSConnection("127.0.0.1", port, timeout=PATIENCE, context=tls)
        )
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return Reply(
                response.status,
                {name.lower(): value for name, value in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    return await trio.to_thread.run_sync(fetch)


async def raw_status(port: int, request: bytes) -> int:
    """The status of the answer to ``request``, written as it is, on 127.0.0.1:``port``."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        answer = await receive_until(stream, b"\r\n")
    return int(answer.split(b" ", 2)[1])
