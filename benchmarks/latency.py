"""1. Latency: one device through the five phases (add → IDLE), repeated."""

from __future__ import annotations

import statistics
from typing import Any

from .driver import run_worker
from .procs import Rig
from .report import Row, ms, percentile


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
    """Details (p50 and p99 are target rows): p90, the worst run, and each phase."""
    out = [
        Row(
            "latency",
            "five phases, p90 / max",
            f"{ms(result['p90'])} / {ms(result['max'])}",
            value=result["p90"],
        ),
    ]
    for name, stats in result["phases"].items():
        out.append(
            Row(
                "latency",
                f"  phase {name} p50 / p99",
                f"{ms(stats['p50'])} / {ms(stats['p99'])}",
                value=stats["p50"],
            )
        )
    return out
