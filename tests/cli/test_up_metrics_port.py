"""``stellate up --metrics-port``: the real command serves the fleet page, JSON and metrics.

The embedded example fleet (a local agent server and one agent per device on 127.0.0.1) comes
up while this test asks the port what it sees; SIGTERM then stops it cleanly.
"""

from __future__ import annotations

import re
import subprocess
import sys

import trio
from http_get import http_get
from processes import sigterm_and_wait
from prometheus_client.parser import text_string_to_metric_families
from real_time import HANG_GUARD

ADDRESS = re.compile(rb"fleet page on http://127\.0\.0\.1:(\d+)/")


async def test_up_serves_the_fleet_on_its_metrics_port(tmp_path: object) -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "stellate", "up", "--metrics-port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=str(tmp_path),  # no config here: the example fleet, embedded
    )
    assert process.stderr is not None
    stderr = b""
    try:
        with trio.fail_after(HANG_GUARD):
            while not (found := ADDRESS.search(stderr)):
                chunk = await process.stderr.receive_some(4096)
                assert chunk, stderr.decode()
                stderr += chunk
            port = int(found.group(1))
            while True:  # the fleet comes up on its own; the JSON says when
                fleet = (await http_get(port, "/api/fleet")).json()
                if fleet["devices"] and all(d["status"] == "idle" for d in fleet["devices"]):
                    break
                await trio.sleep(0.1)
            assert fleet["stats"]["by_status"]["idle"] == len(fleet["devices"])
            assert all("token=" not in d["profile"]["server_url"] for d in fleet["devices"])
            metrics = (await http_get(port, "/metrics")).text
            idle = [
                sample.value
                for family in text_string_to_metric_families(metrics)
                for sample in family.samples
                if sample.name == "stellate_manager_devices" and sample.labels["status"] == "idle"
            ]
            assert idle == [len(fleet["devices"])]
            page = await http_get(port, "/")
            assert page.status == 200 and b"<svg" in page.body
    finally:
        await sigterm_and_wait(process, "stellate up")
    assert process.returncode == 0
