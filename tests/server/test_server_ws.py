"""AgentServer on real sockets (127.0.0.1, ephemeral ports), replaying the reference's frames."""

from __future__ import annotations

import json

import pytest
import trio
from golden_frames import assert_like, client_frame, frame
from real_time import PATIENCE
from server_support import closed_with, error_of

from stellate.adapters.websocket import WebSocketConnector
from stellate.protocol.transport import ConnectError, Connection
from stellate.server import AgentServer

DEVICE = "linux_dev_2"
KEY = "test-key-123"
pytestmark = pytest.mark.usefixtures("hang_guard")


@pytest.fixture
async def url(nursery: trio.Nursery) -> str:
    port = await nursery.start(AgentServer().serve, "127.0.0.1", 0)
    return f"ws://127.0.0.1:{port}/ws"


@pytest.fixture
async def keyed_url(nursery: trio.Nursery) -> str:
    port = await nursery.start(AgentServer(api_key=KEY).serve, "127.0.0.1", 0)
    return f"ws://127.0.0.1:{port}/ws"


@pytest.fixture
def connector() -> WebSocketConnector:
    return WebSocketConnector(connect_timeout=PATIENCE)


async def receive_text(conn: Connection) -> str:
    frame_ = await conn.receive()
    assert isinstance(frame_, str)
    return frame_


# --- the reference's conversation, replayed -----------------------------------------------


async def test_golden_conversation(url: str, connector: WebSocketConnector) -> None:
    async with connector.open(url) as device, connector.open(url) as constellation:
        await device.send(client_frame("device_register"))
        assert_like(await receive_text(device), "registration_confirmation")
        await device.send(client_frame("device_heartbeat"))
        assert_like(await receive_text(device), "heartbeat_ack")

        await constellation.send(client_frame("constellation_register"))
        assert_like(await receive_text(constellation), "registration_confirmation")
        await constellation.send(client_frame("device_info_request"))
        response = assert_like(await receive_text(constellation), "device_info_response")
        assert response["response_id"] == frame("device_info_request")["request_id"]

        # The reference's own constellation heartbeat (claims client_type "device"): acked.
        await constellation.send(client_frame("constellation_heartbeat_as_galaxy_sends_it"))
        assert_like(await receive_text(constellation), "heartbeat_ack")

        # A frame that names another client_type on a pinned socket.
        await constellation.send(client_frame("device_info_request", client_type="device"))
        assert_like(await receive_text(constellation), "error_client_type_mismatch")


async def test_target_not_connected(url: str, connector: WebSocketConnector) -> None:
    async with connector.open(url) as conn:
        await conn.send(
            client_frame("constellation_register", client_id="p@ghost", target_id="ghost")
        )
        assert_like(await receive_text(conn), "error_target_not_connected")
        assert (await closed_with(conn)).code == 1000


async def test_two_devices_with_one_id(url: str, connector: WebSocketConnector) -> None:
    async with connector.open(url) as first, connector.open(url) as second:
        await first.send(client_frame("device_register", client_id="probe_dev"))
        assert_like(await receive_text(first), "registration_confirmation")
        await second.send(client_frame("device_register", client_id="probe_dev"))
        assert_like(await receive_text(second), "error_duplicate_client_id")
        assert (await closed_with(second)).code == 1000  # the reference closes it normally
        # The first connection is untouched.
        await first.send(client_frame("device_heartbeat", client_id="probe_dev"))
        assert_like(await receive_text(first), "heartbeat_ack")


async def test_device_info_not_found(url: str, connector: WebSocketConnector) -> None:
    async with connector.open(url) as device, connector.open(url) as constellation:
        await device.send(json.dumps({"type": "register", "status": "ok", "client_id": "bare_dev"}))
        await receive_text(device)
        await constellation.send(
            client_frame("constellation_register", client_id="p@bare_dev", target_id="bare_dev")
        )
        await receive_text(constellation)
        await constellation.send(
            client_frame(
                "device_info_request",
                client_id="p@bare_dev",
                target_id="bare_dev",
                request_id="req-5",
            )
        )
        assert_like(await receive_text(constellation), "device_info_response_not_found")


# --- docs/aip.md faults, the better behaviour---------------------------------------------


@pytest.mark.parametrize(
    "first", ["not json", client_frame("device_heartbeat"), '{"type": "register", "status": "ok"}']
)
async def test_fault2_bad_first_frame_gets_error_and_1008(
    url: str, connector: WebSocketConnector, first: str
) -> None:
    async with connector.open(url) as conn:
        await conn.send(first)
        assert error_of(await receive_text(conn))
        assert (await closed_with(conn)).code == 1008


async def test_fault3_binary_after_registration(url: str, connector: WebSocketConnector) -> None:
    async with connector.open(url) as device, connector.open(url) as probe:
        await device.send(client_frame("device_register"))
        await receive_text(device)
        await device.send(b"\x00binary")
        assert error_of(await receive_text(device)) == "binary frames are not supported"
        assert (await closed_with(device)).code == 1003
        # Deregistered: a constellation can no longer attach to it.
        await probe.send(client_frame("constellation_register"))
        assert "is not connected" in error_of(await receive_text(probe))


async def test_fault4_constellation_told_when_device_leaves(
    url: str, connector: WebSocketConnector
) -> None:
    async with connector.open(url) as constellation:
        async with connector.open(url) as device:
            await device.send(client_frame("device_register"))
            await receive_text(device)
            await constellation.send(client_frame("constellation_register"))
            await receive_text(constellation)
        assert (
            error_of(await receive_text(constellation)) == f"Target device '{DEVICE}' disconnected"
        )
        assert (await closed_with(constellation)).code == 1000


async def test_fault5_reconnecting_device_is_not_refused(
    url: str, connector: WebSocketConnector
) -> None:
    for _ in range(3):
        async with connector.open(url) as device:
            await device.send(client_frame("device_register"))
            assert_like(await receive_text(device), "registration_confirmation")


async def test_fault6_device_info_only_for_the_target(
    url: str, connector: WebSocketConnector
) -> None:
    async with (
        connector.open(url) as device,
        connector.open(url) as secret,
        connector.open(url) as constellation,
    ):
        for conn, device_id in ((device, DEVICE), (secret, "secret_box")):
            await conn.send(client_frame("device_register", client_id=device_id))
            await receive_text(conn)
        await constellation.send(client_frame("constellation_register"))
        await receive_text(constellation)
        await constellation.send(client_frame("device_info_request", target_id="secret_box"))
        assert "only available" in error_of(await receive_text(constellation))


# --- transport limits ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "?token=wrong", "?token=", f"?token={KEY}x"])
async def test_bad_token_is_refused_with_403(
    keyed_url: str, connector: WebSocketConnector, suffix: str
) -> None:
    with pytest.raises(ConnectError) as info:
        async with connector.open(keyed_url + suffix):
            pass
    assert info.value.status == 403
    assert KEY not in str(info.value)


async def test_right_token_is_accepted(keyed_url: str, connector: WebSocketConnector) -> None:
    async with connector.open(f"{keyed_url}?token={KEY}") as conn:
        await conn.send(client_frame("device_register"))
        assert_like(await receive_text(conn), "registration_confirmation")


async def test_oversize_frame_closes_1009(url: str, connector: WebSocketConnector) -> None:
    async with connector.open(url) as conn:
        await conn.send(client_frame("device_register"))
        await receive_text(conn)
        await conn.send("x" * ((1 << 20) + 1))
        assert (await closed_with(conn)).code == 1009


async def test_one_mebibyte_frame_is_still_accepted(
    url: str, connector: WebSocketConnector
) -> None:
    register = json.loads(client_frame("device_register"))
    register["metadata"]["padding"] = ""
    base = len(json.dumps(register).encode())
    register["metadata"]["padding"] = "x" * ((1 << 20) - base)
    text = json.dumps(register)
    assert len(text.encode()) == 1 << 20
    async with connector.open(url) as conn:
        await conn.send(text)
        assert_like(await receive_text(conn), "registration_confirmation")
