"""Side by side with the reference implementation: its agent server, and its Galaxy manager.

``stellate up --once --json`` and the reference's own constellation manager (Galaxy's
``ConstellationDeviceManager``) each bring the same N devices to IDLE on the same reference
agent server (Microsoft UFO's, Python/asyncio), then stop cleanly (a closing handshake per
device): the whole process's CPU of each, from the kernel's accounting of the finished child,
less the same command for one device (interpreter, imports, set-up), per device.

None of the reference's code is part of stellate. Point the benchmark at a checkout of it and
at a Python that has its dependencies (``STELLATE_BENCH_REFERENCE=DIR``, and
``STELLATE_BENCH_REFERENCE_PYTHON=PYTHON``, default ``DIR/.venv/bin/python``), or pass
``--reference DIR`` to ``python -m benchmarks``; without them this step is skipped and the
report says why. docs/performance.md says how the checkout and its Python are made.

The devices are stellate's simulated agents (``stellate agent --count N``), registered on the
reference server beforehand, as in every other fleet benchmark.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

from . import cli_up
from .env import raise_nofile
from .procs import STELLATE, Child, RigError

ENV_ROOT = "STELLATE_BENCH_REFERENCE"
ENV_PYTHON = "STELLATE_BENCH_REFERENCE_PYTHON"
#: What the Galaxy manager's process runs (this file's sibling, run with the reference's Python).
GALAXY_SCRIPT = Path(__file__).resolve().with_name("galaxy_up.py")


def locate(root: str | None = None) -> tuple[Path, Path] | str:
    """(the reference's checkout, its Python), or why the step cannot run."""
    where = root or os.environ.get(ENV_ROOT)
    if not where:
        return f"no reference checkout given ({ENV_ROOT} or --reference)"
    checkout = Path(where).expanduser().resolve()
    for part in ("ufo/server/app.py", "galaxy/client/device_manager.py"):
        if not (checkout / part).is_file():
            return f"{checkout} is not a checkout of the reference (no {part})"
    python = Path(os.environ.get(ENV_PYTHON) or checkout / ".venv" / "bin" / "python")
    if not python.is_file():
        return f"no Python for the reference at {python} (set {ENV_PYTHON})"
    return checkout, python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RigError(f"the reference server exited ({child.proc.returncode}){child.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise RigError(f"the reference server did not listen within {timeout:g} s{child.tail()}")


class ReferenceRig:
    """The reference agent server and ``n`` simulated agents registered on it."""

    def __init__(self, n: int, checkout: Path, python: Path, log_dir: Path) -> None:
        self.n = n
        self.checkout = checkout
        self.python = python
        self.log_dir = log_dir
        self.key = secrets.token_urlsafe(16)
        self.port = 0
        self.children: list[Child] = []

    @property
    def url(self) -> str:
        """The devices' server URL, key included (both managers pass it as given)."""
        return f"ws://127.0.0.1:{self.port}/ws?token={self.key}"

    def device_ids(self) -> list[str]:
        return [f"ref-{i}" for i in range(self.n)]

    def __enter__(self) -> ReferenceRig:
        raise_nofile(2 * self.n + 1000)
        try:
            self.port = _free_port()
            argv = [str(self.python), "-m", "ufo.server.app", "--port", str(self.port)]
            argv += ["--api-key", self.key, "--log-level", "ERROR"]
            server = Child("reference-server", argv, self.log_dir, cwd=self.checkout)
            self.children.append(server)
            _wait_listening(self.port, server, 120.0)
            argv = [STELLATE, "agent", "--server", f"ws://127.0.0.1:{self.port}/ws"]
            argv += ["--api-key", self.key, "--count", str(self.n), "--device-id-prefix", "ref-"]
            agents = Child("reference-agents", argv, self.log_dir)
            self.children.append(agents)
            agents.wait_line("registered", max(60.0, self.n / 20))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop()


def _stellate(rig: ReferenceRig, limit: int | None, name: str) -> dict[str, Any]:
    lines = ["manager:", '  task_name: "bench-ref"', "devices:"]
    for device_id in rig.device_ids()[:limit]:
        lines += [f'  - device_id: "{device_id}"', f'    server_url: "{rig.url}"']
    config = rig.log_dir / f"{name}.yaml"
    config.write_text("\n".join(lines) + "\n")
    argv = [STELLATE, "up", "--once", "--json", str(config)]
    run = cli_up.run_child(argv, rig.log_dir / f"{name}.out", max(120.0, rig.n / 10))
    if run["exit"] != 0:
        raise RigError(f"stellate up exited {run['exit']}: see {rig.log_dir}/{name}.err")
    return run


def _galaxy(rig: ReferenceRig, limit: int | None, name: str) -> dict[str, Any]:
    ids = rig.device_ids()[:limit]
    argv = [str(rig.python), str(GALAXY_SCRIPT), rig.url, ",".join(ids)]
    run = cli_up.run_child(
        argv, rig.log_dir / f"{name}.out", max(180.0, rig.n / 5), cwd=rig.checkout
    )
    out = (rig.log_dir / f"{name}.out").read_text().strip().splitlines()
    if run["exit"] != 0 or not out or out[-1] != f"IDLE {len(ids)}":
        raise RigError(
            f"the Galaxy manager brought {out[-1] if out else 'nothing'} of {len(ids)} up "
            f"(exit {run['exit']}): see {rig.log_dir}/{name}.err"
        )
    return run


def _whole(runs: list[dict[str, Any]], one: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Per device: the fleet's run less the cheapest one-device run, over n - 1 devices."""
    base = min(r["cpu_s"] for r in one)
    best = min(runs, key=lambda r: r["cpu_s"])
    return {
        "cpu_s": best["cpu_s"],
        "imports_cpu_s": base,
        "per_device_s": max(0.0, best["cpu_s"] - base) / max(1, n - 1),
        "wall_s": best["wall_s"],
        "max_rss_kib": best["max_rss_kib"],
    }


def measure(n: int, log_dir: Path, root: str | None = None, runs: int = 1) -> dict[str, Any]:
    """Both managers over the same reference server and agents; or ``{"skipped": why}``."""
    found = locate(root)
    if isinstance(found, str):
        return {"skipped": found}
    checkout, python = found
    with ReferenceRig(n, checkout, python, log_dir) as rig:
        server = rig.children[0]
        stellate_one = [_stellate(rig, 1, f"ref-stellate-one-{i}") for i in range(2)]
        galaxy_one = [_galaxy(rig, 1, f"ref-galaxy-one-{i}") for i in range(2)]
        stellate_all, galaxy_all, server_cpu = [], [], {"stellate": 0.0, "galaxy": 0.0}
        for i in range(runs):
            before = server.cpu_seconds()
            stellate_all.append(_stellate(rig, None, f"ref-stellate-{i}"))
            server_cpu["stellate"] += server.cpu_seconds() - before
            before = server.cpu_seconds()
            galaxy_all.append(_galaxy(rig, None, f"ref-galaxy-{i}"))
            server_cpu["galaxy"] += server.cpu_seconds() - before
    stellate = _whole(stellate_all, stellate_one, n)
    galaxy = _whole(galaxy_all, galaxy_one, n)
    return {
        "n": n,
        "stellate": stellate,
        "galaxy": galaxy,
        "ratio": stellate["per_device_s"] / galaxy["per_device_s"],
        "server_cpu_s": {k: v / runs for k, v in server_cpu.items()},
        "python": sys.version.split()[0],
    }
