"""The targets (issue 15) and the rows that compare each measured figure with its target.

Every row says what was measured, against which target, and the verdict; a figure the run did
not measure (quick mode, an error) says so instead of passing silently.
"""

from __future__ import annotations

from typing import Any

from . import fleet, storm
from .report import Row, ms

HEARTBEAT_CPU = 100e-6  # manager CPU per heartbeat (sent + ack handled)
FLEET_5000_AT_30S = 0.017  # of one core
BRING_UP_CPU_500 = 0.65e-3  # manager CPU per device, bring-up to IDLE, N=500
BRING_UP_GROWTH_10000 = 1.2  # at 10,000: within this factor of the N=500 figure
CLI_OVER_MANAGER = 1.3  # `stellate up --once --json`, whole process, imports aside
LATENCY_P50, LATENCY_P99 = 1.5e-3, 4e-3
MEMORY_PER_DEVICE = 26 * 1024
FLEET_10000_S = 30.0
STORM_AFTER_AGENTS_S = 3.0
STORM_SHARE = 0.05
SERVER_REGISTRATION_CPU = 1e-3
SERVER_HEARTBEAT_CPU = 100e-6


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _missing(metric: str, target: str, why: str) -> Row:
    return Row("target", metric, f"not measured: {why}", target, None)


def heartbeat_rows(beat: dict[str, Any] | None, source: str, estimated: bool) -> list[Row]:
    metric = "manager CPU per heartbeat (sent + ack handled)"
    if beat is None:
        return [_missing(metric, "≤ 100 µs", "no steady window")]
    per = beat["manager_s"]
    share = 5000 / 30.0 * per
    if "manager_user_s" in beat:
        source += (
            f"; user {_us(beat['manager_user_s'])} + system {_us(beat['manager_system_s'])} "
            "(the kernel's socket work)"
        )
    return [
        Row("target", metric, _us(per), "≤ 100 µs", per <= HEARTBEAT_CPU, per, source),
        Row(
            "target",
            "  5,000 devices @ 30 s" + (" (from the figure above)" if estimated else ""),
            f"{share * 100:.2f} % of a core",
            "≤ 1.7 % of a core",
            share <= FLEET_5000_AT_30S,
            share,
        ),
    ]


def bring_up_rows(fleets: dict[int, dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    base = fleets.get(500)
    metric = "manager CPU per device, bring-up to IDLE, N=500"
    if base is None:
        out.append(_missing(metric, "≤ 0.65 ms", "no N=500 run"))
    else:
        per = base["cpu_s"] / base["n"]
        out.append(Row("target", metric, ms(per), "≤ 0.65 ms", per <= BRING_UP_CPU_500, per))
    big = fleets.get(10_000)
    metric = "  the same at N=10,000"
    if big is None or base is None:
        out.append(_missing(metric, "≤ 1.2× N=500", "full run only"))
    else:
        ratio = (big["cpu_s"] / big["n"]) / (base["cpu_s"] / base["n"])
        out.append(
            Row(
                "target",
                metric,
                f"{ms(big['cpu_s'] / big['n'])} ({ratio:.2f}× N=500)",
                "≤ 1.2× N=500",
                ratio <= BRING_UP_GROWTH_10000,
                ratio,
            )
        )
    return out


def cli_rows(up: dict[str, Any] | None, manager: dict[str, Any] | None) -> list[Row]:
    metric = "`stellate up --once --json`, whole process, imports aside"
    if up is None or manager is None:
        return [_missing(metric, "≤ 1.3× manager", "no run")]
    n = up["n"]
    ratio = up["work_cpu_s"] / manager["cpu_s"]
    return [
        Row(
            "target",
            f"{metric}, N={n:,}",
            f"{ms(up['work_cpu_s'] / n)}/device ({ratio:.2f}× the manager's "
            f"{ms(manager['cpu_s'] / n)})",
            "≤ 1.3× manager",
            ratio <= CLI_OVER_MANAGER,
            ratio,
            f"whole process {up['cpu_s']:.2f} s CPU less {up['imports_cpu_s']:.2f} s for the same "
            f"command with one device (interpreter, imports, set-up); {up['wall_s']:.1f} s wall; "
            "peak RSS "
            f"{up['max_rss_kib'] / 1024:.0f} MiB",
        )
    ]


def latency_rows(result: dict[str, Any] | None) -> list[Row]:
    if result is None:
        return [_missing("one device, five phases, p50 / p99", "≤ 1.5 / 4 ms", "no run")]
    p50, p99 = result["p50"], result["p99"]
    return [
        Row(
            "target",
            f"one device, five phases, p50 ({result['runs']} runs)",
            ms(p50),
            "≤ 1.5 ms",
            p50 <= LATENCY_P50,
            p50,
        ),
        Row("target", "  p99", ms(p99), "≤ 4 ms", p99 <= LATENCY_P99, p99),
    ]


def memory_rows(result: dict[str, Any] | None) -> list[Row]:
    metric = "manager memory (RSS) per IDLE device"
    if result is None:
        return [_missing(metric, "≤ 26 KiB", "no run")]
    per = fleet.rss_per_device(result)
    return [
        Row(
            "target",
            f"{metric}, N={result['n']:,}",
            f"{per / 1024:.1f} KiB",
            "≤ 26 KiB",
            per <= MEMORY_PER_DEVICE,
            per,
        )
    ]


def big_fleet_rows(result: dict[str, Any] | None) -> list[Row]:
    metric = "10,000 devices, start → all IDLE (agents in other processes)"
    if result is None:
        return [_missing(metric, "≤ 30 s, 0 FAILED", "full run only")]
    bad = fleet.not_idle(result)
    ok = result["wall_s"] <= FLEET_10000_S and result["settled"] and not bad
    shown = f"{result['wall_s']:.1f} s" + (f", NOT IDLE: {bad}" if bad else ", 0 FAILED")
    return [Row("target", metric, shown, "≤ 30 s, 0 FAILED", ok, result["wall_s"])]


def storm_rows(result: dict[str, Any] | None) -> list[Row]:
    metric = "server restart: agents back → all IDLE"
    if result is None or "storm" not in result:
        return [_missing(metric, "≤ 3 s", "no run")]
    n = result["n"]
    data = result["storm"]
    a = storm.analyse(data, n)
    after = a["idle_after_agents"]
    if after is not None:
        shown = f"{after:.2f} s"
    elif a["all_idle_after"] is None:
        shown = f"{data['recovered']}/{data['lost']} back when stopped"
    else:
        shown = f"all IDLE at {a['all_idle_after']:.2f} s; agents' re-join not seen"
    note = (
        f"{data['lost']} lost, {data['recovered']} back, {data['failed']} failed; last agent "
        f"re-joined at {_s(a['agents_rejoined_after'])} ({a['agents_rejoined']} re-joins logged),"
        f" all IDLE at {_s(a['all_idle_after'])} after the first loss; {a['attempts']} attempts "
        f"from {_s(a['first_attempt'])} to {_s(a['last_attempt'])}; server restart took "
        f"{data.get('restart_s', 0):.2f} s; manager CPU {data['cpu_s']:.1f} s"
    )
    why = data.get("why_attempts_failed") or {}
    if why:
        note += "; failed attempts: " + "; ".join(f"{k}× {r}" for r, k in why.items())
    share = a["max_window_share"]
    return [
        Row(
            "target",
            f"{metric}, N={n:,}",
            shown,
            "≤ 3 s",
            after is not None and after <= STORM_AFTER_AGENTS_S,
            after,
            note,
        ),
        Row(
            "target",
            "  largest share of attempts in 100 ms",
            f"{share * 100:.2f} % ({a['max_window_count']}/{a['attempts']})",
            "≤ 5 %",
            a["attempts"] > 0 and share <= STORM_SHARE,
            share,
        ),
    ]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def server_rows(fleets: dict[int, dict[str, Any]], beat: dict[str, Any] | None) -> list[Row]:
    out: list[Row] = []
    sized = [r for n, r in sorted(fleets.items()) if "servers_cpu_bring_up_s" in r]
    metric = "agent server CPU per registered device"
    if not sized:
        out.append(_missing(metric, "≤ 1 ms", "no run"))
    else:
        result = max(sized, key=lambda r: int(r["n"]))
        per = result["servers_cpu_bring_up_s"] / result["n"]
        out.append(
            Row(
                "target",
                f"{metric}, N={result['n']:,}",
                ms(per),
                "≤ 1 ms",
                per <= SERVER_REGISTRATION_CPU,
                per,
                "the servers' CPU while the manager connected, registered and asked telemetry "
                "for every device",
            )
        )
    metric = "agent server CPU per heartbeat"
    if beat is None or "server_s" not in beat:
        out.append(_missing(metric, "≤ 100 µs", "no steady window"))
    else:
        per = beat["server_s"]
        out.append(Row("target", metric, _us(per), "≤ 100 µs", per <= SERVER_HEARTBEAT_CPU, per))
    return out
