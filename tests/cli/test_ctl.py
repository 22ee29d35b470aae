"""``stellate ctl`` against a running ``stellate up``: both the real commands, as processes.

The fleet's agent server and device agents run in this test (real sockets on 127.0.0.1), so the
test reads the server's registration counter: a reload must not reconnect the devices it leaves
untouched. ``stellate up`` serves its control API on ``--metrics-port 0`` (the address is read
from its stderr); ``stellate ctl`` is run once per command, and its exit status and words are
what is asserted.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio
from cli_support import STELLATE, stellate, write_config
from http_get import http_get
from processes import sigterm_and_wait
from real_time import HANG_GUARD

from stellate.agent import DeviceAgent
from stellate.protocol import ClientType
from stellate.server import AgentServer

ADDRESS = re.compile(r"fleet page on http://127\.0\.0\.1:(\d+)/")
KEY = "ctl-test-key-41c9"


def fleet_file(folder: Path, url: str, *device_ids: str) -> str:
    devices = "\n".join(f"  - {{device_id: {d}, server_url: '{url}'}}" for d in device_ids)
    text = f"manager: {{task_name: ops, reconnect_delay: 0.1}}\ndevices:\n{devices}\n"
    return write_config(folder, text)


@attrs.define
class Up:
    """A running ``stellate up`` and what it printed on stderr so far."""

    process: trio.Process
    port: int
    stderr: str

    async def read_until(self, text: str) -> str:
        """stderr up to and including ``text`` (the process's next words)."""
        assert self.process.stderr is not None
        with trio.fail_after(HANG_GUARD):
            while text not in self.stderr:
                chunk = await self.process.stderr.receive_some(4096)
                assert chunk, self.stderr
                self.stderr += chunk.decode()
        return self.stderr

    async def statuses(self) -> dict[str, str]:
        fleet = (await http_get(self.port, "/api/fleet")).json()
        return {d["device_id"]: d["status"] for d in fleet["devices"]}

    async def wait_until(self, wanted: dict[str, str]) -> None:
        """Poll the fleet's JSON until its statuses are ``wanted`` (only a hang fails)."""
        with trio.fail_after(HANG_GUARD):
            while True:  # another process: its JSON is the only way to know
                if await self.statuses() == wanted:
                    return
                await trio.sleep(0.05)


@asynccontextmanager
async def stellate_up(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Up]:
    """``stellate up ARGS --metrics-port 0``, stopped (SIGTERM, exit 0) on the way out."""
    process = await trio.lowlevel.open_process(
        [str(STELLATE), "up", *args, "--metrics-port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    up = Up(process, 0, "")
    try:
        found = ADDRESS.search(await up.read_until("fleet page on"))
        while found is None:
            found = ADDRESS.search(await up.read_until("/ (metrics"))
        up.port = int(found.group(1))
        yield up
    finally:
        await sigterm_and_wait(process, "stellate up")
    assert process.returncode == 0


async def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``stellate ctl ARGS`` run to its end, with ``env`` added to this process's."""
    done = await trio.run_process(
        [str(STELLATE), "ctl", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def agent_site(nursery: trio.Nursery, *device_ids: str) -> tuple[AgentServer, str]:
    """An agent server on 127.0.0.1 with a registered agent per id, and its URL."""
    server = AgentServer()
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/ws"
    for device_id in device_ids:
        await nursery.start(DeviceAgent(url, device_id, system_info={}).run)
    return server, url


def registrations(server: AgentServer) -> int:
    assert server.counts is not None
    return server.counts.registered[ClientType.CONSTELLATION]


async def test_ctl_retries_disconnects_and_reloads_a_running_up(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    server, url = await agent_site(nursery, "a", "b", "c")
    config = fleet_file(tmp_path, url, "a", "b")
    key_file = write_config(tmp_path, KEY + "\n", "control.key")
    async with stellate_up(config, "--control-key-file", key_file) as up:
        manager = ("--manager", f"http://127.0.0.1:{up.port}", "--control-key-file", key_file)
        await up.wait_until({"a": "idle", "b": "idle"})

        stopped = await ctl(*manager, "disconnect", "a")
        assert (stopped.returncode, stopped.stderr) == (0, "")
        assert stopped.stdout == "disconnecting 'a'; it stays disconnected until retried\n"
        await up.wait_until({"a": "disconnected", "b": "idle"})
        back = await ctl(*manager, "retry", "a")
        assert back.returncode == 0 and "retrying 'a' (it was disconnected)" in back.stdout
        await up.wait_until({"a": "idle", "b": "idle"})

        unknown = await ctl(*manager, "retry", "nosuch")
        assert unknown.returncode == 2
        assert unknown.stderr == "stellate ctl: 404: no device 'nosuch' in this manager\n"

        # a reload adds c and removes b; a is not touched: no new registration of it
        before = registrations(server)
        fleet_file(tmp_path, url, "a", "c")
        reloaded = await ctl(*manager, "reload")
        assert reloaded.returncode == 0, reloaded.stderr
        assert reloaded.stdout == "reloaded: 1 added (c), 1 removed (b), 0 changed, 1 unchanged\n"
        await up.wait_until({"a": "idle", "c": "idle"})
        assert registrations(server) == before + 1  # c's; a kept its connection

        # a file with a problem changes nothing and says where
        write_config(tmp_path, "devices:\n  - {device_id: a, server_url: 'ftp://x'}\n")
        invalid = await ctl(*manager, "reload")
        assert invalid.returncode == 2
        assert f"{config}:2: devices[0].server_url: must be a ws:// or wss:// URL" in (
            invalid.stderr
        )
        assert "nothing was changed" in invalid.stderr
        # so does SIGHUP, which says it on up's stderr
        up.process.send_signal(signal.SIGHUP)
        said = await up.read_until(f"{config}:2: devices[0].server_url")
        assert "stellate up: not reloaded (1 problem(s) in the file; nothing was changed)" in said
        fleet_file(tmp_path, url, "a", "b", "c")
        up.process.send_signal(signal.SIGHUP)
        await up.read_until("reloaded: 1 added (b)")
        await up.wait_until({"a": "idle", "b": "idle", "c": "idle"})
        assert registrations(server) == before + 2

        wrong = await ctl(*manager[:2], "retry", "a", env={"STELLATE_CONTROL_KEY": "nope"})
        assert wrong.returncode == 2
        assert wrong.stderr == (
            "stellate ctl: 403: invalid API key (the key from $STELLATE_CONTROL_KEY)\n"
        )
        assert KEY not in wrong.stderr + wrong.stdout


async def test_without_a_control_key_the_actions_say_how_to_enable_them(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    _, url = await agent_site(nursery, "a")
    config = fleet_file(tmp_path, url, "a")
    async with stellate_up(config) as up:
        await up.wait_until({"a": "idle"})
        answer = await ctl(
            "--manager", f"http://127.0.0.1:{up.port}", "retry", "a",
            env={"STELLATE_CONTROL_KEY": KEY},
        )  # fmt: skip
        assert answer.returncode == 2
        assert "the control API is disabled: start stellate up with --control-key-file" in (
            answer.stderr
        )


def test_ctl_says_what_is_missing_before_asking_anyone(tmp_path: Path) -> None:
    no_manager = stellate("ctl", "retry", "a", env={"STELLATE_MANAGER": ""})
    assert no_manager.returncode == 2
    assert "give --manager http://HOST:PORT" in no_manager.stderr
    bad = stellate("ctl", "--manager", "ws://x:1", "reload")
    assert bad.returncode == 2 and "expected http://HOST:PORT" in bad.stderr
    no_key = stellate(
        "ctl", "--manager", "http://127.0.0.1:9", "reload", env={"STELLATE_CONTROL_KEY": ""}
    )
    assert no_key.returncode == 2
    assert "no control key: give --control-key-file FILE or set $STELLATE_CONTROL_KEY" in (
        no_key.stderr
    )
    down = stellate(
        "ctl", "--manager", "http://127.0.0.1:9", "reload", env={"STELLATE_CONTROL_KEY": KEY}
    )
    assert down.returncode == 1 and "cannot reach the manager at http://127.0.0.1:9" in down.stderr
    key_file = write_config(tmp_path, KEY, "control.key")
    config = write_config(tmp_path, "devices:\n  - {device_id: a, server_url: 'ws://h:1/ws'}\n")
    lonely = stellate("up", config, "--control-key-file", key_file)
    assert lonely.returncode == 2
    assert "--control-key-file needs --metrics-port" in lonely.stderr


async def test_an_embedded_fleet_is_not_reloaded_and_says_to_restart(tmp_path: Path) -> None:
    config = fleet_file(tmp_path, "ws://127.0.0.1:9/ws", "a")
    key_file = write_config(tmp_path, KEY, "control.key")
    async with stellate_up(config, "--embedded", "--control-key-file", key_file) as up:
        await up.wait_until({"a": "idle"})
        fleet_file(tmp_path, "ws://127.0.0.1:9/ws", "a", "b")
        manager = ("--manager", f"http://127.0.0.1:{up.port}", "--control-key-file", key_file)
        refused = await ctl(*manager, "reload")
        assert refused.returncode == 2
        assert refused.stderr.startswith(
            "stellate ctl: 409: embedded mode starts its local agents once: restart stellate up"
        )
        assert await up.statuses() == {"a": "idle"}  # nothing changed
