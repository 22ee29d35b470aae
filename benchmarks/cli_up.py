"""``stellate up --once --json`` over a rig: the whole CLI process's CPU, imports aside.

The CLI adds to the manager: loading the YAML, the progress display, the event stream it reads,
the graceful disconnect at the end and the JSON of every profile. Its whole-process CPU (the
kernel's accounting of the finished child) less that of the same command for one device (the
interpreter, the imports and the set-up) is compared with the manager's own CPU for the fleet.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from .procs import STELLATE, Rig, RigError


def _config(rig: Rig, path: Path, limit: int | None = None) -> Path:
    lines = ["manager:", '  task_name: "bench-up"', "devices:"]
    devices = [(f"{s['prefix']}{i}", s["url"]) for s in rig.spec() for i in range(s["count"])]
    for device_id, url in devices[:limit]:
        lines.append(f'  - device_id: "{device_id}"')
        lines.append(f'    server_url: "{url}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def run_child(
    argv: list[str], out: Path, timeout: float, cwd: Path | None = None
) -> dict[str, Any]:
    """Run ``argv`` with stdout/stderr to files; its CPU from the kernel's rusage of the child."""
    began = time.monotonic()
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd
        )
        deadline = began + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RigError(f"{argv[1]}: no exit within {timeout:g} s")
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": time.monotonic() - began,
        "exit": proc.returncode,
        "max_rss_kib": usage.ru_maxrss,
    }


def _up(rig: Rig, limit: int | None, name: str) -> dict[str, Any]:
    config = _config(rig, rig.log_dir / f"{name}.yaml", limit)
    argv = [STELLATE, "up", "--once", "--json", str(config)]
    run = run_child(argv, rig.log_dir / f"{name}.out", max(120.0, rig.n / 10))
    if run["exit"] != 0:
        raise RigError(f"stellate up exited {run['exit']}: see {rig.log_dir}/{name}.err")
    return run


def measure(rig: Rig, *, baseline_runs: int = 3) -> dict[str, Any]:
    one = min(_up(rig, 1, f"up-one-{i}")["cpu_s"] for i in range(baseline_runs))
    run = _up(rig, None, "up-all")
    return {
        "n": rig.n,
        "cpu_s": run["cpu_s"],
        "imports_cpu_s": one,
        "work_cpu_s": max(0.0, run["cpu_s"] - one) * rig.n / max(1, rig.n - 1),
        "wall_s": run["wall_s"],
        "max_rss_kib": run["max_rss_kib"],
    }
