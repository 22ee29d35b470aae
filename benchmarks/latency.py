"""1. Latency: one device through the five phases (add → IDLE), repeated."""

from __future__ import annotations

import statistics
from typing import Any

from .driver import run_worker
from .procs import Rig
from .report import Row, ms, percentile

P50_TARGET = 0.005
P99_TARGET = 0.020


def measure(runs: int) -> dict[str, Any]:
    with Rig(1, tag="latency") as rig:
        result = run_worker(
            {"kind": "latency", "spec": rig.spec(), "runs": runs}, rig.log_dir, timeout=120 + runs
        )
    samples: list[dict[str, float]] = result["samples"]
    totals = [s["total"] for s in samples]
    phases = {
        name: {
            "p50": statistics.median(s[name] for s in samples),
            "p99": percentile([s[name] for s in samples], 99),
        }
        for name in samples[0]
        if name != "total"
    }
    return {
        "runs": len(samples),
        "p50": percentile(totals, 50),
        "p90": percentile(totals, 90),
        "p99": percentile(totals, 99),
        "max": max(totals),
        "phases": phases,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    runs = result["runs"]
    out = [
        Row(
            "1 latency",
            f"p50, five phases ({runs} runs)",
            ms(result["p50"]),
            "≤ 5 ms",
            result["p50"] <= P50_TARGET,
            result["p50"],
        ),
        Row("1 latency", "p90", ms(result["p90"]), value=result["p90"]),
        Row(
            "1 latency",
            "p99",
            ms(result["p99"]),
            "≤ 20 ms",
            result["p99"] <= P99_TARGET,
            result["p99"],
        ),
    ]
    for name, stats in result["phases"].items():
        out.append(
            Row(
                "1 latency",
                f"  phase {name} p50 / p99",
                f"{ms(stats['p50'])} / {ms(stats['p99'])}",
                value=stats["p50"],
            )
        )
    return out
