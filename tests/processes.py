"""Stopping a child process a test started, one way for every test: politely, then for sure."""

from __future__ import annotations

import signal
import subprocess
from typing import AnyStr

import pytest
import trio
from real_time import HANG_GUARD


def stop_process(proc: subprocess.Popen[AnyStr]) -> tuple[AnyStr | None, AnyStr | None]:
    """SIGTERM ``proc``, then SIGKILL it if it is still there after ``HANG_GUARD`` seconds.

    Returns what was left on its piped stdout and stderr (None for a stream not piped): reading
    them while waiting is what keeps a child that writes on its way out from blocking on a full
    pipe and never ending.
    """
    proc.terminate()
    try:
        return proc.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


async def sigterm_and_wait(process: trio.Process, name: str) -> None:
    """Send ``process`` SIGTERM and wait for it to end; a process still running after
    ``HANG_GUARD`` seconds is killed and the test fails, naming ``name``."""
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(HANG_GUARD):
        await process.wait()
    if process.returncode is None:  # pragma: no cover - a hang is the failure to report
        process.kill()
        pytest.fail(f"{name} did not stop on SIGTERM")
