"""End to end: one fleet shared by several ``stellate up --store`` managers, real processes.

Loopback only, its own ``redis-server`` (with a password), a real ``stellate serve`` (with an
API key) and a ``stellate agent --count`` process for the devices. Three managers share the
fleet; then one is killed (-9), one joins, one is stopped (SIGTERM: it hands its devices
over), and Redis restarts empty. After each step the fleet must be back: every device IDLE,
owned by a live manager, ``stellate status --store --json`` agreeing with the agent server's
``/api/clients`` (a device is IDLE in the store exactly when its constellation client is
online), no device FAILED, and no key or password in any output of any process.

The lease is the shortest allowed (5 s), so each step settles in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cli_support import STELLATE, stellate, write_config
from real_time import HANG_GUARD
from redis_servers import MISSING, RestartableRedis, redis_binary

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=MISSING)

DEVICES = 200
LEASE = 5
API_KEY = "fleet-key-never-shown"
PASSWORD = "store-pass-never-shown"
#: Seconds a step may take to settle before the test fails (a healthy step takes a few lease
#: periods; only a broken one meets this).
SETTLE_LIMIT = 90.0


class Rig:
    """The processes of the scenario, their output kept in files (never a pipe left unread)."""

    def __init__(self, folder: Path, redis: RestartableRedis) -> None:
        self.folder = folder
        self.redis = redis
        self.env = {
            **os.environ,
            "STELLATE_API_KEY": API_KEY,
            "STELLATE_STORE_PASSWORD": PASSWORD,
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.server_port = 0
        self.config = ""

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.folder / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        err = open(self.folder / f"{name}.err", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(STELLATE), *args], stdout=out, stderr=err, env=self.env, cwd=self.folder
        )
        out.close()
        err.close()
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return "".join(
            (self.folder / f"{name}.{kind}").read_text(errors="replace") for kind in ("out", "err")
        )

    def wait_for_line(self, name: str, words: str) -> str:
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            for line in self.output(name).splitlines():
                if words in line:
                    return line
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited: {self.output(name)}")
            time.sleep(0.05)
        raise AssertionError(f"{name} never said {words!r}: {self.output(name)}")

    def manager(self, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, "up", self.config, "--manager-id", name)

    def status(self) -> dict[str, Any]:
        result = stellate(
            "status",
            "--store",
            self.redis.url(with_password=False),
            "--json",
            env={"STELLATE_STORE_PASSWORD": PASSWORD},
        )
        self.statuses.append(result.stdout + result.stderr)
        assert result.returncode == 0, result.stderr
        fleet: dict[str, Any] = json.loads(result.stdout)
        return fleet

    statuses: list[str] = []

    def online(self) -> set[str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.server_port}/api/clients", headers={"X-API-Key": API_KEY}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            clients: list[str] = json.load(answer)["online_clients"]
        return set(clients)

    def settled(self, managers: set[str]) -> tuple[bool, str]:
        """Is the fleet back, run by exactly ``managers``? (and what is still missing)"""
        fleet = self.status()
        live = {m["id"] for m in fleet["managers"]}
        devices = {d["device_id"]: d for d in fleet["devices"]}
        statuses = Counter(d["status"] for d in devices.values())
        owners = Counter(d["owner"] for d in devices.values())
        failed = [d for d in devices.values() if d["status"] == "failed"]
        assert not failed, failed  # never, at any step
        online = self.online()
        idle = {d for d, row in devices.items() if row["status"] == "idle"}
        constellations = {c.partition("@")[2] for c in online if "@" in c}
        why = f"managers {sorted(live)}, statuses {dict(statuses)}, owners {dict(owners)}"
        done = (
            live == managers
            and len(devices) == DEVICES
            and statuses == {"idle": DEVICES}
            and set(owners) == managers
            and idle == constellations  # the store agrees with the agent server
            and len(online) == 2 * DEVICES
        )
        return done, why

    def wait_settled(self, managers: set[str]) -> float:
        began = time.monotonic()
        why = ""
        while time.monotonic() - began < SETTLE_LIMIT:
            done, why = self.settled(managers)
            if done:
                return time.monotonic() - began
            time.sleep(0.5)
        raise AssertionError(f"not settled under {sorted(managers)} in {SETTLE_LIMIT:g} s: {why}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_three_managers_survive_a_kill_a_join_a_stop_and_a_redis_restart(tmp_path: Path) -> None:
    with RestartableRedis(password=PASSWORD) as redis:
        rig = Rig(tmp_path, redis)
        try:
            rig.start("serve", "serve", "--port", "0")
            line = rig.wait_for_line("serve", "stellate agent server on ws://")
            rig.server_port = int(line.split("ws://127.0.0.1:")[1].split("/")[0])
            url = f"ws://127.0.0.1:{rig.server_port}/ws"
            rig.start(
                "agents",
                "agent",
                "--server",
                url,
                "--count",
                str(DEVICES),
                "--device-id-prefix",
                "device-",
            )
            rig.wait_for_line("agents", "agent(s) registered")
            lines = [
                "manager:",
                f"  api_key: {API_KEY}",
                "store:",
                f"  url: {redis.url(with_password=False)}",
                f"  lease: {LEASE}",
                "devices:",
            ]
            lines += [
                f'  - {{device_id: "device-{i}", server_url: "{url}"}}' for i in range(DEVICES)
            ]
            rig.config = write_config(tmp_path, "\n".join(lines) + "\n")
            took: dict[str, float] = {}

            for name in ("m1", "m2", "m3"):
                rig.manager(name)
            took["three managers up"] = rig.wait_settled({"m1", "m2", "m3"})

            rig.procs["m1"].kill()  # kill -9: nothing handed over
            took["kill -9 m1"] = rig.wait_settled({"m2", "m3"})

            rig.manager("m4")
            took["m4 joins"] = rig.wait_settled({"m2", "m3", "m4"})

            rig.procs["m2"].send_signal(signal.SIGTERM)
            assert rig.procs["m2"].wait(timeout=HANG_GUARD) == 0
            assert "stopped; every device handed over" in rig.output("m2")
            took["SIGTERM m2"] = rig.wait_settled({"m3", "m4"})

            # Down for 2 s, back empty: every membership, lease and snapshot forgotten.
            redis.restart(down_for=2.0)
            took["Redis restarted empty"] = rig.wait_settled({"m3", "m4"})

            for name in ("m3", "m4"):  # each change of state said once, each way
                said = rig.output(name)
                assert said.count(": unreachable: ") == 1, said
                assert said.count(" is back: ") == 1, said
                assert said.count("no longer acting as owner") == 1, said
                assert said.count("acting as owner again") == 1, said
            print(
                "\n".join(f"{step}: settled in {seconds:.1f} s" for step, seconds in took.items())
            )
        finally:
            rig.stop_all()
        everything = "".join(rig.output(name) for name in rig.procs) + "".join(rig.statuses)
        assert API_KEY not in everything and PASSWORD not in everything
