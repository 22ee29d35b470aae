"""One sentence for a refused id: the server, the manager and the agent say it alike.

The rule lives in ``stellate.protocol.ids``, and so does the sentence (``id_refusal``): the
manager and the agent used to format it again, each their own way. Then the rule itself,
clause by clause, with the message each clause gives.
"""

from __future__ import annotations

import json

import pytest
import trio.testing

from stellate.agent import DeviceAgent
from stellate.fsm import AgentProfile
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import ClientRegistry, ClientType, ServerSession
from stellate.protocol.ids import (
    LookAlikes,
    _prototypes,
    client_id_problem,
    constellation_id,
    device_id_problem,
    id_refusal,
    registration_refusal,
    target_problem,
    task_name_problem,
)
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


# -- the rule, clause by clause (the module's docstring) ------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a" * 128, None),
        ("a" * 129, "must be at most 128 characters, got 129"),
        ("", "must not be empty"),
        (7, "must be a string, got int"),
        ("ab c", "must not contain whitespace (U+0020 at position 2)"),
        (
            "ab\u200b",
            "must not contain invisible characters (U+200B ZERO WIDTH SPACE at position 2)",
        ),
        (
            "a\x00",
            "must not contain invisible characters "
            "(U+0000 a control or unassigned code point at position 1)",
        ),
        ("e\u0301", "must be in Unicode normal form C (an accented letter as one character)"),
        ("\u00e9", None),
        (
            "dev@x",
            "must not contain '@' (it separates a constellation's task name from the "
            "device id: TASK@DEVICE)",
        ),
    ],
)
def test_a_device_id_is_refused_for_the_first_clause_it_breaks(
    value: object, problem: str | None
) -> None:
    assert device_id_problem(value) == problem


def test_a_task_name_follows_the_id_rule_and_may_hold_the_separator() -> None:
    assert task_name_problem("my@task") is None
    assert task_name_problem("a" * 129) == "must be at most 128 characters, got 129"


@pytest.mark.parametrize(
    ("client_id", "problem"),
    [
        ("task@dev", None),
        ("my@task@dev", None),
        ("@dev", "task name must not be empty"),
        ("task@", "device id must not be empty"),
        ("task@a b", "device id must not contain whitespace (U+0020 at position 1)"),
        ("dev", "a constellation's client_id must be TASK@DEVICE"),
        (None, "a constellation's client_id must be TASK@DEVICE"),
    ],
)
def test_a_constellation_id_is_task_at_device_each_part_named(
    client_id: object, problem: str | None
) -> None:
    assert client_id_problem(client_id, ClientType.CONSTELLATION) == problem
    assert constellation_id("task", "dev") == "task@dev"


def test_a_constellation_names_exactly_the_device_its_id_names() -> None:
    assert target_problem("t@dev", "dev") is None
    assert target_problem("t@dev", None) == "a constellation must name its target_id: 'dev'"
    assert target_problem("my@t@dev", "t@dev") == (
        "names device 'dev' but its target_id is 't@dev': TASK@DEVICE acts for DEVICE only"
    )


def test_a_register_frame_is_refused_for_its_id_then_its_target_then_a_look_alike() -> None:
    constellation, device = ClientType.CONSTELLATION, ClientType.DEVICE
    assert registration_refusal("dev-o", device, None, None) is None
    assert registration_refusal("a b", device, None, "a b") == id_refusal("a b", device)
    assert registration_refusal("t@dev", constellation, "x", "t@dev") == (
        "invalid constellation id 't@dev': names device 'dev' but its target_id is 'x': "
        "TASK@DEVICE acts for DEVICE only"
    )
    assert registration_refusal("dev-\u043e", device, None, "dev-o") == (
        "invalid device id 'dev-\u043e': looks like 'dev-o' (the same skeleton, Unicode TS #39): "
        "ids a reader could confuse are refused"
    )
    assert registration_refusal("t@dev", constellation, "dev", None) is None
    assert registration_refusal("t@dev-\u043e", constellation, "dev-\u043e", "t@dev-o") == (
        "invalid constellation id 't@dev-\u043e': looks like 't@dev-o' (the same skeleton, "
        "Unicode TS #39): ids a reader could confuse are refused"
    )


def test_held_ids_answer_which_one_a_new_id_looks_like() -> None:
    held = LookAlikes()
    assert held.of("dev-o") is None
    held.add("dev-o")
    assert held.of("dev-o") is None  # the id itself is no look-alike of itself
    assert held.of("dev-\u043e") == "dev-o" and held.of("dev-0") is None
    held.add("dev-\u043e")  # added regardless: both are held
    assert held.of("dev-o") == "dev-\u043e" and held.of("dev-\u043e") == "dev-o"
    held.discard("dev-o")
    assert held.of("dev-\u043e") is None and held.of("dev-o") == "dev-\u043e"
    held.discard("dev-\u043e")
    held.discard("never-held")
    assert held.of("dev-o") is None and held._ids == {}


def test_every_mapping_of_the_confusables_data_is_read() -> None:
    """confusables.map holds 6,565 mappings after its comment header (``grep -vc '^#'``),
    from its first line (U+05AD) to its last (U+6138), single and multiple code points."""
    table = _prototypes()
    assert len(table) == 6565
    assert table[0x05AD] == "\u0596" and table[0x6138] == "\U0002b73f"
    assert table[0x0430] == "a" and table[ord("m")] == "rn" and table[ord("1")] == "l"
