"""Agent servers and simulated device agents in their own processes on 127.0.0.1.

``Rig(n)`` starts ``stellate serve`` and ``stellate agent --count K --device-id-prefix P``
processes, waits for their "ready" lines (the server prints its URL, the agent fleet prints
"N agent(s) registered"), and always kills them on exit. A process may hold at most the hard
open-file limit, and a server holds two sockets per device (the agent's and the manager's), so
big fleets are sharded across several servers (each device names its own server, as in UFO);
a shard's agents are split over processes of at most ``AGENTS_PER_PROCESS``.
"""

from __future__ import annotations

import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

from .env import hard_nofile, raise_nofile

PYTHON = sys.executable
#: The installed console script (``python -m stellate`` is the same program).
STELLATE = str(Path(sys.executable).with_name("stellate"))
FD_SLACK = 300
AGENTS_PER_PROCESS = 2_500
_URL = re.compile(r"(ws://\S+/ws)")


class RigError(RuntimeError):
    pass


class Child:
    """One subprocess whose stdout lines are read by a thread (so reads can time out)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C on the bench is not delivered twice
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        self.ps = psutil.Process(self.proc.pid)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, pattern: str, timeout: float) -> str:
        """The first stdout line containing ``pattern`` (raises on timeout or exit)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RigError(
                    f"{self.name}: no {pattern!r} line within {timeout:g} s{self.tail()}"
                )
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RigError(f"{self.name} exited ({self.proc.wait()}) {self.tail()}")
            if pattern in line:
                return line

    def tail(self, n: int = 8) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return ("\n  " + "\n  ".join(lines)) if lines else ""

    def cpu_seconds(self) -> float:
        try:
            t = self.ps.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Signal, wait ``grace`` seconds, then kill. Safe to call twice."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class Shard:
    """One agent server and the agents registered on it (in one or more processes)."""

    def __init__(self, index: int, count: int, prefix: str) -> None:
        self.index = index
        self.count = count
        self.prefix = prefix
        self.server: Child | None = None
        self.agents: list[Child] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def device_ids(self) -> Iterator[str]:
        return (f"{self.prefix}{i}" for i in range(self.count))


def shard_sizes(n: int, per_server: int | None = None) -> list[int]:
    """Split n devices over as few servers as the open-file limit allows (2 sockets each)."""
    cap = per_server or max(1, (hard_nofile() - FD_SLACK) // 2)
    shards = max(1, -(-n // cap))
    base, extra = divmod(n, shards)
    return [base + (1 if i < extra else 0) for i in range(shards)]


class Rig:
    """Servers + simulated agents for ``n`` devices; a context manager that always cleans up.

    Args:
        n: devices (one agent each).
        agent_heartbeat: the agents' heartbeat interval (seconds).
        server_heartbeat: the servers' expected heartbeat period (their lease is 3×).
        ready_timeout: seconds the agents of one shard get to register.
    """

    def __init__(
        self,
        n: int,
        *,
        agent_heartbeat: float = 30.0,
        server_heartbeat: float = 30.0,
        ready_timeout: float | None = None,
        per_server: int | None = None,
        tag: str = "rig",
        verbose_servers: bool = False,
        stagger: bool = False,
    ) -> None:
        self.n = n
        self.agent_heartbeat = agent_heartbeat
        self.server_heartbeat = server_heartbeat
        self.ready_timeout = ready_timeout or max(60.0, n / 20)
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"stellate-bench-{tag}-"))
        self.shards = [
            Shard(i, count, f"sim{i}-") for i, count in enumerate(shard_sizes(n, per_server))
        ]
        self.agent_registration_s = 0.0
        self._retired_server_cpu = 0.0
        #: Servers log each registration and departure (``server_log_paths``).
        self.verbose_servers = verbose_servers
        #: Start the agent processes one at a time, each once the one before has registered:
        #: tens of thousands of agents connecting at once to a loaded machine's servers time
        #: out, retry and never get through (the agents have no limit on connects in flight).
        self.stagger = stagger

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Rig:
        raise_nofile(2 * self.n + 1000)
        try:
            began = time.monotonic()
            for shard in self.shards:
                self._start_server(shard, verbose=self.verbose_servers)
            for shard in self.shards:
                for prefix, count in _blocks(shard):
                    shard.agents.append(self._start_agents(shard, prefix, count))
                    if self.stagger:
                        shard.agents[-1].wait_line("registered", self.ready_timeout)
            for shard in self.shards:
                for agents in shard.agents:
                    if not self.stagger:
                        agents.wait_line("registered", self.ready_timeout)
            self.agent_registration_s = time.monotonic() - began
        except BaseException:
            self.close()
            print(f"benchmark rig failed; logs kept in {self.log_dir}", file=sys.stderr)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc is None:  # keep the children's logs only when something went wrong
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def _start_agents(self, shard: Shard, prefix: str, count: int) -> Child:
        argv = [STELLATE, "agent", "--server", shard.url, "--count", str(count)]
        argv += ["--device-id-prefix", prefix, "--heartbeat-interval", str(self.agent_heartbeat)]
        return Child(f"agents-{prefix.rstrip('-')}", argv, self.log_dir)

    def _start_server(self, shard: Shard, *, verbose: bool = False) -> None:
        shard.server = Child(
            f"server{shard.index}",
            [
                STELLATE,
                *(["-v"] if verbose else []),
                "serve",
                "--port",
                str(shard.port),
                "--heartbeat-interval",
                str(self.server_heartbeat),
                # The rig's agents all connect at once: the server's guard against sockets that
                # never register (a quarter of its connections by default) would refuse them
                # with 503 and they would back off, which only makes the rig slow to start.
                "--max-unregistered",
                str(max(16, 2 * shard.count)),
            ],
            self.log_dir,
        )
        line = shard.server.wait_line("agent server on", 30.0)
        match = _URL.search(line)
        if match is None:
            raise RigError(f"cannot read the server URL from {line!r}")
        shard.port = int(match.group(1).rsplit(":", 1)[1].split("/", 1)[0])

    def restart_servers(self, down_for: float = 0.0, *, verbose: bool = False) -> None:
        """Stop every server (SIGTERM: a clean 1001 close), then start it on the same port.

        ``verbose``: the new servers log each registration (``server_log_paths``).
        """
        for shard in self.shards:
            assert shard.server is not None
            self._retired_server_cpu += shard.server.cpu_seconds()
            shard.server.stop(signal.SIGTERM, grace=10.0)
        if down_for:
            time.sleep(down_for)
        for shard in self.shards:
            self._start_server(shard, verbose=verbose)

    def server_log_paths(self) -> list[Path]:
        return [s.server.log_path for s in self.shards if s.server is not None]

    def close(self) -> None:
        for shard in self.shards:
            for child in [*shard.agents, shard.server]:
                if child is not None:
                    child.stop(signal.SIGTERM, grace=5.0)

    # -- what the manager needs and what the children cost ------------------------------------
    def spec(self) -> list[dict[str, Any]]:
        """The devices, for the worker: one ``{url, prefix, count}`` per agent process."""
        return [
            {"url": shard.url, "prefix": prefix, "count": count}
            for shard in self.shards
            for prefix, count in _blocks(shard)
        ]

    def children(self) -> list[Child]:
        return [c for s in self.shards for c in [s.server, *s.agents] if c is not None]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far: servers together, agents together.

        A restarted server starts from zero: ``restart_servers`` keeps the old ones' total.
        """
        servers = self._retired_server_cpu
        servers += sum(s.server.cpu_seconds() for s in self.shards if s.server is not None)
        agents = sum(a.cpu_seconds() for s in self.shards for a in s.agents)
        return {"servers": servers, "agents": agents}


def _blocks(shard: Shard) -> list[tuple[str, int]]:
    """(id prefix, count) per agent process of a shard: at most ``AGENTS_PER_PROCESS`` each."""
    blocks = max(1, -(-shard.count // AGENTS_PER_PROCESS))
    if blocks == 1:
        return [(shard.prefix, shard.count)]
    base, extra = divmod(shard.count, blocks)
    return [(f"{shard.prefix}b{i}-", base + (1 if i < extra else 0)) for i in range(blocks)]
