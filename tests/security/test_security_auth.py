"""Item 2: the key never logged or shown; identity pinned; no takeover; no auth off loopback."""

from __future__ import annotations

import logging
import urllib.parse

import pytest
import trio
from aip_frames import (
    constellation_register,
    device_info_request,
    device_register,
    heartbeat,
    receive_json,
    register,
)
from real_time import HANG_GUARD, PATIENCE
from security_support import KEY, StartServer

from stellate import Timing
from stellate.adapters.websocket import WebSocketConnector
from stellate.adapters.ws_server import _token_ok
from stellate.agent import DeviceAgent
from stellate.cli import main as cli_main
from stellate.fsm import RetryPolicy
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import session_server
from stellate.protocol.registry import ClientRegistry
from stellate.protocol.session_server import Close, Evict, ServerPhase, ServerPolicy, ServerSession
from stellate.protocol.transport import ConnectError, ConnectionClosed
from stellate.server import AgentServer, InsecureBindError, is_loopback_host
from stellate.text.redact import LOG_FILTER, add_log_secret, install_log_redaction

FAST_RETRY = RetryPolicy(reconnect_delay=0.01, backoff_cap=0.05)


def leaks(text: str) -> bool:
    return KEY in text or urllib.parse.quote(KEY, safe="") in text


async def test_a_full_run_never_logs_the_key(
    start_server: StartServer, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Server with a key, two agents, a manager, and failures: all loggers at DEBUG."""
    caplog.set_level(logging.DEBUG)  # the root logger: trio-websocket's records propagate to it
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(api_key=KEY)
        url = f"ws://127.0.0.1:{port}/ws"
        for device_id in ("dev-a", "dev-b"):
            agent = DeviceAgent(url, device_id, api_key=KEY, system_info={}, timing=FAST_RETRY)
            await nursery.start(agent.run)
            assert "***" in repr(agent) and not leaks(repr(agent))
        manager = ConstellationDeviceManager(
            api_key=KEY, timing=Timing(reconnect_delay=0.01, backoff_cap=0.05), strict=True
        )
        async with manager:
            for device_id in ("dev-a", "dev-b"):
                assert await manager.register_device(device_id, url, max_retries=2)
                assert not leaks(manager.describe(device_id))
            # Failures carry URLs too: a closed port, a wrong key (403), an unknown device.
            assert not await manager.register_device("nobody", url, max_retries=1)
            closed = f"ws://127.0.0.1:{_closed_port()}/ws"
            assert not await manager.register_device("gone", closed, max_retries=1)
            for reason in (manager.failure_reason("nobody"), manager.failure_reason("gone")):
                assert reason is not None and not leaks(reason)
        with pytest.raises(ConnectError) as refused:
            async with WebSocketConnector().open(f"{url}?token=wrong-{KEY}"):
                pass
        assert refused.value.status == 403 and not leaks(str(refused.value))
        with pytest.raises(ConnectError) as doubled:
            async with WebSocketConnector().open(f"{url}?token={KEY}&token={KEY}"):
                pass
        assert doubled.value.status == 403  # refused for the key, not for anything else
    names = {record.name for record in caplog.records}
    assert "trio-websocket" in names, "the DEBUG capture must include trio-websocket"
    assert any("token=***" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert not leaks(record.getMessage()), record.getMessage()
    assert not leaks(caplog.text)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_trio_websocket_records_are_redacted_at_the_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """trio-websocket's open_websocket_url logs 'Connecting to ws://host:port/ws?token=KEY'."""
    caplog.set_level(logging.DEBUG)
    add_log_secret(KEY)  # where the app starts, as the command does (no constructor does it)
    logging.getLogger("trio-websocket").debug(
        "Connecting to ws%s://%s:%d%s", "", "127.0.0.1", 5005, "/ws?token=anything-at-all"
    )
    logging.getLogger("trio-websocket").debug("%s", KEY)
    logging.getLogger("trio-websocket").debug("bare %s", KEY)
    messages = [r.getMessage() for r in caplog.records if r.name == "trio-websocket"]
    assert messages[0] == "Connecting to ws://127.0.0.1:5005/ws?token=***"
    assert all(not leaks(m) for m in messages)


def test_cli_handlers_mask_the_key_literally() -> None:
    """The CLI's handlers get LOG_FILTER; a key logged by mistake, even bare, is masked."""
    logger = logging.getLogger("stellate.security-test")
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(handler.format(record))  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        add_log_secret(KEY)  # what the command does with its key when it starts
        install_log_redaction(logger)
        install_log_redaction(logger)  # idempotent
        assert handler.filters.count(LOG_FILTER) == 1
        logger.warning("oops %s and %s", KEY, urllib.parse.quote(KEY))
    finally:
        logger.removeHandler(handler)
    assert seen == ["oops *** and ***"]


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        (f"token={KEY}", True),
        (f"token={urllib.parse.quote(KEY)}", True),
        ("token=", False),
        ("", False),
        (f"token={KEY}x", False),
        (f"token={KEY[:-1]}", False),
        (f"token={KEY}&token={KEY}", False),
        (f"Token={KEY}", False),
    ],
)
def test_token_check(query: str, ok: bool) -> None:
    assert _token_ok(query, KEY) is ok


# -- no auth off loopback ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        (None, False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback_host(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_serve_refuses_all_interfaces_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STELLATE_API_KEY", raising=False)
    assert cli_main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without an API key" in err
    assert "--insecure-no-auth" in err


async def test_agent_server_refuses_too_and_can_be_told_otherwise() -> None:
    with pytest.raises(InsecureBindError):
        await AgentServer().serve("0.0.0.0", 0)
    AgentServer(insecure_no_auth=True).check_bind("0.0.0.0")
    AgentServer(api_key=KEY).check_bind("0.0.0.0")
    AgentServer().check_bind("127.0.0.1")


# -- identity, target, takeover (real sockets) ---------------------------------------------------


async def test_identity_is_pinned_and_a_constellation_acts_only_for_its_target(
    start_server: StartServer,
) -> None:
    connector = WebSocketConnector(connect_timeout=PATIENCE)
    with trio.fail_after(HANG_GUARD):
        _server, port = await start_server(api_key=KEY)
        url = f"ws://127.0.0.1:{port}/ws?token={KEY}"
        async with (
            connector.open(url) as dev_a,
            connector.open(url) as dev_b,
            connector.open(url) as constellation,
        ):
            await register(dev_a, device_register("A", {"secret_of": "A"}))
            await register(dev_b, device_register("B", {"secret_of": "B"}))
            await register(constellation, constellation_register("A"))
            # A device cannot speak as another client, nor ask for telemetry.
            await dev_a.send(heartbeat("B"))
            assert "client_id does not match" in (await receive_json(dev_a))["error"]
            await dev_a.send(device_info_request("A", "B").replace("constellation", "device"))
            assert (await receive_json(dev_a))["type"] == "error"
            # The constellation reads its target's telemetry and nobody else's.
            await constellation.send(device_info_request("sec@A", "A"))
            assert (await receive_json(constellation))["result"] == {"secret_of": "A"}
            await constellation.send(device_info_request("sec@A", "B"))
            answer = await receive_json(constellation)
            assert answer["type"] == "error" and "secret_of" not in str(answer)
            # Renaming itself in a frame does not work either.
            await constellation.send(device_info_request("sec@B", "B"))
            assert "client_id does not match" in (await receive_json(constellation))["error"]
            # A live device's id cannot be taken, by a device or by a constellation (whose ids
            # have another shape: TASK@DEVICE).
            for frame, refusal in (
                (device_register("A"), "already registered"),
                (constellation_register("x", client_id="A"), "must be TASK@DEVICE"),
            ):
                async with connector.open(url) as thief:
                    await thief.send(frame)
                    assert refusal in (await receive_json(thief))["error"]
                    with pytest.raises(ConnectionClosed):
                        await thief.receive()
            await dev_a.send(heartbeat("A"))
            assert (await receive_json(dev_a))["type"] == "heartbeat"


#: How the server refuses an id held by another client (docs/aip.md: the reference's text).
DUPLICATE = "client_id '{}' is already registered; duplicate registrations are not allowed"


@pytest.mark.parametrize("shape_rule", ["kept", "lifted"])
@pytest.mark.parametrize(
    ("owner_frame", "squat_frame", "heir_frame", "shape_refusal"),
    [
        # A constellation may not squat a stale device's id ...
        (
            device_register("D"),
            constellation_register("x", client_id="D"),
            device_register("D"),
            "invalid constellation id 'D': a constellation's client_id must be TASK@DEVICE",
        ),
        # ... nor a device a stale constellation's.
        (
            constellation_register("x", client_id="t@x"),
            device_register("t@x"),
            constellation_register("x", client_id="t@x"),
            "invalid device id 't@x': must not contain '@'",
        ),
    ],
)
def test_a_stale_id_is_replaced_only_by_its_own_kind(
    monkeypatch: pytest.MonkeyPatch,
    shape_rule: str,
    owner_frame: str,
    squat_frame: str,
    heir_frame: str,
    shape_refusal: str,
) -> None:
    """Fix 5 replaces a stale registration by a client of its own kind only. Two rules refuse
    the other kind: the shape of ids (a constellation's is TASK@DEVICE naming its target, a
    device's has no @) and, behind it, the kind of the stale entry. With the shape rules lifted
    the kind rule must still refuse, and say why: the squatter's target is connected, so no
    other reason exists."""
    if shape_rule == "lifted":
        monkeypatch.setattr(session_server, "registration_refusal", lambda *_: None)
    policy = ServerPolicy(timing=Timing(heartbeat_interval=1.0, miss_limit=3))
    registry = ClientRegistry()
    ServerSession(registry, 0.0, policy=policy).receive(device_register("x"), 0.0)
    owner = ServerSession(registry, 0.0, policy=policy)
    owner.receive(owner_frame, 0.0)
    assert owner.phase is ServerPhase.REGISTERED
    owner_id = owner.client_id
    assert owner_id is not None
    later = policy.constellation_lease + policy.timing.lease + 1.0  # the owner's lease ran out
    ServerSession(registry, later, policy=policy).receive(device_register("x"), later)  # live
    squatter = ServerSession(registry, later, policy=policy)
    actions = squatter.receive(squat_frame, later)
    (close,) = [a for a in actions if isinstance(a, Close)]
    if shape_rule == "kept":
        assert close.code == 1008 and close.reason is not None
        assert close.reason.startswith(shape_refusal)
    else:
        assert (close.code, close.reason) == (1000, DUPLICATE.format(owner_id))
    assert not any(isinstance(a, Evict) for a in actions)
    assert registry.get(owner_id).owner is owner  # type: ignore[union-attr]
    heir = ServerSession(registry, later, policy=policy)
    actions = heir.receive(heir_frame, later)
    assert any(isinstance(a, Evict) and a.session is owner for a in actions)
    assert registry.get(owner_id).owner is heir  # type: ignore[union-attr]


def test_redacting_a_redacted_message_keeps_its_punctuation() -> None:
    from stellate.text.redact import redact_text

    message = "TLS handshake failed (wss://h:1/ws?token=***): certificate verify failed"
    assert redact_text(message, [KEY]) == message
    assert not leaks(redact_text(f"failed (wss://h:1/ws?token={KEY}): x"))
