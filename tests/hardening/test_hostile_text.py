"""Issue 10, classes 3 (second half) and 5: text from outside can neither forge a log line nor
repaint a terminal, and an id is readable text with one spelling.

``escape_text`` is checked on any string (nothing hidden survives, plain text is untouched),
the log filter on records carrying peer text, the id rule on look-alikes drawn by hypothesis
(each refused by the config, the server and the agent alike), and the display on the
strings a peer chooses (its platform, hostname, error texts).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import trio
import trio.testing
from hardening_support import FIGURES
from hypothesis import given, settings
from hypothesis import strategies as st
from log_records import filtered_logger
from profiles import examples

from stellate.agent import DeviceAgent
from stellate.cli.display import DeviceReport, event_line, print_profiles
from stellate.config import ConfigError, loads_config
from stellate.fsm import AgentProfile, DeviceStatus, Trigger
from stellate.fsm.lifecycle import TransitionRecord
from stellate.manager import ConstellationDeviceManager, EventKind, ManagerEvent
from stellate.protocol import ClientType, Close, ServerSession
from stellate.protocol.ids import (
    MAX_ID_LENGTH,
    client_id_problem,
    constellation_id,
    device_id_problem,
)
from stellate.protocol.registry import ClientRegistry
from stellate.protocol.session_server import ServerPhase
from stellate.text.escape import escape_text, is_hidden
from stellate.text.redact import RedactingFilter

STELLATE = Path(sys.executable).parent / "stellate"

HIDDEN_SAMPLES = [
    "\n",
    "\r",
    "\x1b",
    "\x00",
    "\x7f",
    "\x85",
    "\u00a0",
    "\u00ad",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2028",
    "\u2066",
    "\u3164",
    "\ufeff",
    "\ud800",
    "\ue000",
    "\U000e0041",
    "\ufe0f",
]


def visible(text: str) -> bool:
    return not any(is_hidden(ch) for ch in text)


@settings(max_examples=examples(500))
@given(st.text())
def test_escaped_text_has_nothing_hidden_and_plain_text_is_untouched(text: str) -> None:
    FIGURES["hostile texts tried"] += 1
    out = escape_text(text, limit=None)
    assert visible(out)
    assert "\n" not in out and "\x1b" not in out
    out.encode("utf-8")  # no lone surrogate left: every terminal can print it
    if visible(text):
        assert out == text


@given(st.text(min_size=1), st.integers(1, 50))
def test_escaped_text_is_cut_at_the_limit(text: str, limit: int) -> None:
    out = escape_text(text, limit=limit)
    if len(text) > limit:
        assert out.endswith(f"…({len(text) - limit} more characters)")
    else:
        assert "more characters" not in out or "more characters" in text


@pytest.mark.parametrize("ch", HIDDEN_SAMPLES)
def test_each_kind_of_hidden_character_is_escaped(ch: str) -> None:
    assert is_hidden(ch)
    out = escape_text(f"a{ch}b")
    assert out.startswith("a\\") and out.endswith("b") and visible(out)


def test_escape_takes_objects_whose_str_fails() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert escape_text(Hostile()) == "<unprintable Hostile: RuntimeError>"


# -- the log filter ---------------------------------------------------------------------------


def logged(filt: RedactingFilter, message: str, *args: object) -> str:
    logger, stream = filtered_logger(filt)
    logger.warning(message, *args)
    return stream.getvalue()


@settings(max_examples=examples(200))
@given(peer=st.text())
def test_a_peer_cannot_forge_a_log_line(peer: str) -> None:
    FIGURES["hostile texts tried"] += 1
    out = logged(RedactingFilter(), "device %s said: %s", peer, peer)
    assert out.count("\n") == 1 and out.endswith("\n")  # one record, one line
    assert visible(out[:-1])


def test_the_issue_examples_stay_on_their_line() -> None:
    forged = "dev1\n2026-01-01 ERROR stellate.server: fake line\x1b[2J\u202eevil"
    out = logged(RedactingFilter(["KEY"]), "registered %s with KEY", forged)
    assert out == (
        "registered dev1\\n2026-01-01 ERROR stellate.server: fake line\\x1b[2J\\u202eevil "
        "with ***\n"
    )


# -- the id rule ------------------------------------------------------------------------------

LOOK_ALIKES = [
    "good1\u200b",
    "good1 ",
    " good1",
    "good1\x00",
    "good1\n",
    "go\u00adod1",
    "good1\ufeff",
    "good1\u202e",
    "g\u3164ood1",
    "good1\ufe0f",
    "goode\u0301",  # NFD: 'e' + combining acute
    "good\u00a01",
    "good1\ud800",
    "a" * (MAX_ID_LENGTH + 1),
    "",
    "task@good1",
]


@pytest.mark.parametrize("device_id", LOOK_ALIKES)
def test_look_alike_and_malformed_device_ids_are_refused(device_id: str) -> None:
    assert device_id_problem(device_id) is not None
    assert client_id_problem(device_id, ClientType.DEVICE) is not None


@pytest.mark.parametrize(
    "device_id", ["good1", "windowsagent", "dev-01.lab_2", "gerät", "goodé", "工作站", "a" * 128]
)
def test_ordinary_ids_are_fine(device_id: str) -> None:
    assert device_id_problem(device_id) is None
    assert client_id_problem(constellation_id("task", device_id), ClientType.CONSTELLATION) is None


@given(st.text(max_size=MAX_ID_LENGTH + 5))
def test_an_accepted_id_is_visible_nfc_text_of_bounded_length(text: str) -> None:
    FIGURES["ids tried"] += 1
    if device_id_problem(text) is None:
        assert 1 <= len(text) <= MAX_ID_LENGTH
        assert visible(text) and not any(ch.isspace() for ch in text)
        assert unicodedata.is_normalized("NFC", text) and "@" not in text
        assert escape_text(text) == text
        text.encode("utf-8")


def test_roles_have_separate_id_shapes() -> None:
    """Issue 10, class 7: a device cannot hold ``task@dev``, a constellation cannot hold
    ``dev``."""
    assert client_id_problem("task@dev", ClientType.DEVICE) is not None
    assert client_id_problem("dev", ClientType.CONSTELLATION) is not None
    assert client_id_problem("task@dev", ClientType.CONSTELLATION) is None
    assert client_id_problem("my@task@dev", ClientType.CONSTELLATION) is None  # task "my@task"
    assert client_id_problem("task@", ClientType.CONSTELLATION) is not None
    assert client_id_problem("@dev", ClientType.CONSTELLATION) is not None
    assert client_id_problem("task@dev\u200b", ClientType.CONSTELLATION) is not None


# -- the rule where it is applied: config, server, agent ----------------------------------------


@pytest.mark.parametrize("device_id", LOOK_ALIKES)
def test_the_config_refuses_what_the_rule_refuses(device_id: str) -> None:
    FIGURES["ids tried"] += 1
    text = f"devices:\n  - device_id: {json.dumps(device_id)}\n    server_url: ws://h/ws\n"
    with pytest.raises(ConfigError) as caught:
        loads_config(text, "devices.yaml")
    (problem,) = caught.value.problems
    assert str(problem).startswith("devices.yaml:2: devices[0].device_id: ")
    assert visible(str(problem)) and "\n" not in str(problem)


@pytest.mark.parametrize("device_id", [i for i in LOOK_ALIKES if i])
def test_the_server_refuses_what_the_rule_refuses_and_registers_nothing(device_id: str) -> None:
    FIGURES["ids tried"] += 1
    registry = ClientRegistry()
    owner = ServerSession(registry, 0.0)
    owner.receive(json.dumps({"type": "register", "status": "ok", "client_id": "good1"}), 0.0)
    squatter = ServerSession(registry, 0.0)
    frame = json.dumps({"type": "register", "status": "ok", "client_id": device_id})
    actions = squatter.receive(frame, 0.0)
    assert squatter.phase is ServerPhase.CLOSED
    (close,) = [a for a in actions if isinstance(a, Close)]
    assert close.code == 1008 and (close.reason or "").startswith("invalid device id "), close
    assert [entry.client_id for entry in registry] == ["good1"]


@pytest.mark.parametrize("device_id", LOOK_ALIKES)
def test_the_agent_refuses_what_the_rule_refuses(device_id: str) -> None:
    with pytest.raises(ValueError, match="invalid device id"):
        DeviceAgent("ws://h/ws", device_id, system_info={})


def test_stellate_validate_names_a_lone_surrogate_instead_of_crashing(tmp_path: Path) -> None:
    """Issue 10, 5: ``"a\\ud800b"`` passed validate, then crashed ``stellate up``."""
    path = tmp_path / "devices.yaml"
    path.write_text('devices:\n  - device_id: "a\\ud800b"\n    server_url: ws://h/ws\n')
    result = subprocess.run(
        [str(STELLATE), "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}:2: devices[0].device_id: must not contain invisible characters (U+D800" in (
        result.stderr + result.stdout
    )


# -- the display ----------------------------------------------------------------------------------

HOSTILE = "x\n2026-01-01 fake line\x1b[2J\u202e\ud800\u200bend"


def _event(
    reason: str | None, device_id: str = "dev", dest: DeviceStatus = DeviceStatus.FAILED
) -> ManagerEvent:
    record = TransitionRecord(device_id, Trigger.CONNECTION_FAILED, DeviceStatus.CONNECTING, dest)
    profile = AgentProfile(device_id, "ws://h/ws", status=dest, os=HOSTILE)
    kind = EventKind.FAILED if dest is DeviceStatus.FAILED else EventKind.PHASE
    return ManagerEvent(kind, device_id, record, profile, reason=reason)


@pytest.mark.parametrize("dest", [DeviceStatus.FAILED, DeviceStatus.BACKOFF])
def test_a_peer_reason_cannot_break_a_display_line(dest: DeviceStatus) -> None:
    line = event_line(_event(HOSTILE, device_id=HOSTILE, dest=dest))
    assert "\n" not in line and visible(line)
    line.encode("utf-8")
    assert "\\n2026-01-01 fake line\\x1b[2J\\u202e\\ud800\\u200bend" in line


def test_printed_profiles_escape_everything_a_peer_chose() -> None:
    profile = AgentProfile(
        HOSTILE,
        "ws://h/ws",
        status=DeviceStatus.FAILED,
        os=HOSTILE,
        capabilities=(HOSTILE,),
        metadata={"system_info": {"hostname": HOSTILE, "ip_address": HOSTILE, "cpu_count": 4}},
    )
    out = io.StringIO()
    print_profiles([DeviceReport(profile, failure_reason=HOSTILE, last_error=HOSTILE)], out)
    text = out.getvalue()
    text.encode("utf-8")
    for line in text.splitlines():
        assert visible(line), line
    assert "fake line" in text and not any(line.startswith("2026") for line in text.splitlines())


@pytest.mark.parametrize("device_id", LOOK_ALIKES)
async def test_the_manager_refuses_what_the_rule_refuses(
    device_id: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with ConstellationDeviceManager(strict=True) as manager:
        with pytest.raises(ValueError, match="invalid device id"):
            await manager.register_device(device_id, "ws://h/ws")
        assert manager.get_all_devices() == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "ws://h/ws", "--device-id", "task@dev"], "must not contain '@'"),
        (["--server", "ws://h/ws", "--device-id", "dev\u200b"], "U+200B ZERO WIDTH SPACE"),
        (["--server", "ws://h:0/ws", "--device-id", "dev"], "has port 0"),
        (["--server", "ws://h/ws#x", "--device-id", "dev"], "must not have a fragment"),
    ],
)
def test_stellate_agent_exits_2_where_retrying_cannot_help(args: list[str], message: str) -> None:
    result = subprocess.run(
        [str(STELLATE), "agent", *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
