"""The installed ``stellate`` command as the CLI tests run it: once to the end, or kept running
while the test reads its lines, then interrupted; and the small files and URLs they give it.

Every wait on the child is guarded by ``HANG_GUARD`` real seconds (only a hang meets it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from processes import stop_process
from real_time import HANG_GUARD

REPO = Path(__file__).resolve().parents[2]
STELLATE = Path(sys.executable).parent / "stellate"


def _env(env: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, **(env or {})}


def stellate(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``stellate ARGS`` run to its end in ``cwd``, with ``env`` added to this process's."""
    return subprocess.run(
        [str(STELLATE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
        env=_env(env),
    )


@contextmanager
def running(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """``stellate ARGS`` started with its output piped; terminated (then killed) on the way out
    if it is still running."""
    proc = subprocess.Popen(
        [str(STELLATE), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop_process(proc)


def lines_until(proc: subprocess.Popen[str], done: Callable[[list[str]], bool]) -> list[str]:
    """The lines ``proc`` prints, as they come, up to the first after which ``done(lines)``
    holds (or its last); the process is killed if that takes ``HANG_GUARD``."""
    assert proc.stdout is not None
    seen: list[str] = []
    timer = threading.Timer(HANG_GUARD, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            seen.append(line)
            if done(seen):
                break
    finally:
        timer.cancel()
    return seen


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C: SIGINT, then the rest of stdout and all of stderr once it exited."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=HANG_GUARD)


def refused_url() -> str:
    """A ws:// URL on a port of 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


def write_config(folder: Path, text: str, name: str = "devices.yaml") -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def unreachable_fleet(folder: Path, manager: str, **devices: str) -> str:
    """A devices.yaml in ``folder`` whose devices each have a URL nothing listens on:
    ``manager`` is the fields of its manager section, each keyword a device id and the rest of
    that device's fields (``unreachable_fleet(p, "reconnect_delay: 1", gone="max_retries: 3")``).
    """
    lines = [f"manager: {{{manager}}}", "devices:"]
    lines += [
        f'  - {{device_id: {device_id}, server_url: "{refused_url()}", {fields}}}'
        for device_id, fields in devices.items()
    ]
    return write_config(folder, "\n".join(lines) + "\n")
