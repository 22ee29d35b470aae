"""Issue 21, classes 1 and 2: an id that squats, lies or only looks like another is refused.

Class 1: a constellation registering as ``stellate@dev`` with no target while ``dev`` was not
connected was accepted; the manager's own client for ``dev`` was then refused "already
registered" and ``dev`` ended FAILED. ``task@victim`` with ``target_id: other`` was accepted and
read ``other``'s telemetry. Now ``TASK@D`` must name ``target_id`` ``D`` (and ``D`` must be a
connected device), so a constellation id is held only while its device is there and acts for
that device alone.

Class 2: while ``dev-o`` was live, ``dev-о`` (Cyrillic о) registered as a separate device,
though the README said look-alikes are refused. Now every place that holds ids together (the
server's registry, a config's devices, a manager's) refuses an id with the skeleton of one it
holds (Unicode TS #39).

The server is driven through its sans-IO sessions on one registry (where every frame of the
real server goes); the bug reports' own scenarios also run end to end in memory.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
import trio
import trio.testing
from aip_frames import device_register
from hardening_support import FIGURES, live_server, system_info_for
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.adapters.memory import MemoryNetwork
from stellate.agent import DeviceAgent
from stellate.config import ConfigError, loads_config
from stellate.fsm import DeviceStatus
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import ServerMessageType, decode_server
from stellate.protocol.ids import _prototypes, device_id_problem, looks_like, skeleton
from stellate.protocol.registry import ClientRegistry
from stellate.protocol.session_server import Close, Evict, Send, ServerPhase, ServerSession

# -- helpers ---------------------------------------------------------------------------------------


def device_frame(device_id: str) -> str:
    return device_register(device_id, system_info_for(device_id))


def constellation_frame(client_id: str, target_id: str | None) -> str:
    frame: dict[str, Any] = {
        "type": "register",
        "status": "ok",
        "client_type": "constellation",
        "client_id": client_id,
    }
    if target_id is not None:
        frame["target_id"] = target_id
    return json.dumps(frame)


def info_request(target_id: str | None) -> str:
    return json.dumps(
        {
            "type": "device_info_request",
            "status": "ok",
            "client_type": "constellation",
            "target_id": target_id,
            "request_id": "r1",
        }
    )


def register(registry: ClientRegistry, frame: str) -> tuple[ServerSession, list[Any]]:
    session = ServerSession(registry, 0.0)
    return session, session.receive(frame, 0.0)


def accepted(session: ServerSession) -> bool:
    return session.phase is ServerPhase.REGISTERED


def error_text(actions: list[Any]) -> str:
    errors = [decode_server(a.frame).error for a in actions if isinstance(a, Send)]
    return " | ".join(e for e in errors if e)


# -- class 1: a constellation's id names its target ------------------------------------------------

DEVICES = ["dev", "victim", "other"]


@settings(max_examples=examples(300))
@given(
    live=st.sets(st.sampled_from(DEVICES)),
    task=st.sampled_from(["stellate", "task", "my@task"]),
    named=st.sampled_from([*DEVICES, "ghost"]),
    target=st.sampled_from([None, *DEVICES, "ghost", "dev ", "DEV"]),
)
@example(live=set(), task="stellate", named="dev", target=None)  # the squat of the report
@example(live={"victim", "other"}, task="task", named="victim", target="other")  # the lie
def test_a_constellation_registers_only_for_the_connected_device_its_id_names(
    live: set[str], task: str, named: str, target: str | None
) -> None:
    FIGURES["squat attempts tried"] += 1
    registry = ClientRegistry()
    for device_id in sorted(live):
        assert accepted(register(registry, device_frame(device_id))[0])
    session, actions = register(registry, constellation_frame(f"{task}@{named}", target))
    assert accepted(session) == (target == named and named in live), error_text(actions)
    if not accepted(session):
        assert any(isinstance(a, Close) for a in actions)
        assert registry.get(f"{task}@{named}") is None
        return
    # It reads its own device's telemetry, and nobody else's.
    for asked in [None, *DEVICES, "ghost"]:
        (answer,) = session.receive(info_request(asked), 0.0)
        message = decode_server(answer.frame)
        if asked in (None, named):
            assert message.type is ServerMessageType.DEVICE_INFO_RESPONSE
            assert message.result == system_info_for(named)
        else:
            assert message.type is ServerMessageType.ERROR


def test_a_constellation_is_held_no_longer_than_its_device() -> None:
    """The id a manager needs is free again as soon as the device goes."""
    registry = ClientRegistry()
    device, _ = register(registry, device_frame("dev"))
    squatter, _ = register(registry, constellation_frame("stellate@dev", "dev"))
    assert accepted(squatter)
    evictions = device.connection_lost(1.0)
    assert [action.session for action in evictions if isinstance(action, Evict)] == [squatter]
    squatter.connection_lost(1.0)  # what the edge does with the eviction: close it
    assert registry.get("stellate@dev") is None
    register(registry, device_frame("dev"))
    manager, _ = register(registry, constellation_frame("stellate@dev", "dev"))
    assert accepted(manager)


async def test_a_squatter_no_longer_keeps_the_manager_from_its_device(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The report's run: ``stellate@dev`` with no target before ``dev`` is connected, then the
    device's agent and the manager: the squatter is refused and ``dev`` ends IDLE."""
    url = "ws://squat:5005/ws"
    async with live_server(url) as (network, _server):
        async with network.open(url) as squatter:
            await squatter.send(constellation_frame("stellate@dev", None))
            error = json.loads(await squatter.receive())
            assert error["type"] == "error" and "target_id" in error["error"]
        agent = DeviceAgent(url, "dev", connector=network.connector, system_info={"x": 1})
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            manager = ConstellationDeviceManager(
                task_name="stellate", connector=network.connector, strict=True
            )
            async with manager:
                assert await manager.register_device("dev", url, max_retries=1) is True
                assert manager.get_device_info("dev").status is DeviceStatus.IDLE  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()


# -- class 2: look-alikes --------------------------------------------------------------------------


def _confusable_with() -> dict[str, list[str]]:
    """For each ASCII letter, digit and '-': the single characters whose skeleton is it."""
    found: dict[str, list[str]] = {}
    for code, prototype in _prototypes().items():
        char = chr(code)
        if (
            len(prototype) == 1
            and prototype.isascii()
            and (prototype.isalnum() or prototype == "-")
            and unicodedata.is_normalized("NFC", char)
            and char.isprintable()
            and not char.isspace()
            and unicodedata.category(char) != "Cn"
        ):
            found.setdefault(prototype, []).append(char)
    return found


CONFUSABLE = _confusable_with()
ASCII_ID = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@st.composite
def look_alike_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """An ASCII id, and another id with the same skeleton (some characters swapped for ones
    Unicode lists as confusable with them), different from it."""
    original = draw(ASCII_ID.filter(lambda text: any(skeleton(c) in CONFUSABLE for c in text)))
    chars = list(original)
    swappable = [i for i, c in enumerate(chars) if skeleton(c) in CONFUSABLE]
    for index in draw(st.lists(st.sampled_from(swappable), min_size=1, unique=True)):
        chars[index] = draw(st.sampled_from(CONFUSABLE[skeleton(chars[index])]))
    return original, "".join(chars)


def test_the_reports_look_alike_has_the_same_skeleton() -> None:
    assert looks_like("dev-o", "dev-\u043e")
    assert looks_like("dev-l", "dev-1") and looks_like("dev-rn", "dev-m")
    assert not looks_like("dev-o", "dev-o") and not looks_like("dev-a", "dev-b")


@settings(max_examples=examples(200))
@given(pair=look_alike_pairs())
@example(pair=("dev-o", "dev-\u043e"))
def test_a_look_alike_of_a_held_id_is_refused_everywhere_ids_are_held(
    pair: tuple[str, str],
) -> None:
    original, other = pair
    if other == original or skeleton(other) != skeleton(original):
        return  # a draw that swapped nothing visible (e.g. a character for itself)
    if device_id_problem(other) is not None:
        return  # refused by the id rule already (an invisible or unnormalized character)
    FIGURES["look-alike ids tried"] += 1
    # The server: the first registered keeps its id; its look-alike is refused, whichever role.
    registry = ClientRegistry()
    assert accepted(register(registry, device_frame(original))[0])
    session, actions = register(registry, device_frame(other))
    assert not accepted(session) and "looks like" in error_text(actions)
    assert [entry.client_id for entry in registry] == [original]
    # A config holding both.
    text = (
        "devices:\n"
        f"  - {{device_id: {json.dumps(original, ensure_ascii=False)}, server_url: 'ws://h:1/ws'}}\n"
        f"  - {{device_id: {json.dumps(other, ensure_ascii=False)}, server_url: 'ws://h:1/ws'}}\n"
    )
    with pytest.raises(ConfigError) as refused:
        loads_config(text)
    assert "devices[1].device_id" in str(refused.value) and "looks like" in str(refused.value)
    # A manager holding both.
    trio.run(_manager_refuses, original, other, clock=trio.testing.MockClock(autojump_threshold=0))


async def _manager_refuses(original: str, other: str) -> None:
    async with ConstellationDeviceManager(
        connector=MemoryNetwork().connector, strict=True
    ) as manager:
        manager.add_device(_profile(original), auto_connect=False)
        with pytest.raises(ValueError, match="looks like"):
            manager.add_device(_profile(other), auto_connect=False)


def _profile(device_id: str) -> Any:
    from stellate.fsm import AgentProfile

    return AgentProfile(device_id=device_id, server_url="ws://h:1/ws")


@settings(max_examples=examples(200))
@given(one=ASCII_ID, two=ASCII_ID)
def test_ids_that_do_not_look_alike_are_both_registered(one: str, two: str) -> None:
    FIGURES["look-alike ids tried"] += 1
    registry = ClientRegistry()
    first, _ = register(registry, device_frame(one))
    second, actions = register(registry, device_frame(two))
    if one == two:
        assert not accepted(second)  # the same id: held (not a look-alike question)
    elif skeleton(one) == skeleton(two):
        assert "looks like" in error_text(actions)  # 0/O, 1/l, rn/m within ASCII
    else:
        assert accepted(first) and accepted(second)


async def test_the_reports_look_alike_is_refused_by_a_live_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    url = "ws://looks:5005/ws"
    async with live_server(url) as (network, server):
        agent = DeviceAgent(url, "dev-o", connector=network.connector, system_info={"x": 1})
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            async with network.open(url) as twin:
                await twin.send(device_frame("dev-\u043e"))
                error = json.loads(await twin.receive())
                assert error["type"] == "error" and "looks like 'dev-o'" in error["error"]
            assert server.online_clients() == ["dev-o"]
            nursery.cancel_scope.cancel()
