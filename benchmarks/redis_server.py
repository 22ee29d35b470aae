"""A ``redis-server`` of the benchmarks' own, on a free loopback port, nothing kept on disk.

The store benchmarks (``scale_out``, ``store_renewal``, ``store_snapshots``) each start one and
read its costs from ``INFO`` (CPU, memory, commands and script calls), over a plain socket so a
figure never depends on the client under test. A context manager: the server is stopped on the
way out, on failure too.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

from .procs import RigError

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """Starts ``redis-server`` (persistence off) and waits until it answers.

    Raises:
        RigError: ``redis-server`` is not installed, or did not answer within 10 s.
    """

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RigError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="stellate-bench-redis-")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", self._dir.name]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RigError("redis-server did not start") from None
                time.sleep(0.05)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def info(self) -> dict[str, str]:
        """``INFO all`` as a dict (field → value)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"INFO all\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                data += chunk
                if not chunk or (data.startswith(b"$") and _complete(data)):
                    break
        out = {}
        for line in data.decode(errors="replace").splitlines()[1:]:
            key, sep, value = line.partition(":")
            if sep:
                out[key] = value
        return out

    def cpu(self) -> float:
        """CPU seconds the server has used (user + system)."""
        info = self.info()
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def memory(self) -> int:
        """Bytes the server holds (``used_memory``)."""
        return int(self.info()["used_memory"])

    def commands(self) -> int:
        """Commands processed (a script call counts once, and so does each command it runs)."""
        return int(self.info()["total_commands_processed"])

    def script_calls(self) -> int:
        """``EVAL`` and ``EVALSHA`` calls processed."""
        info = self.info()
        calls = 0
        for name in ("cmdstat_evalsha", "cmdstat_eval"):
            match = re.search(r"calls=(\d+)", info.get(name, ""))
            calls += int(match.group(1)) if match else 0
        return calls

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its directory."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()


def _complete(data: bytes) -> bool:
    """True once ``data`` holds a whole RESP bulk string."""
    head, _, rest = data.partition(b"\r\n")
    return len(rest) >= int(head[1:]) + 2
