"""Instruction counts per heartbeat and per device bring-up: figures that load does not move.

``python -m benchmarks.instructions [heartbeat|bringup|floor|cli] [--root DIR]`` runs the
manager's worker (or the trio-websocket floor client, or the whole ``stellate up`` command)
under ``valgrind --tool=callgrind`` twice, with two window lengths (or two fleet sizes), and
divides the difference in instructions by the difference in heartbeats (or devices):
start-up, imports and everything else cancel out; stages the worker marks (bring-up, clean
shutdown; connect and close for the floor) are counted apart (``benchmarks.marks``). The
servers and agents run natively, as in ``make bench``. CPU time on a shared machine varies
with its load; instruction counts vary by a few per cent at most, so a change to the message
path is best compared this way (``--root`` points at another checkout to compare with).

Needs valgrind (``apt-get install valgrind``); the worker runs some 30-50× slower under it, so
the fleets are small and the heartbeat rate low.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import marks
from .driver import EVENT, parse_event
from .procs import PYTHON, Rig

ROOT = Path(__file__).resolve().parent.parent
_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)
_TRIGGER = re.compile(r"^desc: Trigger: Client Request: (\S+)", re.MULTILINE)
#: C functions whose call counts show the traffic really happened (frames sent, received).
_CALLS = {"send": re.compile(r"sock_send\b"), "recv": re.compile(r"sock_recv\b")}


def _calls(text: str) -> dict[str, int]:
    """How often the socket send/recv C functions were called (callgrind's call records)."""
    names: dict[str, str] = {}
    counts = dict.fromkeys(_CALLS, 0)
    current: str | None = None
    for line in text.splitlines():
        if line.startswith(("fn=", "cfn=")):
            ref = line.partition("=")[2]
            if ref.startswith("(") and " " in ref:
                key, _, name = ref.partition(" ")
                names[key] = name
            if line.startswith("fn="):
                continue
            current = names.get(ref.split(" ", 1)[0], ref)
        elif line.startswith("calls=") and current is not None:
            for kind, pattern in _CALLS.items():
                if pattern.search(current):
                    counts[kind] += int(line[6:].split()[0])
            current = None
    return counts


def _instructions(job: dict[str, Any], root: Path, out: Path) -> tuple[int, dict[str, Any]]:
    """Run one worker job under callgrind; its instruction count and its result.

    The result carries ``calls``: how often the process sent and received on a socket, and
    ``stages``: the instructions of each stage the worker marked (``benchmarks.marks``).
    """
    library = marks.build(out.parent)
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        PYTHON,
        "-m",
        "benchmarks.worker",
        json.dumps(job),
    ]
    env = os.environ | {marks.ENV: str(library)}
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=3600, env=env)
    result: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith(EVENT) and '"result"' in line:
            result = parse_event(line)["result"]
    total, calls, stages = 0, dict.fromkeys(_CALLS, 0), {}
    parts = sorted(out.parent.glob(out.name + "*"))
    for part in parts:
        text = part.read_text()
        match = _TOTAL.search(text)
        if match is None:
            continue
        count = int(match.group(1))
        total += count
        for kind, value in _calls(text).items():
            calls[kind] += value
        trigger = _TRIGGER.search(text)
        stages[trigger.group(1) if trigger else "end"] = count
    if done.returncode != 0 or not stages or not result:
        raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
    result["calls"] = calls
    result["stages"] = stages
    return total, result


def heartbeat(
    root: Path, n: int = 50, interval: float = 2.0, windows: tuple[float, float] = (10.0, 30.0)
) -> dict[str, Any]:
    """Instructions per heartbeat (sent + ack handled), manager side."""
    with Rig(n, tag="callgrind") as rig, tempfile.TemporaryDirectory() as tmp:
        counts = []
        for window in windows:
            job = {
                "kind": "fleet",
                "spec": rig.spec(),
                "heartbeat_interval": interval,
                "window": window,
                "timeout": 600.0,
                "stagger": interval / n,
            }
            counts.append(_instructions(job, root, Path(tmp) / f"hb-{window:g}.out"))
    # Divided by the heartbeats really sent (the manager's socket sends in the longer window
    # less those in the shorter: nothing else is sent once the fleet is IDLE). Under callgrind
    # a busy worker falls behind the nominal rate, and dividing by the nominal count would
    # charge the heartbeats it did send with less than their cost.
    nominal = n * (windows[1] - windows[0]) / interval
    longer, shorter = counts[1][1]["calls"], counts[0][1]["calls"]
    sent = longer["send"] - shorter["send"]
    if sent <= 0:
        raise RuntimeError(f"no heartbeat was sent in the longer window ({longer}, {shorter})")
    return {
        "n": n,
        "interval": interval,
        "instructions_per_heartbeat": (counts[1][0] - counts[0][0]) / sent,
        "heartbeats_sent": sent,
        "heartbeats_nominal": nominal,
        "socket_calls_per_heartbeat": {k: (longer[k] - shorter[k]) / sent for k in longer},
    }


def bringup(root: Path, sizes: tuple[int, int] = (50, 150)) -> dict[str, Any]:
    """Instructions per device, manager side: from start to IDLE, and the graceful stop (a
    closing handshake per device), each stage counted apart (``benchmarks.marks``)."""
    with Rig(sizes[1], tag="callgrind") as rig, tempfile.TemporaryDirectory() as tmp:
        stages = []
        for n in sizes:
            spec = _first(rig.spec(), n)
            job = {"kind": "fleet", "spec": spec, "timeout": 900.0, "linger": 0.5}
            job["shutdown"] = True
            job["timeouts"] = dict.fromkeys(_TIMEOUTS, 300.0)  # 30-50x slower: no time-outs
            directory = Path(tmp) / f"up-{n}"
            directory.mkdir()
            _, result = _instructions(job, root, directory / "callgrind.out")
            if result.get("statuses") != {"idle": n}:
                raise RuntimeError(
                    f"bring-up of {n} under callgrind ended {result.get('statuses')}"
                )
            if result["shutdown"]["statuses"] != {"disconnected": n}:
                raise RuntimeError(f"shutdown of {n} ended {result['shutdown']['statuses']}")
            stages.append(result["stages"])
    per = sizes[1] - sizes[0]
    return {
        "sizes": sizes,
        "instructions_per_device": (stages[1]["bring_up"] - stages[0]["bring_up"]) / per,
        "shutdown_instructions_per_device": (stages[1]["shutdown"] - stages[0]["shutdown"]) / per,
    }


def floor(
    root: Path, n: int = 50, interval: float = 2.0, windows: tuple[float, float] = (10.0, 30.0)
) -> dict[str, Any]:
    """The same for trio-websocket alone (``benchmarks.floor``'s client against its server):
    per heartbeat, and per connection for connect + three round trips and for the close."""
    server = subprocess.Popen(
        [PYTHON, "-m", "benchmarks.floor"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        with tempfile.TemporaryDirectory() as tmp:
            counts = []
            for window in windows:
                job = {"kind": "floor", "n": n, "url": url, "interval": interval, "window": window}
                directory = Path(tmp) / f"floor-{window:g}"
                directory.mkdir()
                counts.append(_instructions(job, root, directory / "callgrind.out")[0])
            sizes = (n, 3 * n)
            stages = []
            for size in sizes:
                job = {"kind": "floor", "n": size, "url": url, "interval": 0, "window": 0}
                job["close"] = True
                directory = Path(tmp) / f"floor-close-{size}"
                directory.mkdir()
                stages.append(_instructions(job, root, directory / "callgrind.out")[1]["stages"])
    finally:
        server.terminate()
        server.wait()
    beats = n * (windows[1] - windows[0]) / interval
    per = sizes[1] - sizes[0]
    return {
        "n": n,
        "interval": interval,
        "instructions_per_heartbeat": (counts[1] - counts[0]) / beats,
        "connect_instructions_per_connection": (stages[1]["connect"] - stages[0]["connect"]) / per,
        "close_instructions_per_connection": (stages[1]["close"] - stages[0]["close"]) / per,
    }


def cli(root: Path, sizes: tuple[int, int] = (50, 150)) -> dict[str, Any]:
    """Instructions per device of the whole ``stellate up --once --json`` process (bring-up,
    output and the clean shutdown), beside the manager's own (``bringup``'s two stages)."""
    with Rig(sizes[1], tag="callgrind") as rig, tempfile.TemporaryDirectory() as tmp:
        counts = []
        for n in sizes:
            config = Path(tmp) / f"up-{n}.yaml"
            lines = ["manager:", '  task_name: "bench-up"']
            lines += [f"  {k}: 300.0" for k in _TIMEOUTS]  # 30-50x slower: no time-outs
            lines.append("devices:")
            for shard in _first(rig.spec(), n):
                for i in range(shard["count"]):
                    lines += [f'  - device_id: "{shard["prefix"]}{i}"']
                    lines += [f'    server_url: "{shard["url"]}"']
            config.write_text("\n".join(lines) + "\n")
            out = Path(tmp) / f"up-{n}.out"
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            argv += [PYTHON, "-m", "stellate", "up", "--once", "--json", str(config)]
            done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=3600)
            match = _TOTAL.search(out.read_text()) if out.exists() else None
            if done.returncode != 0 or match is None:
                raise RuntimeError(f"stellate up under callgrind failed: {done.stderr[-2000:]}")
            counts.append(int(match.group(1)))
    return {
        "sizes": sizes,
        "instructions_per_device": (counts[1] - counts[0]) / (sizes[1] - sizes[0]),
    }


#: The manager's deadlines a device under callgrind must not meet during bring-up (a timed-out
#: attempt would be retried, and counted).
_TIMEOUTS = ("connect_timeout", "registration_timeout", "telemetry_timeout")


def _first(spec: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out, left = [], n
    for shard in spec:
        take = min(left, shard["count"])
        if take:
            out.append(shard | {"count": take})
        left -= take
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("what", choices=("heartbeat", "bringup", "floor", "cli"))
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="checkout whose stellate to measure"
    )
    args = parser.parse_args(argv)
    measures: dict[str, Callable[[Path], dict[str, Any]]] = {
        "heartbeat": heartbeat,
        "bringup": bringup,
        "floor": floor,
        "cli": cli,
    }
    result = measures[args.what](args.root)
    print(json.dumps(result | {"root": str(args.root)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
