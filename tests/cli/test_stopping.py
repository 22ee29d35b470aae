"""Ctrl-C and SIGTERM: one exit rule for every command (``stellate.cli.exits``), as the README
says it.

A command that runs until stopped (``serve``, ``agent``, ``up`` without ``--once``) ends
normally when stopped: 0, every connection closed. A command that ends by itself (``up
--once``) interrupted before its end: 130, and the devices it had not brought up are shown as
interrupted, not as failed. Each test starts the real ``stellate``, waits for a line saying it
is running, sends the signal and reads the exit status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from real_time import HANG_GUARD

from stellate.cli import exits

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals to a child process")

STELLATE = Path(sys.executable).parent / "stellate"
REPO = Path(__file__).resolve().parents[2]
SIGNALS = [signal.SIGINT, signal.SIGTERM]


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


def stop(argv: list[str], ready: str, sig: int, *, on_stderr: bool = False) -> tuple[int, str]:
    """Run ``stellate ARGV`` until a line containing ``ready``, send ``sig``: (status, all)."""
    proc = subprocess.Popen(
        [str(STELLATE), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    timer = threading.Timer(HANG_GUARD, proc.kill)  # the guard: never hang the suite
    timer.start()
    try:
        stream = proc.stderr if on_stderr else proc.stdout
        assert stream is not None
        seen = ""
        for line in stream:
            seen += line
            if ready in line:
                break
        assert ready in seen, seen
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = seen + out + err
    assert "Traceback" not in text, text
    return proc.returncode, text


@pytest.mark.parametrize("sig", SIGNALS)
def test_serve_stopped_exits_0(sig: int) -> None:
    code, _ = stop(["serve", "--port", "0"], "stellate agent server on", sig)
    assert code == exits.OK == 0


@pytest.mark.parametrize("sig", SIGNALS)
def test_agent_stopped_exits_0(sig: int) -> None:
    argv = ["agent", "--server", refused_url(), "--device-id", "d"]
    code, text = stop(argv, "cannot connect", sig, on_stderr=True)
    assert code == 0 and text.rstrip().endswith("stopped")


@pytest.mark.parametrize("sig", SIGNALS)
def test_up_keeping_a_fleet_stopped_exits_0(sig: int) -> None:
    code, text = stop(["up", "--embedded"], "fleet up", sig)
    assert code == 0 and "stopped; every connection closed" in text


@pytest.mark.parametrize("sig", SIGNALS)
def test_up_once_interrupted_exits_130_and_says_interrupted(sig: int, tmp_path: Path) -> None:
    config = tmp_path / "devices.yaml"
    config.write_text(
        f"devices:\n  - {{device_id: d, server_url: '{refused_url()}', max_retries: null}}\n",
        encoding="utf-8",
    )
    code, text = stop(["up", str(config), "--once"], "-> backoff", sig)
    assert code == exits.INTERRUPTED == 130
    assert "⏸ Registration interrupted (status: " in text
    assert "Registration failed" not in text


def test_the_readme_states_the_rule() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert (
        "Exit status (one rule for every command): 0 done, and for `serve`, `agent` and `up` "
        "without `--once` a stop by Ctrl-C or SIGTERM"
    ) in " ".join(readme.split())
