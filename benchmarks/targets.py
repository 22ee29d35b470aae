"""The targets and the rows that compare each measured figure with its target.

Every row says what was measured, against which target, and the verdict; a figure the run did
not measure (quick mode, an error) says so instead of passing silently.
"""

from __future__ import annotations

from typing import Any

from . import fleet, storm
from .report import Row, ms

HEARTBEAT_CPU = 100e-6  # manager CPU per heartbeat (sent + ack handled)
FLEET_5000_AT_30S = 0.017  # of one core
BRING_UP_OVER_FLOOR = 1.5  # manager CPU per device to IDLE, against trio-websocket alone
BRING_UP_GROWTH_10000 = 1.2  # at 10,000: within this factor of the N=500 figure
CLI_OVER_MANAGER = 1.15  # `stellate up --once --json`, whole process, imports aside
SHUTDOWN_CPU = 0.25e-3  # manager CPU per device for the graceful stop (closing handshake)
SIDE_BY_SIDE = 1 / 8  # `stellate up` against the reference Galaxy manager, same work
LATENCY_P50, LATENCY_P99 = 1.5e-3, 4e-3
MEMORY_PER_DEVICE = 26 * 1024
FLEET_10000_S = 30.0
STORM_AFTER_AGENTS_S = 3.0
STORM_SHARE = 0.05
SERVER_REGISTRATION_CPU = 0.45e-3


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


def bring_up_rows(fleets: dict[int, dict[str, Any]], floor: dict[str, Any] | None) -> list[Row]:
    out: list[Row] = []
    base = fleets.get(500)
    metric = "manager CPU per device, bring-up to IDLE, N=500, against trio-websocket alone"
    if base is None or floor is None:
        out.append(_missing(metric, "≤ 1.5× the floor", "no N=500 run with its floor"))
    else:
        per = base["cpu_s"] / base["n"]
        alone = floor["connect_cpu_s"] / floor["n"]
        ratio = per / alone
        out.append(
            Row(
                "target",
                metric,
                f"{ms(per)} ({ratio:.2f}× the floor's {ms(alone)})",
                "≤ 1.5× the floor",
                ratio <= BRING_UP_OVER_FLOOR,
                ratio,
                "the floor: trio-websocket alone, connect + three round trips per connection, "
                "N=500, in the same run",
            )
        )
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


def shutdown_rows(fleet_result: dict[str, Any] | None, floor: dict[str, Any] | None) -> list[Row]:
    metric = "manager CPU per device, clean shutdown (closing handshake each)"
    if fleet_result is None or "shutdown" not in fleet_result:
        return [_missing(metric, "≤ 0.25 ms", "no run")]
    n = fleet_result["n"]
    done = fleet_result["shutdown"]
    per = done["cpu_s"] / n
    note = (
        f"aclose() of N={n:,} IDLE devices: {done['wall_s']:.2f} s wall; user "
        f"{ms(done['user_s'] / n)} + system {ms(done['system_s'] / n)}; ended "
        f"{done['statuses']}"
    )
    if floor is not None and "close_cpu_s" in floor:
        note += f"; trio-websocket alone closing N={floor['n']:,}: "
        note += f"{ms(floor['close_cpu_s'] / floor['n'])}/connection"
    if "servers_cpu_s" in done:
        note += f"; the agent server meanwhile {ms(done['servers_cpu_s'] / n)}/device"
    return [
        Row("target", f"{metric}, N={n:,}", ms(per), "≤ 0.25 ms", per <= SHUTDOWN_CPU, per, note)
    ]


def cli_rows(up: dict[str, Any] | None, manager: dict[str, Any] | None) -> list[Row]:
    metric = "`stellate up --once --json`, whole process, imports aside"
    if up is None or manager is None or "shutdown" not in manager:
        return [_missing(metric, "≤ 1.15× manager", "no run")]
    n = up["n"]
    own = manager["cpu_s"] + manager["shutdown"]["cpu_s"]
    ratio = up["work_cpu_s"] / own
    return [
        Row(
            "target",
            f"{metric}, N={n:,}",
            f"{ms(up['work_cpu_s'] / n)}/device ({ratio:.2f}× the manager's {ms(own / n)})",
            "≤ 1.15× manager",
            ratio <= CLI_OVER_MANAGER,
            ratio,
            f"whole process {up['cpu_s']:.2f} s CPU less {up['imports_cpu_s']:.2f} s for the same "
            f"command with one device (interpreter, imports, set-up); {up['wall_s']:.1f} s wall; "
            f"peak RSS {up['max_rss_kib'] / 1024:.0f} MiB. The manager's: bring-up "
            f"{ms(manager['cpu_s'] / n)} + clean shutdown {ms(manager['shutdown']['cpu_s'] / n)} "
            "per device, alone in its process, same fleet",
        )
    ]


def side_by_side_rows(result: dict[str, Any] | None) -> list[Row]:
    metric = "side by side on the reference server: `stellate up --once --json` / Galaxy's manager"
    if result is None:
        return [_missing(metric, "≤ 1/8", "no run")]
    if "skipped" in result:
        return [_missing(metric, "≤ 1/8", result["skipped"])]
    n, ours, theirs = result["n"], result["stellate"], result["galaxy"]
    ratio = result["ratio"]
    return [
        Row(
            "target",
            f"{metric}, N={n:,}",
            f"1/{1 / ratio:.1f} ({ms(ours['per_device_s'])} against "
            f"{ms(theirs['per_device_s'])} per device)",
            "≤ 1/8",
            ratio <= SIDE_BY_SIDE,
            ratio,
            "bring-up to IDLE and a clean shutdown each; whole process CPU less the same for one "
            f"device (stellate {ours['imports_cpu_s']:.2f} s, Galaxy {theirs['imports_cpu_s']:.2f}"
            f" s); wall {ours['wall_s']:.1f} s against {theirs['wall_s']:.1f} s; the reference "
            f"server's CPU {result['server_cpu_s']['stellate']:.2f} s serving stellate, "
            f"{result['server_cpu_s']['galaxy']:.2f} s serving Galaxy",
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


def server_rows(
    fleets: dict[int, dict[str, Any]], beat: dict[str, Any] | None, floor: dict[str, Any] | None
) -> list[Row]:
    out: list[Row] = []
    sized = [r for n, r in sorted(fleets.items()) if "servers_cpu_bring_up_s" in r]
    metric = "agent server CPU per registered device"
    if not sized:
        out.append(_missing(metric, "≤ 0.45 ms", "no run"))
    else:
        result = max(sized, key=lambda r: int(r["n"]))
        per = result["servers_cpu_bring_up_s"] / result["n"]
        note = (
            "the servers' CPU while the manager connected, registered and asked telemetry "
            "for every device"
        )
        if floor is not None and "server_connect_cpu_s" in floor:
            alone = floor["server_connect_cpu_s"] / floor["n"]
            note += f"; trio-websocket's server alone, accept + three round trips: {ms(alone)}"
        out.append(
            Row(
                "target",
                f"{metric}, N={result['n']:,}",
                ms(per),
                "≤ 0.45 ms",
                per <= SERVER_REGISTRATION_CPU,
                per,
                note,
            )
        )
    metric = "agent server CPU per heartbeat, against trio-websocket's server alone"
    if beat is None or "server_s" not in beat:
        out.append(_missing(metric, "≤ the floor", "no steady window"))
    elif floor is None or "server_beat_cpu_s" not in floor:
        out.append(_missing(metric, "≤ the floor", "no floor measured in this run"))
    else:
        per = beat["server_s"]
        alone = floor["server_beat_cpu_s"] / floor["beats"]
        ratio = per / alone
        out.append(
            Row(
                "target",
                metric,
                f"{_us(per)} ({ratio:.2f}× the floor's {_us(alone)})",
                "≤ the floor",
                ratio <= 1.0,
                ratio,
                "the floor: trio-websocket's server answering the same round trips, same run",
            )
        )
    return out
