"""Shared fixtures of the security suite: a trustme CA, TLS contexts, servers on 127.0.0.1:0.

Every test guards itself with ``trio.fail_after``; servers bind an ephemeral loopback port.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from real_time import HANG_GUARD

from stellate.server import AgentServer

KEY = "sec-KEY-7f3a9c-never-in-any-log"
LIMIT = HANG_GUARD  # real seconds: only catches a hanging test (real_time.py)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost, issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


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


StartServer = Callable[..., Any]


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """``server, port = await start_server(**AgentServer kwargs)`` on 127.0.0.1:0."""

    async def start(**kwargs: Any) -> tuple[AgentServer, int]:
        server = AgentServer(**kwargs)
        port: int = await nursery.start(partial(server.serve, "127.0.0.1", 0))
        return server, port

    return start
