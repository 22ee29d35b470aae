"""The reconnect storm: every agent server restarted under an IDLE fleet.

The worker stamps each device's loss, every reconnect attempt (→ ``connecting``) and its return
to IDLE on trio's clock; the restarted servers log each registration (``registered device X``)
with the wall clock, and the worker's pair of readings of both clocks puts those lines on the
same time line. Reported: when the last device agent re-joined its server, when the last
device was IDLE again, the time between the two (what the manager's recovery adds), and the
largest share of all attempts that fell in any 100 ms window (a synchronized storm shows as a
spike).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

WINDOW = 0.1
_LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO \S+: registered device (\S+)"
)


def agent_rejoins(paths: list[str]) -> dict[str, float]:
    """Each device's first registration the servers logged: device id → wall-clock time."""
    out: dict[str, float] = {}
    for path in paths:
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            match = _LOG_LINE.match(line)
            if match:
                stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
                out.setdefault(match.group(3), stamp + int(match.group(2)) / 1000)
    return out


def analyse(storm: dict[str, Any], n: int) -> dict[str, Any]:
    """Attempt spread and recovery times, in seconds from the first loss."""
    attempts = sorted(storm["attempts"])
    worst, start, worst_at = 0, 0, 0.0
    for end, t in enumerate(attempts):
        while t - attempts[start] >= WINDOW:
            start += 1
        if end - start + 1 > worst:
            worst, worst_at = end - start + 1, attempts[start]
    recovered = storm["recovered_at"]
    all_idle = recovered[-1] if recovered and len(recovered) == storm["lost"] else None
    rejoined: float | None = None
    walls: dict[str, float] = storm.get("rejoined", {})
    clock = storm.get("clock")
    if clock and len(walls) >= n:  # every agent is back: when the last one re-joined
        rejoined = max(walls.values()) - clock["wall"] + clock["trio"] - storm["origin"]
    return {
        "attempts": len(attempts),
        "max_window_count": worst,
        "max_window_share": worst / len(attempts) if attempts else 0.0,
        "max_window_at": worst_at,
        "first_attempt": attempts[0] if attempts else None,
        "last_attempt": attempts[-1] if attempts else None,
        "all_idle_after": all_idle,
        "agents_rejoined_after": rejoined,
        "agents_rejoined": len(walls),
        "idle_after_agents": (
            max(0.0, all_idle - rejoined) if all_idle is not None and rejoined is not None else None
        ),
    }
