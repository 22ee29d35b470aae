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
import subprocess
import threading
from pathlib import Path

import pytest
from cli_support import REPO, lines_until, refused_url, running
from real_time import HANG_GUARD

from stellate.cli import exits

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals to a child process")

SIGNALS = [signal.SIGINT, signal.SIGTERM]


def stop(argv: list[str], ready: str, sig: int, *, on_stderr: bool = False) -> tuple[int, str]:
    """Run ``stellate ARGV`` until a line containing ``ready``, send ``sig``: (status, all)."""
    with running(*argv) as proc:
        if on_stderr:
            seen = _stderr_until(proc, ready)
        else:
            seen = "".join(lines_until(proc, lambda lines: ready in lines[-1]))
        assert ready in seen, seen
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=HANG_GUARD)
    text = seen + out + err
    assert "Traceback" not in text, text
    return proc.returncode, text


def _stderr_until(proc: subprocess.Popen[str], ready: str) -> str:
    """stderr's lines up to the first containing ``ready`` (the agent says nothing on stdout
    until it registers)."""
    assert proc.stderr is not None
    timer = threading.Timer(HANG_GUARD, proc.kill)
    timer.start()
    seen = ""
    try:
        for line in proc.stderr:
            seen += line
            if ready in line:
                break
    finally:
        timer.cancel()
    return seen


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
