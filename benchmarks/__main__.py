"""``python -m benchmarks [--quick] [--only 1,2,...]``: run, print the table, write JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import fleet, latency, machine
from .env import describe
from .env import machine as machine_info
from .procs import Rig
from .report import Row, table

RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Plan:
    """What to run: the full set, or the quick one (small N, short windows, under a minute)."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.machine_models = 2_000 if quick else 10_000
        self.latency_runs = 50 if quick else 200
        self.fleet_sizes = [100, 500] if quick else [100, 500, 1_000, 5_000, 10_000]
        self.memory_sizes = [500] if quick else [1_000, 10_000]
        self.split_size = 500 if quick else 1_000
        self.fleet_n = 500 if quick else 5_000  # steady state and reconnect storm
        self.window = 5.0 if quick else 60.0  # heartbeats every 30 s: two intervals
        self.fast_window = 5.0 if quick else 30.0  # heartbeats every 1 s
        self.storm_timeout = 15.0 if quick else 180.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced set, under a minute")
    parser.add_argument(
        "--only", default="1,2,3,4,5,6", help="comma-separated figures to run (default: all)"
    )
    args = parser.parse_args(argv)
    only = {int(x) for x in args.only.split(",") if x.strip()}
    plan = Plan(args.quick)
    info = machine_info()
    log(f"{'quick' if plan.quick else 'full'} run on {describe(info)}")
    began = time.monotonic()
    results: dict[str, Any] = {}
    rows: dict[int, list[Row]] = {i: [] for i in range(1, 7)}
    errors: list[str] = []

    def step(name: str, figure: int, func: Callable[[], None]) -> None:
        log(f"{name} ...")
        t0 = time.monotonic()
        try:
            func()
        except Exception as exc:  # one failed benchmark must not hide the others
            errors.append(f"{name}: {exc}")
            rows[figure].append(Row(f"{figure}", name, f"ERROR: {exc}".splitlines()[0], ok=False))
        log(f"{name} done in {time.monotonic() - t0:.1f} s")
        # Keep what is done so far: a long full run interrupted later still leaves its figures.
        done = [row for figure in sorted(rows) for row in rows[figure]]
        _write(plan, info, info, time.monotonic() - began, done, results, partial=True)

    if 5 in only:

        def run_machine() -> None:
            results["machine"] = machine.measure(plan.machine_models)
            rows[5] += machine.rows(results["machine"])

        step("machine alone", 5, run_machine)

    if 1 in only:

        def run_latency() -> None:
            results["latency"] = latency.measure(plan.latency_runs)
            rows[1] += latency.rows(results["latency"])

        step("latency", 1, run_latency)

    fleet_results: dict[int, Any] = {}
    results["fleet"] = fleet_results
    for n in plan.fleet_sizes:
        big = n == plan.fleet_n
        wants = {2} | ({3} if n in plan.memory_sizes or n == plan.split_size else set())
        if big:
            wants |= {4, 6}
        if not wants & only:
            continue

        def run_fleet(n: int = n, big: bool = big) -> None:
            with Rig(n, tag=f"fleet{n}") as rig:
                log(f"  {n} agents registered in {rig.agent_registration_s:.1f} s")
                storm = big and 6 in only
                window = plan.window if big and 4 in only else 0.0
                result = fleet.measure(
                    rig, window=window, storm=storm, storm_timeout=plan.storm_timeout
                )
                fleet_results[n] = result
                rows[2].extend(fleet.bring_up_rows(result))
                if n in plan.memory_sizes:
                    rows[3].extend(fleet.memory_rows(result))
                if window:
                    rows[4].extend(_steady_30(result, plan))
                if storm:
                    rows[6].extend(fleet.storm_rows(result))
                if big and 4 in only:
                    log("  steady state, heartbeat every 1 s ...")
                    fast = fleet.measure(rig, heartbeat_interval=1.0, window=plan.fast_window)
                    fleet_results[-n] = fast
                    rows[4].extend(fleet.steady_rows(fast, 1.0))
                    if plan.quick:
                        rows[4].extend(_estimate_5000(result, fast))
                if n == plan.split_size and 3 in only:
                    log("  tracemalloc split ...")
                    traced = fleet.measure(rig, tracemalloc=True)
                    fleet_results[-n - 1] = traced
                    rows[3].extend(fleet.split_rows(traced))

        step(f"fleet N={n:,}", 2, run_fleet)

    all_rows = [row for figure in sorted(rows) for row in rows[figure]]
    finished = machine_info()
    elapsed = time.monotonic() - began
    print()
    print(f"stellate benchmarks ({'quick' if plan.quick else 'full'}), {elapsed:.0f} s")
    print(f"machine: {describe(info)}")
    print(f"load average at the end: {'/'.join(str(x) for x in finished['loadavg'])}")
    print()
    print(table(all_rows))
    if errors:
        print("\nerrors:\n  " + "\n  ".join(errors))
    path = _write(plan, info, finished, elapsed, all_rows, results)
    print(f"\nJSON: {path}")
    return 1 if errors else 0


def _steady_30(result: dict[str, Any], plan: Plan) -> list[Row]:
    out = fleet.steady_rows(result, 30.0)
    if plan.quick:
        out[0].ok = None
        out[0].target = ""
        out[0].note += " (quick: shorter than one interval, so no heartbeat falls in it)"
    return out


def _estimate_5000(slow: dict[str, Any], fast: dict[str, Any]) -> list[Row]:
    """Quick mode: the 5,000-device, 30 s figure extrapolated from idle and 1 s runs at small N."""
    n = slow["n"]
    idle = slow["steady"]["cpu_s"] / slow["steady"]["wall_s"] / n  # share per idle device
    busy = fast["steady"]["cpu_s"] / fast["steady"]["wall_s"] / n  # per device beating at 1 Hz
    per_beat = max(busy - idle, 0.0)
    share = 5000 * (idle + per_beat / 30.0)
    return [
        Row(
            "4 steady",
            "N=5,000 heartbeat 30 s (estimated)",
            f"{share * 100:.2f} % of a core",
            "≤ 2 % of a core",
            share <= fleet.STEADY_TARGET,
            share,
            f"extrapolated from N={n} runs: {idle * 1e6:.1f} µs/s idle and "
            f"{per_beat * 1e6:.0f} µs per heartbeat per device",
        )
    ]


def _write(
    plan: Plan,
    info: dict[str, Any],
    finished: dict[str, Any],
    elapsed: float,
    rows: list[Row],
    results: dict[str, Any],
    *,
    partial: bool = False,
) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kind = "quick" if plan.quick else "full"
    payload = {
        "kind": kind,
        "partial": partial,
        "started": stamp,
        "elapsed_s": elapsed,
        "machine": info,
        "loadavg_end": finished["loadavg"],
        "rows": [row.as_dict() for row in rows],
        "results": results,
    }
    text = json.dumps(payload, indent=1, default=str)
    if partial:
        path = RESULTS / f"partial-{kind}.json"
    else:
        path = RESULTS / f"bench-{kind}-{stamp}.json"
        (RESULTS / f"latest-{kind}.json").write_text(text)
    path.write_text(text)
    return path


if __name__ == "__main__":
    sys.exit(main())
