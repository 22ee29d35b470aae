"""Issue 21, class 4: a web browser is a peer too (DNS rebinding, cross-origin WebSockets).

A keyless ``stellate serve`` on loopback (the default) and the manager's fleet port answered any
``Host``: a web page whose name an attacker re-points at 127.0.0.1 could read ``/api/clients``
and ``/api/fleet``. And the server accepted WebSocket upgrades with any ``Origin``: a page
could register a constellation and read telemetry. Now a listener bound to loopback answers
only requests addressed to a loopback name or address (421 Misdirected Request otherwise), and
an upgrade carrying an ``Origin`` is taken only from the server's own origin (403), as Jupyter
and the Docker daemon learned to. Device agents and managers send no ``Origin`` and address
the server as configured, so they are not affected.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing
from hardening_support import FIGURES
from http_get import raw_status
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples
from real_time import HANG_GUARD

from stellate.adapters.http_front import RequestHead, host_problem, origin_problem
from stellate.adapters.listener import is_loopback_host
from stellate.manager import ConstellationDeviceManager
from stellate.manager.metrics import serve_fleet
from stellate.server import AgentServer

NAMES = st.sampled_from(
    [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.8.9.10",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "evil.example",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "attacker.localhost",
        "0.0.0.0",
        "10.0.0.7",
        "[::]",
        "[fe80::1]",
        "",
        "[::1",
        "::1",
    ]
)
PORTS = st.sampled_from(["", ":5005", ":1", ":65535", ":0", ":70000", ":x", ":"])


def head(**headers: str) -> RequestHead:
    return RequestHead(
        "GET",
        "/api/clients",
        tuple((name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()),
    )


def _answered(name: str, port: str) -> bool:
    """The rule, said plainly: a loopback name or address, with a valid port or none."""
    if port and not (port[1:].isdigit() and 0 < int(port[1:]) < 65536):
        return False
    if name.startswith("[") != name.endswith("]"):
        return False
    if not name.startswith("[") and ":" in name:
        return False  # an IPv6 address must be bracketed in Host
    return bool(name) and is_loopback_host(name.strip("[]"))


@settings(max_examples=examples(300))
@given(name=NAMES, port=PORTS)
@example(name="evil.example", port=":5005")  # the rebinding of the report
def test_a_loopback_listener_answers_only_requests_addressed_to_loopback(
    name: str, port: str
) -> None:
    FIGURES["browser requests tried"] += 1
    problem = host_problem(head(host=name + port))
    assert (problem is None) == _answered(name, port), (name + port, problem)


def test_a_request_without_host_is_not_answered_on_loopback() -> None:
    assert host_problem(head()) == "no Host header"


@settings(max_examples=examples(300))
@given(
    scheme=st.sampled_from(["http", "https", "ws", "file", "null", "chrome-extension"]),
    origin_name=NAMES,
    origin_port=PORTS,
    host_name=st.sampled_from(["127.0.0.1", "localhost", "[::1]"]),
    host_port=st.sampled_from(["", ":5005", ":80"]),
)
@example(
    scheme="http", origin_name="evil.example", origin_port="", host_name="127.0.0.1", host_port=""
)
def test_an_upgrade_from_a_web_page_is_taken_only_from_the_same_origin(
    scheme: str, origin_name: str, origin_port: str, host_name: str, host_port: str
) -> None:
    FIGURES["browser requests tried"] += 1
    origin = "null" if scheme == "null" else f"{scheme}://{origin_name}{origin_port}"
    problem = origin_problem(head(host=host_name + host_port, origin=origin))
    default = {"http": 80, "https": 443, "ws": 80}.get(scheme)
    same = (
        default is not None
        and origin_name.lower() == host_name
        and (int(origin_port[1:]) if origin_port[1:].isdigit() else default)
        == (int(host_port[1:]) if host_port else default)
        and origin_port not in (":0", ":70000", ":x", ":")
    )
    assert (problem is None) == same, (origin, host_name + host_port, problem)


def test_an_upgrade_without_origin_is_not_a_browser_s() -> None:
    assert origin_problem(head(host="127.0.0.1:5005")) is None


# -- on real listeners -----------------------------------------------------------------------------


def _get(path: str, host: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


async def test_a_keyless_loopback_server_refuses_rebound_names_and_foreign_pages() -> None:
    FIGURES["browser requests tried"] += 4
    server = AgentServer()
    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            assert await raw_status(port, _get("/api/clients", f"127.0.0.1:{port}")) == 200
            assert await raw_status(port, _get("/api/clients", f"localhost:{port}")) == 200
            assert await raw_status(port, _get("/api/clients", f"evil.example:{port}")) == 421
            # An upgrade from a rebound name, and from a page of another origin.
            evil = _get("/ws", f"evil.example:{port}", UPGRADE)
            assert await raw_status(port, evil) == 421
            foreign = _get("/ws", f"127.0.0.1:{port}", UPGRADE + "Origin: http://evil.example\r\n")
            assert await raw_status(port, foreign) == 403
            same = _get(
                "/ws", f"127.0.0.1:{port}", UPGRADE + f"Origin: http://127.0.0.1:{port}\r\n"
            )
            assert await raw_status(port, same) == 101
            assert await raw_status(port, _get("/ws", f"127.0.0.1:{port}", UPGRADE)) == 101
            assert server.listener_stats.failures["misdirected"] == 2
            assert server.listener_stats.failures["cross_origin"] == 1
            nursery.cancel_scope.cancel()


async def test_the_fleet_port_refuses_rebound_names() -> None:
    FIGURES["browser requests tried"] += 2
    with trio.fail_after(HANG_GUARD):
        async with (
            ConstellationDeviceManager(strict=True) as manager,
            trio.open_nursery() as nursery,
        ):
            port = await nursery.start(partial(serve_fleet, manager, "127.0.0.1", 0))
            assert await raw_status(port, _get("/api/fleet", f"127.0.0.1:{port}")) == 200
            assert await raw_status(port, _get("/api/fleet", f"rebind.evil.example:{port}")) == 421
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_our_own_clients_are_not_turned_away(host: str) -> None:
    """A manager and an agent reach a loopback server by name or address, as configured."""
    from stellate.agent import DeviceAgent

    server = AgentServer()
    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            url = f"ws://{host}:{port}/ws"
            agent = DeviceAgent(url, "dev", system_info={"platform": "linux"})
            await nursery.start(agent.run)
            async with ConstellationDeviceManager(strict=True) as manager:
                assert await manager.register_device("dev", url, max_retries=1) is True
            nursery.cancel_scope.cancel()
