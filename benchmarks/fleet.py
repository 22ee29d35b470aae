"""2, 3, 4, 6: a fleet of N devices brought up by a manager in its own process.

One worker job brings the fleet to IDLE (figure 2, and RSS for figure 3), and may then measure a
steady-state window (figure 4) and a reconnect storm (figure 6) on the same fleet, so the
expensive bring-up of 5,000 devices is paid as few times as possible.
"""

from __future__ import annotations

import time
from typing import Any

from .driver import run_worker
from .procs import Rig
from .report import Row

#: Bring-up targets (seconds to all IDLE) on a 2-core machine.
BRING_UP_TARGETS = {500: 2.5, 5000: 25.0, 10000: 50.0}
REFERENCE_CPU_PER_DEVICE = 0.025
MEMORY_TARGET = 64 * 1024
STEADY_TARGET = 0.02  # of one core, 5,000 devices heartbeating every 30 s
STORM_WINDOW = 0.1
STORM_SHARE_TARGET = 0.05


def measure(
    rig: Rig,
    *,
    heartbeat_interval: float = 30.0,
    window: float = 0.0,
    storm: bool = False,
    tracemalloc: bool = False,
    connect_limit: int = 0,
    storm_timeout: float = 180.0,
) -> dict[str, Any]:
    """Run one manager over ``rig``'s devices: the worker's result plus the children's CPU."""
    job: dict[str, Any] = {
        "kind": "fleet",
        "spec": rig.spec(),
        "heartbeat_interval": heartbeat_interval,
        "window": window,
        "storm": storm,
        "tracemalloc": tracemalloc,
        "connect_limit": connect_limit,
        "storm_timeout": storm_timeout,
        "timeout": max(120.0, rig.n / 20),
    }
    marks: dict[str, float] = {}
    children0 = rig.cpu_seconds()

    def on_event(message: dict[str, Any]) -> None:
        event = message.get("event")
        marks[str(event)] = time.monotonic()
        if event == "up":
            marks["children_up"] = sum(rig.cpu_seconds().values())
        if event == "restart":
            began = time.monotonic()
            rig.restart_servers()
            marks["restart_s"] = time.monotonic() - began

    budget = (
        job["timeout"]
        + window
        + (storm_timeout + 30.0 if storm else 0.0)
        + (600.0 if tracemalloc else 60.0)
    )
    result = run_worker(job, rig.log_dir, timeout=budget, on_event=on_event)
    children1 = rig.cpu_seconds()
    result["children_cpu_s"] = {k: children1[k] - children0[k] for k in children0}
    if "children_up" in marks:
        result["children_cpu_bring_up_s"] = marks["children_up"] - sum(children0.values())
    if "restart_s" in marks:
        result["storm"]["restart_s"] = marks["restart_s"]
    return result


def _failures(result: dict[str, Any]) -> str:
    statuses = result["statuses"]
    bad = {k: v for k, v in statuses.items() if k != "idle"}
    return f"; NOT IDLE: {bad}" if bad or not result["settled"] else ""


def bring_up_rows(result: dict[str, Any]) -> list[Row]:
    n, wall, cpu = result["n"], result["wall_s"], result["cpu_s"]
    target = BRING_UP_TARGETS.get(n)
    children = result.get("children_cpu_bring_up_s")
    note = f"manager CPU {cpu:.2f} s = {cpu / n * 1e3:.1f} ms/device"
    if children is not None:
        note += f"; servers+agents CPU meanwhile {children:.1f} s"
    if "attempts" in result:
        note += f"; {result['attempts']} attempts"
    note += _failures(result)
    rows = [
        Row(
            "2 fleet",
            f"N={n:,} start → all IDLE",
            f"{wall:.2f} s",
            f"≤ {target:g} s" if target else "",
            (wall <= target and result["settled"]) if target else None,
            wall,
            note,
        ),
        Row("2 fleet", f"N={n:,} devices/s", f"{n / wall:,.0f}/s", value=n / wall),
        Row(
            "2 fleet",
            f"N={n:,} manager CPU",
            f"{cpu:.2f} s ({cpu / n * 1e3:.1f} ms/device)",
            "≤ 25 ms/device (ref.)",
            cpu / n <= REFERENCE_CPU_PER_DEVICE,
            cpu,
        ),
    ]
    return rows


def memory_rows(result: dict[str, Any], *, label: str = "") -> list[Row]:
    n = result["n"]
    per_device = (result["rss_after"] - result["rss_before"]) / n
    return [
        Row(
            "3 memory",
            f"N={n:,} manager RSS per IDLE device{label}",
            f"{per_device / 1024:.1f} KiB",
            "≤ 64 KiB",
            per_device <= MEMORY_TARGET,
            per_device,
            f"RSS {result['rss_before'] / 2**20:.0f} → {result['rss_after'] / 2**20:.0f} MiB",
        )
    ]


def split_rows(result: dict[str, Any]) -> list[Row]:
    n = result["n"]
    split: dict[str, int] = result["split"]
    total = sum(split.values())
    order = ["machine", "profiles", "sockets", "runner+manager", "trio tasks", "other"]
    parts = ", ".join(
        f"{name} {split.get(name, 0) / n / 1024:.1f}" for name in order if name in split
    )
    return [
        Row(
            "3 memory",
            f"N={n:,} tracemalloc per device (KiB)",
            f"{total / n / 1024:.1f} KiB: {parts}",
            value=total / n,
            note="Python allocations alive after bring-up, by the first owner on the traceback",
        )
    ]


def steady_rows(
    result: dict[str, Any], interval: float, *, estimated_from: float = 0.0
) -> list[Row]:
    n = result["n"]
    steady = result["steady"]
    share = steady["cpu_s"] / steady["wall_s"]
    target = STEADY_TARGET if interval == 30.0 and n >= 5000 else None
    return [
        Row(
            "4 steady",
            f"N={n:,} heartbeat {interval:g} s: manager CPU",
            f"{share * 100:.2f} % of a core ({share * 60:.2f} s/min)",
            "≤ 2 % of a core" if interval == 30.0 else "",
            (share <= STEADY_TARGET) if target else None,
            share,
            f"{steady['wall_s']:.0f} s window" + _failures(steady | {"settled": True}),
        )
    ]


def storm_analysis(storm: dict[str, Any]) -> dict[str, Any]:
    attempts = sorted(storm["attempts"])
    worst, start = 0, 0
    worst_at = 0.0
    for end, t in enumerate(attempts):
        while t - attempts[start] >= STORM_WINDOW:
            start += 1
        if end - start + 1 > worst:
            worst, worst_at = end - start + 1, attempts[start]
    total = len(attempts)
    recovered = storm["recovered_at"]
    return {
        "attempts": total,
        "max_window_count": worst,
        "max_window_share": worst / total if total else 0.0,
        "max_window_at": worst_at,
        "first_attempt": attempts[0] if attempts else None,
        "last_attempt": attempts[-1] if attempts else None,
        "all_idle_after": recovered[-1] if len(recovered) == storm["lost"] and recovered else None,
    }


def storm_rows(result: dict[str, Any]) -> list[Row]:
    n = result["n"]
    storm = result["storm"]
    a = storm_analysis(storm)
    back = a["all_idle_after"]
    note = (
        f"{storm['lost']} lost, {storm['recovered']} back, {storm['failed']} failed; "
        f"{a['attempts']} attempts from {a['first_attempt'] or 0:.2f} s to "
        f"{a['last_attempt'] or 0:.2f} s; busiest window at {a['max_window_at']:.2f} s; "
        f"server restart took {storm.get('restart_s', 0):.2f} s; manager CPU {storm['cpu_s']:.1f} s"
    )
    why = storm.get("why_attempts_failed") or {}
    if why:
        note += "; failed attempts: " + "; ".join(f"{n}× {reason}" for reason, n in why.items())
    return [
        Row(
            "6 storm",
            f"N={n:,} restart → all IDLE again",
            f"{back:.2f} s" if back is not None else f"{storm['recovered']}/{n} back when stopped",
            "",
            None,
            back,
            note,
        ),
        Row(
            "6 storm",
            "max share of attempts in 100 ms",
            f"{a['max_window_share'] * 100:.2f} % ({a['max_window_count']}/{a['attempts']})",
            "≤ 5 %",
            a["max_window_share"] <= STORM_SHARE_TARGET and a["attempts"] > 0,
            a["max_window_share"],
        ),
    ]
