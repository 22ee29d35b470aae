"""How ``stellate up`` shows a fleet moving through the phases, and the final profiles.

On a terminal: a live view. A fleet that fits on the screen gets one row per device, and each
transition is logged above the table (a local fleet registers faster than a redraw); a bigger
one gets a progress bar, ``N/M idle`` with the rate and an ETA, per-status counts, the devices
still furthest from ready and the failed ones with their reasons. Piped or redirected: plain
lines, one per transition for small fleets, a periodic progress line for big ones, so a log of
10,000 devices stays readable.

Nothing here is parsed as markup: every cell is a ``rich.text.Text``, so a device id or a
server's error text shows as written and cannot restyle the screen; and everything a peer or a
file chose (ids, reasons, OS, capabilities, host names) goes through ``shown``
(:func:`~stellate.text.redact.shown`): it cannot add a line, move the cursor, fail to encode,
or show a key the process knows (a server may echo the key in its error texts or telemetry).
The JSON outputs go through :func:`~stellate.text.redact.safe_json`: always valid JSON (no
``NaN``/``Infinity``), keys masked in every string.

Waiting lines say why and when: ``dev-a: connecting -> backoff: connection refused
(127.0.0.1:5055); attempt 2/5 in 1.8 s``. What a transition means (backing off, giving up, the
wait over, activated without telemetry) is read from its row's meanings, and every count from
the manager's stats (``StatusCounts``): nothing here decodes a row or counts by itself.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

import attrs

from ..fsm import ACTIVE, SETTLED, AgentProfile, DeviceStatus, Meaning, Tag
from ..fsm.diagram import PHASE_NAMES
from ..manager import EventKind, ManagerEvent
from ..manager.metrics import profile_json
from ..manager.stats import FleetStats, StatusCounts
from ..text.redact import redact_url, safe_json, shown

#: How often a display redraws (seconds).
TICK = 0.25
#: Above this many devices, plain output summarises instead of listing every transition.
DETAIL_LIMIT = 40
#: Full profile blocks printed at the end; the rest of the fleet gets a summary line.
PROFILE_BLOCKS = 3
#: Failed devices listed by name (with their reasons) in summaries.
FAILED_LISTED = 10
#: Devices listed as "furthest from ready" in the live view of a big fleet.
SLOWEST_LISTED = 5
#: A plain progress line at most this often (seconds), so a log stays short.
PLAIN_PROGRESS_EVERY = 2.0
#: Failing and backing-off devices named in the live view, most recent first.
TROUBLE_LISTED = 5

#: Activated devices are green (the table's ACTIVE group); a failed one red, a waiting one yellow.
_STATUS_STYLE = {
    **dict.fromkeys(ACTIVE, "green"),
    DeviceStatus.FAILED: "red",
    DeviceStatus.BACKOFF: "yellow",
}


@attrs.frozen
class DeviceReport:
    """A device's profile with what it last went through (reasons are ``None`` when unknown)."""

    profile: AgentProfile
    failure_reason: str | None = None
    last_error: str | None = None
    #: Registered on a local stand-in server (``stellate up --embedded``), not the file's.
    embedded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Galaxy's profile keys (URL secrets redacted), then the two reasons and whether the
        server was a local stand-in, always present."""
        return profile_json(self.profile) | {
            "failure_reason": self.failure_reason,
            "last_error": self.last_error,
            "embedded": self.embedded,
        }


def phase_label(status: DeviceStatus) -> str:
    phase = status.phase
    return PHASE_NAMES[phase] if phase is not None else "-"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return (
        f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
    )


#: The rate is measured over the arrivals of the last this many seconds: it follows the fleet
#: as it is now (a server restart, a flap), not an average since start-up.
RATE_WINDOW = 10.0
#: No rate (and no ETA) before this many seconds of observation: a count over a near-zero
#: interval is not a rate (52 devices already idle, 48 µs in: "1087820.7/s").
MIN_RATE_SPAN = 1.0


class RateMeter:
    """Devices reaching IDLE per second, counted from READY events as they happen.

    Only arrivals seen by this meter count, never devices that were already idle when it
    started; the rate is taken over the last :data:`RATE_WINDOW` seconds and is ``None``
    until :data:`MIN_RATE_SPAN` seconds have been watched, or when none arrived in the window.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._arrivals: deque[float] = deque()

    def observe(self, event: ManagerEvent) -> None:
        if event.kind is EventKind.READY:
            self._arrivals.append(self._clock())

    def rate(self) -> float | None:
        now = self._clock()
        while self._arrivals and self._arrivals[0] < now - RATE_WINDOW:
            self._arrivals.popleft()
        span = min(RATE_WINDOW, now - self._started)
        if span < MIN_RATE_SPAN or not self._arrivals:
            return None
        return len(self._arrivals) / span


@attrs.frozen
class Progress:
    """How far a bring-up has got: counts, the current rate and estimated time left."""

    total: int
    idle: int
    failed: int
    #: Devices in a settled state (the table's SETTLED group): done, one way or the other.
    settled: int
    #: Devices reaching IDLE per second lately (:class:`RateMeter`); None: not measurable.
    rate: float | None = None

    @classmethod
    def of(cls, counts: StatusCounts, total: int, rate: float | None = None) -> Progress:
        # Shown apart: how many are ready, and how many gave up.
        idle = counts[DeviceStatus.IDLE]
        failed = counts[DeviceStatus.FAILED]
        return cls(total, idle, failed, counts.tagged(Tag.SETTLED), rate)

    @property
    def eta(self) -> float | None:
        """Seconds until every device has settled at the current rate (None: no rate)."""
        left = self.total - self.settled
        if left <= 0:
            return 0.0
        return left / self.rate if self.rate else None

    def text(self) -> str:
        line = f"{self.idle}/{self.total} idle"
        if self.failed:
            line += f", {self.failed} failed"
        if self.rate:
            line += f" · {self.rate:.1f}/s"
        eta = self.eta
        if eta is not None and self.settled < self.total:
            line += f" · ETA {_duration(eta)}"
        return line


@attrs.frozen
class Trouble:
    """A device that failed or is backing off: where it is, why, and when it tries again."""

    device_id: str
    status: DeviceStatus
    reason: str | None
    #: When the next attempt starts, on the display's clock (None: none is scheduled, or one
    #: is under way).
    next_attempt_at: float | None

    def text(self, now: float) -> str:
        """``dev-07: failed: connection refused; next attempt in 4 min 12 s``."""
        return f"{shown(self.device_id)}: {self.status.value}: {self.detail(now)}"

    def detail(self, now: float) -> str:
        """Why, and when it tries again: ``connection refused; next attempt in 1.8 s``."""
        reason = shown(self.reason or "no reason given")
        if self.next_attempt_at is not None:
            return f"{reason}; next attempt in {_seconds(max(0.0, self.next_attempt_at - now))}"
        if self.status is DeviceStatus.FAILED:
            return f"{reason}; waits for a retry (stellate ctl retry)"
        return f"{reason}; attempt under way"


class Troubles:
    """The devices that failed or began backing off and have not become ready since, most
    recent first: what the live view names (``51/52 idle, 1 failed`` alone does not say which,
    why, or when it tries again).

    Fed the manager's events: a row that gives up or backs off (its meanings) records the
    device with the event's reason and its next attempt (``retry_in``); a later attempt keeps
    it listed (still failing) without a scheduled time; becoming ready or being stopped ends
    it. One entry per device at most, so its size is bounded by the fleet's.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_device: dict[str, Trouble] = {}  # insertion order: oldest first

    def observe(self, event: ManagerEvent) -> None:
        if event.kind is EventKind.TELEMETRY_MERGED:
            return
        device_id, meanings = event.device_id, event.meanings
        if Meaning.GAVE_UP in meanings or Meaning.BACKS_OFF in meanings:
            self._by_device.pop(device_id, None)  # moved to the front: the most recent
            at = None if event.retry_in is None else self._clock() + event.retry_in
            self._by_device[device_id] = Trouble(device_id, event.record.dest, event.reason, at)
        elif Meaning.READY in meanings or Meaning.STOPPED in meanings:
            self._by_device.pop(device_id, None)
        elif device_id in self._by_device:  # trying again: still failing, nothing scheduled
            reason = self._by_device[device_id].reason
            self._by_device[device_id] = Trouble(device_id, event.record.dest, reason, None)

    def __len__(self) -> int:
        return len(self._by_device)

    def latest(self, limit: int = TROUBLE_LISTED) -> list[Trouble]:
        """At most ``limit`` of them, the most recent first."""
        out: list[Trouble] = []
        for trouble in reversed(self._by_device.values()):
            if len(out) == limit:
                break
            out.append(trouble)
        return out

    def lines(self, limit: int = TROUBLE_LISTED) -> list[str]:
        """What the view prints: a heading, then one line per device (none: no lines)."""
        if not self._by_device:
            return []
        now = self._clock()
        more = len(self._by_device) - limit
        heading = "failing or waiting (most recent first"
        heading += f"; {more} more):" if more > 0 else "):"
        return [heading] + [f"  {t.text(now)}" for t in self.latest(limit)]

    def get(self, device_id: str) -> Trouble | None:
        return self._by_device.get(device_id)


class Display(Protocol):
    def event(self, event: ManagerEvent) -> None: ...
    def tick(self, profiles: Mapping[str, AgentProfile], stats: FleetStats) -> None: ...
    def close(self) -> None: ...


def event_line(event: ManagerEvent) -> str:
    """The text of one event (a transition, or merged telemetry)."""
    record = event.record
    if event.kind is EventKind.TELEMETRY_MERGED:
        profile = event.profile
        return (
            f"{shown(event.device_id)}: telemetry merged: os={shown(profile.os)}, "
            f"{len(profile.capabilities)} capabilities"
        )
    meanings = event.meanings
    moved = f"{shown(event.device_id)}: {record.source} -> {record.dest}"
    if Meaning.BACKS_OFF in meanings:
        return f"{moved}: {_waiting(event)}"
    if Meaning.GAVE_UP in meanings:
        line = f"{moved}: {shown(event.reason or 'gave up')}"
        if event.retry_in is not None:  # retry_failed_after: a fresh run comes by itself
            line += f"; retrying in {_seconds(event.retry_in)}"
        return line
    # Leaving backoff on its deadline is the retry, not a timeout of the attempt.
    cause = "wait over, retrying" if Meaning.WAIT_OVER in meanings else str(record.trigger)
    line = f"{moved} ({cause})  [phase {phase_label(record.dest)}]"
    if Meaning.NO_TELEMETRY in meanings:
        line = f"{shown(event.device_id)}: no telemetry in time; activated without it\n{line}"
    return line


def _seconds(seconds: float) -> str:
    """A wait as a person reads it: ``1.8 s`` below a minute, ``5 min 00 s`` above."""
    return f"{seconds:.1f} s" if seconds < 60 else _duration(seconds)


def _waiting(event: ManagerEvent) -> str:
    """Why a device backs off, and when (and as which attempt) it tries again."""
    profile = event.profile
    reason = shown(event.reason or "lost its connection")
    ceiling = "∞" if profile.max_retries is None else str(profile.max_retries)
    text = f"{reason}; attempt {profile.connection_attempts + 1}/{ceiling}"
    if event.retry_in is not None:
        text += f" in {event.retry_in:.1f} s"
    return text


def event_json(event: ManagerEvent, at: datetime | None = None, *, embedded: bool = False) -> str:
    """One event as a JSON object on one line (``stellate up --json`` without ``--once``).

    ``embedded``: the device's server is a local stand-in (``stellate up --embedded``).
    """
    record = event.record
    item = {
        "time": (at or datetime.now(UTC)).isoformat(),
        "event": event.kind.value,
        "device_id": event.device_id,
        "trigger": str(record.trigger),
        "source": record.source.value,
        "dest": record.dest.value,
        "reason": event.reason,
        "retry_in": event.retry_in,
        "profile": profile_json(event.profile),
        "embedded": embedded,
    }
    return safe_json(item)


class PlainDisplay:
    """Line-oriented progress for pipes and logs.

    Small fleets get one line per transition (plus one when telemetry is merged); big ones a
    progress line (``N/M idle``, rate, ETA, counts), printed when it changed and at most every
    ``PLAIN_PROGRESS_EVERY`` seconds, so an idle fleet stays quiet in a log.
    """

    def __init__(
        self, out: TextIO, device_count: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._out = out
        self._total = device_count
        self._detailed = device_count <= DETAIL_LIMIT
        self._clock = clock
        self._rate = RateMeter(clock)
        self._troubles = Troubles(clock)
        self._last_counts = ""
        self._last_print = -math.inf

    def event(self, event: ManagerEvent) -> None:
        self._rate.observe(event)
        self._troubles.observe(event)
        if self._detailed:
            print(event_line(event), file=self._out, flush=True)

    def tick(self, profiles: Mapping[str, AgentProfile], stats: FleetStats) -> None:
        if self._detailed:
            return
        now = self._clock()
        counts = stats.by_status.text()
        if counts == self._last_counts or now - self._last_print < PLAIN_PROGRESS_EVERY:
            return
        self._last_counts, self._last_print = counts, now
        progress = Progress.of(stats.by_status, self._total, self._rate.rate())
        lines = [f"[{self._total} devices] {progress.text()} — {counts}", *self._troubles.lines()]
        print("\n".join(lines), file=self._out, flush=True)

    def close(self) -> None:
        pass


class JsonLinesDisplay:
    """Every event as one JSON object per line (NDJSON), flushed as it happens."""

    def __init__(self, out: TextIO, *, embedded: bool = False) -> None:
        self._out = out
        self._embedded = embedded

    def event(self, event: ManagerEvent) -> None:
        print(event_json(event, embedded=self._embedded), file=self._out, flush=True)

    def tick(self, profiles: Mapping[str, AgentProfile], stats: FleetStats) -> None:
        pass

    def close(self) -> None:
        pass


class Displays:
    """Several displays fed the same events (NDJSON on stdout, progress on stderr)."""

    def __init__(self, *displays: Display) -> None:
        self._displays = displays

    def event(self, event: ManagerEvent) -> None:
        for display in self._displays:
            display.event(event)

    def tick(self, profiles: Mapping[str, AgentProfile], stats: FleetStats) -> None:
        for display in self._displays:
            display.tick(profiles, stats)

    def close(self) -> None:
        for display in self._displays:
            display.close()


class RichDisplay:
    """A live view on a terminal (rich): a table that fits the screen, or a progress view."""

    def __init__(
        self,
        device_count: int,
        *,
        console: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = console or Console()
        self._total = device_count
        # Rows of the table, its borders and title, and a few logged lines above it.
        self._detailed = device_count <= max(0, self._console.size.height - 8)
        self._rate = RateMeter(clock)
        self._clock = clock
        self._troubles = Troubles(clock)
        self._live = Live(console=self._console, refresh_per_second=8, transient=False)
        self._live.start()

    def event(self, event: ManagerEvent) -> None:
        # A local fleet registers in milliseconds, faster than any redraw: the table alone
        # would jump from "disconnected" to "idle". Each transition is also logged above it
        # (small fleets), so every phase is seen.
        from rich.text import Text

        self._rate.observe(event)
        self._troubles.observe(event)
        if self._detailed:
            self._live.console.print(Text(event_line(event)), soft_wrap=True)

    def tick(self, profiles: Mapping[str, AgentProfile], stats: FleetStats) -> None:
        progress = Progress.of(stats.by_status, self._total, self._rate.rate())
        self._live.update(
            self._table(profiles, progress)
            if self._detailed
            else self._summary(profiles, stats.by_status, progress)
        )

    def _table(self, profiles: Mapping[str, AgentProfile], progress: Progress) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="stellate: registration", caption=progress.text(), expand=False)
        columns = ("device", "phase", "status", "attempts", "os", "capabilities", "why / next")
        for column in columns:
            table.add_column(column)
        now = self._clock()
        for device_id, p in profiles.items():
            trouble = self._troubles.get(device_id)
            table.add_row(
                Text(shown(device_id)),
                Text(phase_label(p.status)),
                Text(p.status.value, style=_STATUS_STYLE.get(p.status, "")),
                Text(str(p.connection_attempts)),
                Text(shown(p.os or "-")),
                Text(str(len(p.capabilities))),
                Text("" if trouble is None else trouble.detail(now)),
            )
        return table

    def _summary(
        self, profiles: Mapping[str, AgentProfile], counts: StatusCounts, progress: Progress
    ) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        parts: list[Any] = [
            Text(f"stellate: {self._total} devices · {progress.text()}", style="bold"),
            ProgressBar(total=max(1, self._total), completed=progress.settled),
            Text(counts.text()),
        ]
        slowest = sorted(
            (p for p in profiles.values() if p.status not in SETTLED),
            key=lambda p: (-p.connection_attempts, p.device_id),
        )[:SLOWEST_LISTED]
        if slowest:
            parts.append(Text("furthest from ready:", style="yellow"))
            parts += [
                Text(f"  {shown(p.device_id)}: {p.status.value}, attempt {p.connection_attempts}")
                for p in slowest
            ]
        failed = [p for p in profiles.values() if p.status is DeviceStatus.FAILED]
        if failed:
            listed = ", ".join(shown(p.device_id) for p in failed[:FAILED_LISTED])
            more = f" (+{len(failed) - FAILED_LISTED} more)" if len(failed) > FAILED_LISTED else ""
            parts.append(Text(f"failed: {listed}{more}", style="red"))
        troubles = self._troubles.lines()
        if troubles:
            parts.append(Text(troubles[0], style="yellow"))
            parts += [Text(line) for line in troubles[1:]]
        return Group(*parts)

    def close(self) -> None:
        self._live.stop()


# -- the end: profiles and a summary --------------------------------------------------------------


def print_profiles(
    reports: Sequence[DeviceReport],
    out: TextIO = sys.stdout,
    blocks: int = PROFILE_BLOCKS,
    *,
    unsettled: str = "not finished",
) -> None:
    """The first ``blocks`` profiles in the registration flow's example format, then a summary.

    Unknown values (no telemetry, no OS) are left out rather than printed as ``None``. The
    failed devices beyond the first blocks are named with their reasons; ``--json`` has every
    profile in full. ``unsettled`` says why a device neither IDLE nor FAILED stopped where it
    is (``interrupted``, ``timed out``): it did not fail.
    """
    for report in reports[:blocks]:
        _print_block(report, out, unsettled)
    rest = reports[blocks:]
    if not rest:
        return
    counts = StatusCounts(r.profile.status for r in rest).text()
    print(
        f"… and {len(rest)} more devices: {counts} (stellate up --json prints every profile)",
        file=out,
    )
    failed = [r for r in rest if r.profile.status is DeviceStatus.FAILED]
    for report in failed[:FAILED_LISTED]:
        reason = shown(report.failure_reason or "failed")
        print(f"  ❌ {shown(report.profile.device_id)}: {reason}", file=out)
    if len(failed) > FAILED_LISTED:
        print(f"  … and {len(failed) - FAILED_LISTED} more failed", file=out)
    print("", file=out)


def _print_block(report: DeviceReport, out: TextIO, unsettled: str) -> None:
    profile = report.profile
    if profile.status is DeviceStatus.IDLE:
        print("✅ Registration successful!", file=out)
    elif profile.status is DeviceStatus.FAILED:
        print(f"❌ Registration failed (status: {profile.status.value})", file=out)
    else:
        print(f"⏸ Registration {unsettled} (status: {profile.status.value})", file=out)
    print("\n📊 AgentProfile:", file=out)
    print(f"  Device ID: {shown(profile.device_id)}", file=out)
    local = " (embedded: a local stand-in server)" if report.embedded else ""
    print(f"  Server: {shown(redact_url(profile.server_url))}{local}", file=out)
    print(f"  Status: {profile.status.value}", file=out)
    if profile.status is DeviceStatus.FAILED and report.failure_reason:
        print(f"  Reason: {shown(report.failure_reason)}", file=out)
    elif profile.status is not DeviceStatus.IDLE and report.last_error:
        print(f"  Last error: {shown(report.last_error)}", file=out)
    if profile.os:
        print(f"  OS: {shown(profile.os)}", file=out)
    print(f"  Capabilities: {shown(list(profile.capabilities), limit=None)}", file=out)
    system_info = profile.metadata.get("system_info")
    system_info = system_info if isinstance(system_info, dict) else {}
    lines = [
        (label, system_info.get(key), unit)
        for label, key, unit in (
            ("CPU Cores", "cpu_count", ""),
            ("Memory", "memory_total_gb", " GB"),
            ("Hostname", "hostname", ""),
            ("IP", "ip_address", ""),
        )
    ]
    known = [(label, value, unit) for label, value, unit in lines if value is not None]
    if known:
        print("  System Info:", file=out)
        for label, value, unit in known:
            print(f"    - {label}: {shown(value)}{unit}", file=out)
    print("", file=out)


def fleet_summary(reports: Sequence[DeviceReport], expected: Iterable[str]) -> str:
    """One line: how many of the devices that were to connect are idle, and which failed."""
    wanted = set(expected)
    considered = [r for r in reports if r.profile.device_id in wanted]
    counts = StatusCounts(r.profile.status for r in considered)
    line = f"{counts[DeviceStatus.IDLE]}/{counts.total} idle"
    failed = [r for r in considered if r.profile.status is DeviceStatus.FAILED]
    if failed:
        named = "; ".join(
            f"{shown(r.profile.device_id)}: {shown(r.failure_reason or 'failed')}"
            for r in failed[:3]
        )
        more = f"; +{len(failed) - 3} more" if len(failed) > 3 else ""
        line += f", {len(failed)} failed ({named}{more})"
    pending = counts.total - counts.tagged(Tag.SETTLED)
    if pending:
        line += f", {pending} not settled"
    return line


def profiles_json(reports: Iterable[DeviceReport]) -> str:
    """The profiles as a JSON list: Galaxy's keys, then failure_reason and last_error."""
    return safe_json([report.to_dict() for report in reports], indent=2)
