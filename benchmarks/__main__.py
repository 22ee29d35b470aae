"""``python -m benchmarks [--quick] [--only ...]``: run, print the tables, write JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import cli_up, codec, fleet, floor, latency, machine, reference, scale_out, targets
from .env import describe
from .env import machine as machine_info
from .procs import Rig
from .report import Row, grid, table

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = (
    "codec",
    "machine",
    "latency",
    "fleet",
    "heartbeat",
    "floor",
    "storm",
    "cli",
    "reference",
    "split",
    "scale-out",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Plan:
    """What to run: the full set, or the quick one (small N, short windows; a few minutes, about
    4 of them the scale-out step's)."""

    def __init__(self, quick: bool, only: set[str], reference: str | None = None) -> None:
        self.quick = quick
        self.only = only
        #: The reference implementation's checkout (None: from the environment, or skipped).
        self.reference = reference
        #: Devices brought up side by side by `stellate up` and the reference Galaxy manager.
        self.reference_n = 500 if quick else 1_000
        self.machine_models = 2_000 if quick else 10_000
        self.latency_runs = 50 if quick else 200
        self.fleet_sizes = [100, 500] if quick else [100, 500, 1_000, 5_000, 10_000]
        #: Seconds of steady state after bring-up (heartbeats every 30 s: two intervals).
        self.window = 0.0 if quick else 60.0
        #: The 1 s heartbeat window at N=500 (quick: the heartbeat figure comes from it).
        self.fast_window = 5.0 if quick else 30.0
        self.storm_n = 500
        self.storm_timeout = 25.0 if quick else 120.0
        self.cli_n = 500 if quick else 1_000
        self.split_n = 500
        #: Devices shared by the scale-out benchmark's managers (20,000; 2,000 with --quick).
        self.scale_out_n = 2_000 if quick else 20_000
        #: Where each target's figure comes from.
        self.heartbeat_from = 500 if quick else 5_000
        self.memory_from = 500 if quick else 1_000

    def wants(self, step: str) -> bool:
        return step in self.only


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every Rig: its servers and agents stop


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="reduced set, a few minutes")
    parser.add_argument(
        "--only",
        default=",".join(STEPS),
        help=f"comma-separated steps to run (default: all of {', '.join(STEPS)})",
    )
    parser.add_argument(
        "--sizes", default="", help="comma-separated fleet sizes (default: the plan's)"
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="DIR",
        help=f"checkout of the reference implementation for the side-by-side step (default: "
        f"${reference.ENV_ROOT}; its Python: ${reference.ENV_PYTHON} or DIR/.venv/bin/python)",
    )
    parser.add_argument(
        "--scale-out-n",
        type=int,
        default=None,
        metavar="N",
        help="devices of the scale-out step (default: 20,000; 2,000 with --quick)",
    )
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if args.quick and "--only" not in " ".join(argv or sys.argv):
        only.discard("split")  # tracemalloc makes the quick run twice as long
    plan = Plan(args.quick, only, args.reference)
    if args.scale_out_n:
        plan.scale_out_n = args.scale_out_n
    if args.sizes:
        plan.fleet_sizes = [int(x) for x in args.sizes.split(",")]
    info = machine_info()
    log(f"{'quick' if plan.quick else 'full'} run on {describe(info)}")
    began = time.monotonic()
    results: dict[str, Any] = {"fleet": {}}
    errors: list[str] = []

    def step(name: str, func: Callable[[], None]) -> None:
        log(f"{name} ...")
        t0 = time.monotonic()
        try:
            func()
        except Exception as exc:  # one failed benchmark must not hide the others
            errors.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        log(f"{name} done in {time.monotonic() - t0:.1f} s")
        # Keep what is done so far: a long full run interrupted later still leaves its figures.
        _write(plan, info, info, time.monotonic() - began, [], results, partial=True)

    if plan.wants("codec"):
        step("codec alone", lambda: results.update(codec=codec.measure()))
    if plan.wants("machine"):
        step("machine alone", lambda: results.update(machine=machine.measure(plan.machine_models)))
    if plan.wants("latency"):
        step("latency", lambda: results.update(latency=latency.measure(plan.latency_runs)))
    for n in plan.fleet_sizes:
        step(f"fleet N={n:,}", lambda n=n: _fleet(plan, n, results))
    if plan.wants("reference"):
        step(f"side by side N={plan.reference_n:,}", lambda: _reference(plan, results))
    if plan.wants("scale-out"):
        step(
            f"scale-out N={plan.scale_out_n:,}",
            lambda: results.update({"scale_out": scale_out.measure(plan.scale_out_n)}),
        )

    rows = _rows(plan, results)
    finished = machine_info()
    elapsed = time.monotonic() - began
    print()
    print(f"stellate benchmarks ({'quick' if plan.quick else 'full'}), {elapsed:.0f} s")
    print(f"machine: {describe(info)}")
    print(f"load average at the end: {'/'.join(str(x) for x in finished['loadavg'])}")
    print("\nTargets\n")
    print(table(rows["targets"]))
    if results["fleet"]:
        print("\nScaling (manager alone in its process; servers and agents in others)\n")
        print(grid(*_scaling(results)))
    if rows["details"]:
        print("\nDetails\n")
        print(table(rows["details"]))
    if errors:
        print("\nerrors:\n  " + "\n  ".join(errors))
    path = _write(plan, info, finished, elapsed, rows["targets"] + rows["details"], results)
    print(f"\nJSON: {path}")
    return 1 if errors else 0


def _fleet(plan: Plan, n: int, results: dict[str, Any]) -> None:
    """Every measurement on one rig of n devices, each in a fresh manager process."""
    fleets: dict[int, dict[str, Any]] = results["fleet"]
    others = {"storm": plan.storm_n, "cli": plan.cli_n, "split": plan.split_n}
    others |= {"heartbeat": 500, "floor": 500}
    if not plan.wants("fleet") and all(
        n != size or not plan.wants(k) for k, size in others.items()
    ):
        return
    with Rig(n, tag=f"fleet{n}") as rig:
        log(f"  {n:,} agents registered in {rig.agent_registration_s:.1f} s")
        storm = n == plan.storm_n and plan.wants("storm")
        if plan.wants("fleet") or storm:
            log(
                "  bring-up"
                + (", steady window" if plan.window else "")
                + (", storm" if storm else "")
            )
            result = fleet.measure(
                rig, window=plan.window, storm=storm, storm_timeout=plan.storm_timeout
            )
            result["agent_registration_s"] = rig.agent_registration_s
            fleets[n] = result
        if n == 500 and plan.wants("heartbeat"):
            log(f"  heartbeat every 1 s, {plan.fast_window:g} s window")
            results["heartbeat_1s"] = fleet.measure(
                rig, heartbeat_interval=1.0, window=plan.fast_window
            )
        if n == 500 and plan.wants("floor"):
            log(f"  trio-websocket alone (the floor), heartbeat every 1 s, {plan.fast_window:g} s")
            results["floor"] = floor.measure(rig, interval=1.0, window=plan.fast_window)
        if n == plan.cli_n and plan.wants("cli"):
            log("  stellate up --once --json")
            results["cli_up"] = cli_up.measure(rig)
        if n == plan.split_n and plan.wants("split"):
            log("  tracemalloc split")
            results["split"] = fleet.measure(rig, tracemalloc=True, shutdown=False)


def _reference(plan: Plan, results: dict[str, Any]) -> None:
    """`stellate up` and the reference Galaxy manager on the reference agent server."""
    log_dir = Path(tempfile.mkdtemp(prefix="stellate-bench-reference-"))
    found = reference.measure(plan.reference_n, log_dir, plan.reference)
    results["reference"] = found
    if "skipped" in found:
        log(f"  skipped: {found['skipped']}")
    shutil.rmtree(log_dir, ignore_errors=True)


def _heartbeat(plan: Plan, results: dict[str, Any]) -> tuple[dict[str, Any] | None, str, bool]:
    """The heartbeat figure for the target: (cost, where it comes from, estimated?)."""
    big = results["fleet"].get(plan.heartbeat_from)
    if big is not None and big.get("steady"):
        beat = fleet.heartbeat_cost(big, 30.0)
        return beat, f"N={big['n']:,} @ 30 s, {big['steady']['wall_s']:.0f} s window", False
    fast = results.get("heartbeat_1s")
    if fast is not None:
        beat = fleet.heartbeat_cost(fast, 1.0)
        window = fast["steady"]["wall_s"]
        return beat, f"N={fast['n']:,} @ 1 s, {window:.0f} s window", True
    return None, "", True


def _rows(plan: Plan, results: dict[str, Any]) -> dict[str, list[Row]]:
    fleets: dict[int, dict[str, Any]] = results["fleet"]
    beat, source, estimated = _heartbeat(plan, results)
    storm_result = fleets.get(plan.storm_n)
    floor_result = results.get("floor")
    t: list[Row] = []
    t += targets.side_by_side_rows(results.get("reference"))
    t += targets.cli_rows(results.get("cli_up"), fleets.get(plan.cli_n))
    t += targets.shutdown_rows(fleets.get(500), floor_result)
    t += targets.bring_up_rows(fleets, floor_result)
    t += targets.latency_rows(results.get("latency"))
    t += targets.memory_rows(fleets.get(plan.memory_from))
    t += targets.server_rows({n: r for n, r in fleets.items() if n == 500}, beat, floor_result)
    t += targets.heartbeat_rows(beat, source, estimated)
    t += targets.big_fleet_rows(fleets.get(10_000))
    t += targets.storm_rows(storm_result if storm_result and "storm" in storm_result else None)
    if plan.wants("scale-out"):
        t += scale_out.rows(results.get("scale_out"))
    d: list[Row] = []
    if "floor" in results and 500 in fleets:
        fast = results.get("heartbeat_1s")
        d += floor.rows(
            results["floor"], fleet.heartbeat_cost(fast, 1.0) if fast else None, fleets[500]
        )
    if "latency" in results:
        d += latency.rows(results["latency"])
    if "split" in results:
        d += _split_rows(results["split"])
    if "codec" in results:
        d += codec.rows(results["codec"])
    if "machine" in results:
        d += machine.rows(results["machine"])
    for n, result in sorted(fleets.items()):
        note = _fleet_note(result)
        d.append(
            Row(
                "fleet",
                f"N={n:,}",
                f"{result['wall_s']:.2f} s to all IDLE",
                value=result["wall_s"],
                note=note,
            )
        )
    return {"targets": t, "details": d}


def _fleet_note(result: dict[str, Any]) -> str:
    n = result["n"]
    note = (
        f"manager CPU {result['cpu_s']:.2f} s; servers' CPU meanwhile "
        f"{result.get('servers_cpu_bring_up_s', 0):.2f} s; {result.get('attempts', n)} attempts; "
        f"agents registered in {result.get('agent_registration_s', 0):.1f} s beforehand; "
        f"IDLE at p50 {result['idle_at'].get('p50', 0):.2f} s, p90 "
        f"{result['idle_at'].get('p90', 0):.2f} s"
    )
    bad = fleet.not_idle(result)
    if bad or not result["settled"]:
        note += f"; NOT IDLE: {bad}"
    return note


def _split_rows(result: dict[str, Any]) -> list[Row]:
    n = result["n"]
    split: dict[str, int] = result["split"]
    order = ["sockets", "runner+manager", "profiles", "machine", "trio tasks", "other"]
    parts = ", ".join(f"{k} {split.get(k, 0) / n / 1024:.1f}" for k in order if k in split)
    total = sum(split.values()) / n
    return [
        Row(
            "memory",
            f"N={n:,} traced per IDLE device",
            f"{total / 1024:.1f} KiB: {parts}",
            value=total,
            note="Python allocations alive after bring-up, by the first owner on the traceback "
            "(benchmarks/worker.py _CATEGORIES)",
        )
    ]


def _scaling(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One line per fleet size; quick runs take the heartbeat from the 1 s window."""
    fleets: dict[int, dict[str, Any]] = results["fleet"]
    headers = [
        "N",
        "start → all IDLE",
        "manager CPU/device",
        "RSS/device",
        "heartbeat (manager)",
        "heartbeat (server)",
        "server CPU/registration",
        "attempts",
        "not IDLE",
    ]
    lines = []
    fast = results.get("heartbeat_1s")
    for n, r in sorted(fleets.items()):
        beat = fleet.heartbeat_cost(r, 30.0)
        if beat is None and fast is not None and fast["n"] == n:
            beat = fleet.heartbeat_cost(fast, 1.0)  # quick: no 30 s window, the 1 s one
        server_reg = r.get("servers_cpu_bring_up_s")
        lines.append(
            [
                f"{n:,}",
                f"{r['wall_s']:.2f} s",
                f"{r['cpu_s'] / n * 1e3:.2f} ms",
                f"{fleet.rss_per_device(r) / 1024:.1f} KiB",
                f"{beat['manager_s'] * 1e6:.0f} µs" if beat else "-",
                f"{beat['server_s'] * 1e6:.0f} µs" if beat and "server_s" in beat else "-",
                f"{server_reg / n * 1e3:.2f} ms" if server_reg is not None else "-",
                str(r.get("attempts", "-")),
                str(sum(fleet.not_idle(r).values())),
            ]
        )
    return headers, lines


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
        "scaling": dict(zip(("headers", "rows"), _scaling(results), strict=True)),
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
