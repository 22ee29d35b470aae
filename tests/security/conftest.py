"""Shared fixtures of the security suite: certificate files, servers on 127.0.0.1:0 (the CA
and the server TLS context are the suite-wide ``ca`` and ``server_context``).

Every test guards itself with ``trio.fail_after``; servers bind an ephemeral loopback port.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from security_support import StartServer

from stellate.server import AgentServer


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    """(certfile, keyfile) for 127.0.0.1, as ``stellate serve --certfile/--keyfile`` takes."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """``server, port = await start_server(**AgentServer kwargs)`` on 127.0.0.1:0."""

    async def start(**kwargs: Any) -> tuple[AgentServer, int]:
        server = AgentServer(**kwargs)
        port: int = await nursery.start(partial(server.serve, "127.0.0.1", 0))
        return server, port

    return start
