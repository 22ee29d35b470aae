"""A fleet of N devices brought up by a manager in its own process, and what it then costs.

One worker job brings the fleet to IDLE (time, manager CPU, RSS), and may then measure a
steady-state window (heartbeats) and a reconnect storm on the same fleet, so the expensive
bring-up of a big fleet is paid as few times as possible. The servers' and agents' CPU is read
around each stage, so the agent server's own cost per registration and per heartbeat comes
from the same run.
"""

from __future__ import annotations

import time
from typing import Any

from . import storm as storm_analysis
from .driver import run_worker
from .procs import Rig


def measure(
    rig: Rig,
    *,
    heartbeat_interval: float = 30.0,
    window: float = 0.0,
    storm: bool = False,
    tracemalloc: bool = False,
    storm_timeout: float = 180.0,
    shutdown: bool = True,
) -> dict[str, Any]:
    """Run one manager over ``rig``'s devices: the worker's result plus the children's CPU.

    Adds ``servers_cpu_bring_up_s`` (the agent servers' CPU while the manager brought the fleet
    up), ``servers_cpu_window_s`` (during the steady window), ``servers_cpu_shutdown_s`` (while
    the manager closed every connection gracefully, last) and, for a storm, when each agent
    re-joined (the restarted servers log each registration).
    """
    job: dict[str, Any] = {
        "kind": "fleet",
        "spec": rig.spec(),
        "heartbeat_interval": heartbeat_interval,
        "window": window,
        "storm": storm,
        "tracemalloc": tracemalloc,
        "storm_timeout": storm_timeout,
        "timeout": max(120.0, rig.n / 20),
        "shutdown": shutdown,
    }
    marks: dict[str, dict[str, float]] = {"start": rig.cpu_seconds()}
    restart: dict[str, float] = {}

    def on_event(message: dict[str, Any]) -> None:
        event = str(message.get("event"))
        marks[event] = rig.cpu_seconds()
        if event == "restart":
            began = time.monotonic()
            rig.restart_servers(verbose=True)
            restart["s"] = time.monotonic() - began

    budget = (
        job["timeout"]
        + window
        + (storm_timeout + 30.0 if storm else 0.0)
        + (600.0 if tracemalloc else 60.0)
    )
    result = run_worker(job, rig.log_dir, timeout=budget, on_event=on_event)
    marks["end"] = rig.cpu_seconds()
    result["children_cpu_s"] = _spent(marks["start"], marks["end"])
    if "up" in marks:
        result["servers_cpu_bring_up_s"] = _spent(marks["start"], marks["up"])["servers"]
    if "window" in marks and "window_end" in marks:
        spent = _spent(marks["window"], marks["window_end"])
        result["servers_cpu_window_s"] = spent["servers"]
    if "shutdown" in marks and "shutdown_end" in marks:
        result["shutdown"]["servers_cpu_s"] = _spent(marks["shutdown"], marks["shutdown_end"])[
            "servers"
        ]
    if storm:
        result["storm"]["restart_s"] = restart.get("s", 0.0)
        # Read now: the rig's logs are deleted when it closes.
        logs = [str(p) for p in rig.server_log_paths()]
        result["storm"]["rejoined"] = storm_analysis.agent_rejoins(logs)
    return result


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def not_idle(result: dict[str, Any]) -> dict[str, int]:
    """Devices that did not end IDLE, by status (empty when the whole fleet is IDLE)."""
    return {k: v for k, v in result["statuses"].items() if k != "idle"}


def heartbeats_in_window(result: dict[str, Any], interval: float) -> float:
    """Heartbeats the manager sent (and had answered) during the steady window."""
    steady = result["steady"]
    return result["n"] * steady["wall_s"] / interval


def heartbeat_cost(result: dict[str, Any], interval: float) -> dict[str, float] | None:
    """Manager and server CPU per heartbeat over the steady window (None without a window).

    The servers also answer the agents' own heartbeats (every ``agent_interval``), so their
    CPU is divided by both counts.
    """
    steady = result.get("steady")
    if not steady:
        return None
    beats = heartbeats_in_window(result, interval)
    if beats <= 0:
        return None
    out = {"beats": beats, "manager_s": steady["cpu_s"] / beats}
    if "user_s" in steady:
        out["manager_user_s"] = steady["user_s"] / beats
        out["manager_system_s"] = steady["system_s"] / beats
    servers = result.get("servers_cpu_window_s")
    if servers is not None:
        agent_beats = result["n"] * steady["wall_s"] / result.get("agent_interval", 30.0)
        out["server_s"] = servers / (beats + agent_beats)
    return out


def rss_per_device(result: dict[str, Any]) -> float:
    return float(result["rss_after"] - result["rss_before"]) / result["n"]
