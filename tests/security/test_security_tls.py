"""Item 1: wss:// with certificates made by trustme; bad certificates refused with a clear error."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trio
import trustme
from real_time import HANG_GUARD
from security_support import KEY, StartServer

from stellate import Timing
from stellate.adapters.websocket import WebSocketConnector
from stellate.agent import DeviceAgent
from stellate.cli import main as cli_main
from stellate.fsm import DeviceStatus, RetryPolicy
from stellate.manager import ConstellationDeviceManager
from stellate.protocol.transport import ConnectError
from stellate.server import server_ssl_context

FAST_RETRY = RetryPolicy(reconnect_delay=0.01, backoff_cap=0.05)


def wss(port: int) -> str:
    return f"wss://127.0.0.1:{port}/ws"


async def test_agent_and_manager_register_over_wss_with_cafile(
    start_server: StartServer, server_context: ssl.SSLContext, cafile: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(HANG_GUARD):
        server, port = await start_server(api_key=KEY, ssl_context=server_context)
        agent = DeviceAgent(wss(port), "tls-dev", api_key=KEY, cafile=cafile, system_info={})
        await nursery.start(agent.run)
        assert agent.registered
        manager = ConstellationDeviceManager(
            connector=WebSocketConnector(cafile=cafile),
            api_key=KEY,
            timing=Timing(reconnect_delay=0.01),
            strict=True,
        )
        async with manager:
            assert await manager.register_device("tls-dev", wss(port), max_retries=2)
            assert manager.get_device_info("tls-dev").status is DeviceStatus.IDLE  # type: ignore[union-attr]
        assert server.registry.get("tls-dev") is not None


async def test_server_context_from_cert_and_key_files(
    start_server: StartServer, cert_files: tuple[str, str], cafile: str
) -> None:
    """What ``stellate serve --certfile F --keyfile F`` builds serves wss:// that verifies."""
    certfile, keyfile = cert_files
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(ssl_context=server_ssl_context(certfile, keyfile))
        async with WebSocketConnector(cafile=cafile).open(wss(port)) as conn:
            await conn.send('{"type": "heartbeat", "status": "ok"}')  # not a register: refused
            assert "first frame" in str(await conn.receive())


async def test_untrusted_certificate_is_a_clear_connect_error(
    start_server: StartServer, server_context: ssl.SSLContext
) -> None:
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(api_key=KEY, ssl_context=server_context)
        with pytest.raises(ConnectError) as failed:
            # The system store does not know trustme's CA. At once, not at the connect
            # timeout: that lies far beyond the hang guard, which only catches a hang.
            async with WebSocketConnector(connect_timeout=HANG_GUARD * 20).open(
                f"{wss(port)}?token={KEY}"
            ):
                pass
    message = str(failed.value)
    assert "certificate verify failed" in message
    assert KEY not in message and "token=***" in message


async def test_wrong_hostname_is_refused(
    start_server: StartServer, ca: trustme.CA, cafile: str, nursery: trio.Nursery
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("not-this-host.example").configure_cert(context)
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(ssl_context=context)
        with pytest.raises(ConnectError, match="certificate verify failed"):
            async with WebSocketConnector(cafile=cafile).open(wss(port)):
                pass


async def test_wss_to_a_plain_server_says_so(start_server: StartServer, cafile: str) -> None:
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server()
        with pytest.raises(ConnectError, match="TLS") as failed:
            async with WebSocketConnector(cafile=cafile).open(wss(port)):
                pass
    assert "ws://" in str(failed.value)  # the hint


async def test_manager_device_fails_after_max_retries_with_the_tls_reason(
    start_server: StartServer, server_context: ssl.SSLContext
) -> None:
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(api_key=KEY, ssl_context=server_context)
        manager = ConstellationDeviceManager(
            connector=WebSocketConnector(),
            api_key=KEY,
            timing=Timing(reconnect_delay=0.01, backoff_cap=0.05),
            strict=True,
        )
        async with manager:
            assert not await manager.register_device("tls-dev", wss(port), max_retries=2)
            profile = manager.get_device_info("tls-dev")
            assert profile is not None and profile.status is DeviceStatus.FAILED
            reason = manager.failure_reason("tls-dev")
    assert reason is not None and "certificate verify failed" in reason
    assert KEY not in reason


async def test_agent_reports_a_bad_certificate_at_warning_level(
    start_server: StartServer,
    server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(api_key=KEY, ssl_context=server_context)
        agent = DeviceAgent(wss(port), "tls-dev", api_key=KEY, system_info={}, timing=FAST_RETRY)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            # Until two attempts failed (not for a fixed real time: a loaded machine may
            # not finish two TLS handshakes in any given half second).
            while agent.failures < 2:  # noqa: ASYNC110 - the agent has no event for it
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert not agent.registered and agent.failures >= 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings and all("certificate verify failed" in r.getMessage() for r in warnings)
    assert all(KEY not in r.getMessage() for r in caplog.records)


def test_serve_reports_unreadable_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    assert cli_main(["serve", "--port", "0", "--certfile", str(bogus)]) == 2
    assert "cannot load the TLS certificate/key" in capsys.readouterr().err
    assert cli_main(["serve", "--port", "0", "--keyfile", str(bogus)]) == 2
    assert "--keyfile needs --certfile" in capsys.readouterr().err


def test_agent_cli_has_no_way_to_skip_verification(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["agent", "--help"])
    agent_help = capsys.readouterr().out
    assert "--cafile" in agent_help
    assert "--insecure" not in agent_help and "verify" not in agent_help.replace(
        "always verified", ""
    )
