"""``stellate up``: the embedded fleet, --once/--json contracts, exit codes, clean Ctrl-C.

The end-to-end tests run the installed ``stellate`` script in a subprocess from the repo root
(exactly what ``make run`` and the issue's "done when" do), each with a timeout. The in-process
ones drive ``_watch`` under MockClock, and ``cli.main`` in a worker thread.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from cli_support import interrupt, lines_until, running, stellate, unreachable_fleet, write_config
from real_time import HANG_GUARD

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.agent import DeviceAgent
from stellate.cli import main
from stellate.cli.display import (
    PROFILE_BLOCKS,
    DeviceReport,
    PlainDisplay,
    print_profiles,
    profiles_json,
)
from stellate.cli.up import _Until, _watch
from stellate.fsm import SYSTEM_INFO_KEYS, AgentProfile, DeviceStatus
from stellate.manager import ConstellationDeviceManager, EventKind
from stellate.server import AgentServer

#: Galaxy's AgentProfile keys, in order, then the two reasons and the mode `--json` adds.
PROFILE_KEYS = [
    "device_id",
    "server_url",
    "os",
    "capabilities",
    "metadata",
    "status",
    "last_heartbeat",
    "connection_attempts",
    "max_retries",
    "current_task_id",
    "failure_reason",
    "last_error",
    "embedded",
]


def run_up(*args: str) -> subprocess.CompletedProcess[str]:
    return stellate("up", *args)


# -- end to end: the installed command ------------------------------------------------------


def test_up_once_json_default_fleet_all_idle_with_merged_telemetry() -> None:
    result = run_up("--embedded", "--once", "--json")  # what `make run ARGS="--once --json"` runs
    assert result.returncode == 0, result.stderr
    profiles = json.loads(result.stdout)  # stdout is nothing but the JSON document
    assert [p["device_id"] for p in profiles] == ["windowsagent", "linuxagent", "macagent"]
    for p in profiles:
        assert list(p) == PROFILE_KEYS
        assert p["status"] == "idle"
        assert p["connection_attempts"] == 0 and p["last_heartbeat"] is not None
        assert list(p["metadata"]["system_info"]) == list(SYSTEM_INFO_KEYS)
        assert p["os"] == p["metadata"]["system_info"]["platform"]
        assert p["server_url"].startswith("ws://127.0.0.1:")
        assert p["embedded"] is True
    windows = profiles[0]
    assert windows["capabilities"][:3] == ["web_browsing", "office_applications", "file_management"]
    assert len(windows["capabilities"]) > 3  # the machine's supported_features merged after
    assert windows["metadata"]["location"] == "office_desktop"
    # Progress went to stderr: every device through every phase.
    for device in ("windowsagent", "linuxagent", "macagent"):
        assert f"{device}: disconnected -> connecting (connect)" in result.stderr
        assert f"{device}: telemetry -> idle (telemetry_received)" in result.stderr


def test_up_once_plain_output_shows_phases_then_the_seeds_profile_format() -> None:
    result = run_up("--embedded", "--once")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "linuxagent: connected -> registering (register_sent)  [phase 3 registration]" in out
    assert "linuxagent: telemetry merged:" in out
    assert out.count("✅ Registration successful!") == 3
    assert out.count("📊 AgentProfile:") == 3
    # Each block says its server was a local stand-in, not one the file names.
    assert (
        len(re.findall(r"  Server: ws://127\.0\.0\.1:\d+/ws \(embedded: a local stand-in", out))
        == 3
    )
    assert "  Device ID: macagent" in out
    assert "  Status: idle" in out
    assert "    - CPU Cores: " in out
    # the transitions come before the profiles
    assert out.index("-> idle") < out.index("📊 AgentProfile:")


def test_up_prints_the_first_few_profile_blocks_then_a_summary_line(tmp_path: Path) -> None:
    devices = "".join(
        f'  - {{device_id: dev{i}, server_url: "ws://localhost:5005/ws"}}\n'
        for i in range(PROFILE_BLOCKS + 2)
    )
    config = write_config(tmp_path, f"devices:\n{devices}")
    result = run_up(config, "--embedded", "--once")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("📊 AgentProfile:") == PROFILE_BLOCKS
    assert "… and 2 more devices: idle=2 (stellate up --json prints every profile)" in out
    assert out.rstrip().endswith(f"stellate up: {PROFILE_BLOCKS + 2}/{PROFILE_BLOCKS + 2} idle")


def test_up_embedded_redacts_the_api_key(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        """
manager: {api_key: "s3cret-key", reconnect_delay: 0.1}
devices:
  - {device_id: one, server_url: "ws://localhost:5005/ws"}
  - {device_id: two, server_url: "ws://localhost:5005/ws"}
""",
    )
    result = run_up(config, "--embedded", "--once", "--json")
    assert result.returncode == 0, result.stderr
    assert "s3cret-key" not in result.stdout + result.stderr
    profiles = json.loads(result.stdout)
    assert {p["status"] for p in profiles} == {"idle"}
    assert all("token=***" in p["server_url"] for p in profiles)


def test_up_once_exits_1_when_a_device_fails(tmp_path: Path) -> None:
    config = unreachable_fleet(
        tmp_path,
        "reconnect_delay: 0.01, backoff_cap: 0.05",
        gone="max_retries: 2",
        later="auto_connect: false",
    )
    result = run_up(config, "--once", "--json")
    assert result.returncode == 1, result.stderr
    profiles = {p["device_id"]: p for p in json.loads(result.stdout)}
    assert profiles["gone"]["status"] == "failed"
    assert profiles["gone"]["connection_attempts"] == 2
    # auto_connect: false is registered only, and does not hold --once up.
    assert profiles["later"]["status"] == "disconnected"
    assert "gave up after 2 attempts" in result.stderr


def test_up_reports_config_problems_with_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, "devices:\n  - {device_id: x, server_url: 'http://nope'}\n")
    result = run_up(config, "--once")
    assert result.returncode == 2
    assert "server_url" in result.stderr and result.stdout == ""


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child process")
def test_up_without_once_keeps_the_fleet_until_ctrl_c_then_disconnects() -> None:
    with running("up", "--embedded") as proc:  # what `make run` runs
        seen = lines_until(proc, lambda lines: "fleet up" in lines[-1])
        assert any("fleet up" in line for line in seen), "".join(seen)
        assert "".join(seen).count("✅ Registration successful!") == 3
        _out, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert "stopped; every connection closed" in err
    assert "Traceback" not in err and "Task was destroyed" not in err


# -- in process -----------------------------------------------------------------------------


def test_main_in_a_worker_thread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        """
devices:
  - {device_id: alpha, server_url: "ws://localhost:5005/ws", capabilities: [x]}
""",
    )
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(main(["up", config, "--embedded", "--once", "--json"]))
    )
    worker.start()
    worker.join(HANG_GUARD)
    assert not worker.is_alive()
    assert codes == [0]
    (profile,) = json.loads(capsys.readouterr().out)
    assert profile["device_id"] == "alpha" and profile["status"] == "idle"
    assert profile["capabilities"][0] == "x"


URL = "ws://agents.test:5005/ws"


async def test_watch_shows_every_device_up_to_idle(autojump_clock: Any) -> None:
    ids = ["a", "b", "c"]
    async with MemoryNetwork() as net, trio.open_nursery() as nursery:
        server = AgentServer()

        async def handler(conn: Any, _info: Any) -> None:
            await server.handle_connection(conn)

        net.listen(URL, handler)
        for device_id in ids:
            agent = DeviceAgent(URL, device_id, connector=net, system_info={"platform": "linux"})
            await nursery.start(agent.run)
        out = io.StringIO()
        async with (
            ConstellationDeviceManager(connector=net, strict=True) as manager,
            manager.events() as events,
        ):
            for device_id in ids:
                manager.add_device(AgentProfile(device_id, URL))
            assert await _watch(manager, events, PlainDisplay(out, 3), ids, until=_Until.SETTLED)
            assert {p.status for p in manager.get_all_devices().values()} == {DeviceStatus.IDLE}
        nursery.cancel_scope.cancel()
    text = out.getvalue()
    for device_id in ids:  # the last device's activation is shown too, after its telemetry
        assert f"{device_id}: telemetry merged:" in text
        assert f"{device_id}: telemetry -> idle (telemetry_received)" in text


async def test_watch_returns_when_the_last_device_settles_not_at_a_tick(
    autojump_clock: Any,
) -> None:
    # A device that fails after three refused attempts, at a time set by the jittered backoff
    # (no multiple of the redraw tick): _watch returns at that very instant.
    failed_at: list[float] = []
    async with (
        MemoryNetwork() as net,
        ConstellationDeviceManager(
            connector=net, timing=Timing(reconnect_delay=1.0, backoff_cap=4.0), strict=True
        ) as manager,
    ):

        async def note_failure(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            async with manager.events() as mine:
                task_status.started()
                async for event in mine:
                    if event.kind is EventKind.FAILED:
                        failed_at.append(trio.current_time())
                        return

        async with trio.open_nursery() as nursery, manager.events() as events:
            await nursery.start(note_failure)
            manager.add_device(AgentProfile("x", URL, max_retries=3))
            display = PlainDisplay(io.StringIO(), 1)
            assert await _watch(manager, events, display, ["x"], until=_Until.SETTLED)
            returned_at = trio.current_time()
    assert failed_at == [returned_at]
    assert returned_at > 0.25 and returned_at % 0.25 != 0


async def test_watch_without_once_ends_with_the_event_stream(autojump_clock: Any) -> None:
    async with MemoryNetwork() as net:
        manager = ConstellationDeviceManager(connector=net, strict=True)
        async with manager, manager.events() as events:
            manager.add_device(AgentProfile("x", URL, max_retries=1))
            manager.stop()  # the stream closes when the manager stops
            assert await _watch(manager, events, PlainDisplay(io.StringIO(), 1), ["x"]) is False


def test_json_redacts_and_keeps_the_seed_keys() -> None:
    profile = AgentProfile("d", "wss://u:pw@h:1/ws?token=abc", capabilities=["a"])
    (item,) = json.loads(profiles_json([DeviceReport(profile)]))
    assert list(item) == PROFILE_KEYS
    assert item["server_url"] == "wss://***@h:1/ws?token=***"
    assert item["status"] == "disconnected"


def test_print_profiles_in_the_seeds_format() -> None:
    out = io.StringIO()
    profile = AgentProfile(
        "windowsagent",
        "ws://h/ws?token=abc",
        os="windows",
        capabilities=["web_browsing"],
        metadata={"system_info": {"cpu_count": 16, "memory_total_gb": 32.0}},
    )
    print_profiles([DeviceReport(profile)], out)
    text = out.getvalue()
    assert text.startswith("⏸ Registration not finished (status: disconnected)")  # no failure
    assert "  Device ID: windowsagent\n" in text
    assert "  Capabilities: ['web_browsing']\n" in text
    assert "    - CPU Cores: 16\n" in text and "    - Memory: 32.0 GB\n" in text
    assert "abc" not in text
    failed = attrs.evolve(profile, status=DeviceStatus.FAILED)
    interrupted = attrs.evolve(profile, status=DeviceStatus.BACKOFF)
    out = io.StringIO()
    print_profiles([DeviceReport(failed, "gave up"), DeviceReport(interrupted)], out, unsettled="x")
    assert "❌ Registration failed (status: failed)\n" in out.getvalue()
    assert "⏸ Registration x (status: backoff)\n" in out.getvalue()
