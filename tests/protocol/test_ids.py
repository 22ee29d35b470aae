"""One sentence for a refused id: the server, the manager and the agent say it alike.

The rule lives in ``stellate.protocol.ids``, and so does the sentence (``id_refusal``): the
manager and the agent used to format it again, each their own way.
"""

from __future__ import annotations

import json

import pytest
import trio.testing

from stellate.agent import DeviceAgent
from stellate.fsm import AgentProfile
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import ClientRegistry, ClientType, ServerSession
from stellate.protocol.ids import id_refusal
from stellate.protocol.session_server import Close

REFUSED = ["a b", "dev\u200b", "task@dev", ""]


def _server_says(device_id: str) -> str:
    session = ServerSession(ClientRegistry(), 0.0)
    frame = json.dumps({"type": "register", "status": "ok", "client_id": device_id or None})
    (close,) = [a for a in session.receive(frame, 0.0) if isinstance(a, Close)]
    return close.reason


@pytest.mark.parametrize("device_id", REFUSED)
async def test_a_refused_id_reads_the_same_everywhere(
    device_id: str, autojump_clock: trio.testing.MockClock
) -> None:
    refusal = id_refusal(device_id, ClientType.DEVICE)
    assert refusal is not None and refusal.startswith("invalid device id ")
    with pytest.raises(ValueError) as agent:
        DeviceAgent("ws://h/ws", device_id, system_info={})
    async with ConstellationDeviceManager(strict=True) as manager:
        with pytest.raises(ValueError) as managed:
            manager.add_device(AgentProfile(device_id=device_id, server_url="ws://h/ws"))
    assert str(agent.value) == str(managed.value) == refusal
    if device_id:  # an empty client_id is refused before the id rule, for what it is
        said = _server_says(device_id)  # a close reason holds at most 123 bytes
        assert refusal.startswith(said) and len(said) >= min(len(refusal), 100)


def test_a_good_id_has_no_refusal() -> None:
    assert id_refusal("windowsagent", ClientType.DEVICE) is None
    assert id_refusal("stellate@windowsagent", ClientType.CONSTELLATION) is None
