"""Real ``redis-server`` processes for tests: started on a free loopback port, stopped by pid.

Each server runs in a temporary directory, keeps nothing on disk (no RDB, no AOF) and binds
127.0.0.1 only. :func:`redis_binary` is None where no ``redis-server`` is installed; tests that
need one skip saying so (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
from processes import stop_process
from real_time import HANG_GUARD

#: Why Redis tests skip where the binary is missing.
MISSING = "redis-server is not installed (apt-get install redis-server; .ci/run does)"


def redis_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


@attrs.frozen
class RedisServer:
    port: int
    password: str | None = None

    def url(self, db: int = 0, *, with_password: bool = True) -> str:
        auth = f":{self.password}@" if self.password and with_password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int, tls: bool) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            if tls:  # listening is enough: the test itself speaks TLS to it
                return True
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
            return reply.startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def _launch(
    port: int, directory: str, extra: list[str], tls: tuple[str, str, str] | None = None
) -> subprocess.Popen[bytes] | None:
    """A ``redis-server`` on ``port`` once it answers, or None when it could not bind there."""
    binary = redis_binary()
    assert binary is not None, MISSING
    if tls is None:
        command = [binary, "--port", str(port)]
    else:
        cert, key, ca = tls
        command = [binary, "--port", "0", "--tls-port", str(port), "--tls-auth-clients"]
        command += ["no", "--tls-cert-file", cert, "--tls-key-file", key]
        command += ["--tls-ca-cert-file", ca]
    command += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
    proc = subprocess.Popen([*command, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + HANG_GUARD
    while proc.poll() is None and not _answers(port, tls is not None):
        if time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError(f"redis-server on port {port} never answered")
        time.sleep(0.02)
    if proc.poll() is not None:
        stop_process(proc)  # reaps it and closes its pipe
        return None
    return proc


def _password(password: str | None) -> list[str]:
    return ["--requirepass", password] if password else []


@contextmanager
def redis_server(
    *args: str, password: str | None = None, tls: tuple[str, str, str] | None = None
) -> Iterator[RedisServer]:
    """A ``redis-server`` with ``args`` added to its command line, until the block ends.

    ``tls``: (certificate, key, CA) files: the server then speaks TLS only, on its port.
    """
    for _attempt in range(5):  # the free port may be taken between choosing and binding it
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="stellate-redis-") as directory:
            proc = _launch(port, directory, [*args, *_password(password)], tls)
            if proc is None:
                continue  # it could not bind: another port
            try:
                yield RedisServer(port, password)
                return
            finally:
                stop_process(proc)
    raise RuntimeError("could not start redis-server on a free port (5 attempts)")


class RestartableRedis:
    """A ``redis-server`` a test can stop and start again on the same port (as a restart of
    the service would): ``with RestartableRedis(password=...) as redis: ... redis.restart()``.
    It keeps nothing on disk, so it comes back empty (a restart without persistence)."""

    def __init__(self, *args: str, password: str | None = None) -> None:
        self.args = args
        self.password = password
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._directory = tempfile.TemporaryDirectory(prefix="stellate-redis-")

    def url(self, db: int = 0, *, with_password: bool = True) -> str:
        return RedisServer(self.port, self.password).url(db, with_password=with_password)

    def _start(self) -> bool:
        extra = [*self.args, *_password(self.password)]
        self._proc = _launch(self.port, self._directory.name, extra)
        return self._proc is not None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop it, wait ``down_for`` seconds, then start it again on the same port (retried
        while the port is busy)."""
        self.stop()
        time.sleep(down_for)
        deadline = time.monotonic() + HANG_GUARD
        while not self._start():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server could not start again on port {self.port}")
            time.sleep(0.1)

    def __enter__(self) -> RestartableRedis:
        for _attempt in range(5):
            self.port = free_port()
            if self._start():
                return self
        raise RuntimeError("could not start redis-server on a free port (5 attempts)")

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._directory.cleanup()
