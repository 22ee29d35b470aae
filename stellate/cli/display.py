"""How ``stellate up`` shows a fleet moving through the phases, and the final profiles.

On a terminal: a live table (one row per device for small fleets, per-status counts for big
ones). Piped or redirected: plain lines, one per transition for small fleets, a periodic
summary for big ones, so a log of 10,000 devices stays readable.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

from ..fsm import AgentProfile, DeviceStatus, Trigger
from ..manager import EventKind, ManagerEvent
from ..redact import redact_url

#: Above this many devices, displays summarise instead of listing every device.
DETAIL_LIMIT = 40

_PHASE_LABEL = {
    1: "1 configuration",
    2: "2 connection",
    3: "3 registration",
    4: "4 telemetry",
    5: "5 activation",
}


def phase_label(status: DeviceStatus) -> str:
    phase = status.phase
    return _PHASE_LABEL[phase] if phase is not None else "-"


def status_counts(profiles: Iterable[AgentProfile]) -> str:
    counts = Counter(p.status for p in profiles)
    return "  ".join(
        f"{status.value}={counts[status]}" for status in DeviceStatus if counts[status]
    )


class PlainDisplay:
    """Line-oriented progress for pipes and logs.

    Small fleets get one line per transition (plus one when telemetry is merged); big ones a
    status summary, printed only when it changed, so an idle fleet stays quiet in a log.
    """

    def __init__(self, out: TextIO, device_count: int) -> None:
        self._out = out
        self._detailed = device_count <= DETAIL_LIMIT
        self._last_summary = ""

    def event(self, event: ManagerEvent) -> None:
        if self._detailed:
            print(self.line(event), file=self._out, flush=True)

    @classmethod
    def line(cls, event: ManagerEvent) -> str:
        """The text of one event (a transition, or merged telemetry)."""
        if event.kind is EventKind.TELEMETRY_MERGED:
            profile = event.profile
            line = (
                f"{event.device_id}: telemetry merged: os={profile.os}, "
                f"{len(profile.capabilities)} capabilities"
            )
        elif event.kind is EventKind.READY and event.record.trigger is Trigger.TIMED_OUT:
            line = f"{event.device_id}: no telemetry in time; activated without it"
            line += f"\n{cls._transition(event)}"
        else:
            line = cls._transition(event)
        return line

    @staticmethod
    def _transition(event: ManagerEvent) -> str:
        record = event.record
        line = (
            f"{event.device_id}: {record.source} -> {record.dest} ({record.trigger})"
            f"  [phase {phase_label(record.dest)}]"
        )
        if event.kind in (EventKind.FAILED, EventKind.CONNECTION_LOST) and event.reason:
            line += f": {event.reason}"
        return line

    def tick(self, profiles: dict[str, AgentProfile]) -> None:
        if self._detailed:
            return
        summary = f"[{len(profiles)} devices] {status_counts(profiles.values())}"
        if summary != self._last_summary:
            self._last_summary = summary
            print(summary, file=self._out, flush=True)

    def close(self) -> None:
        pass


class RichDisplay:
    """A live table on a terminal (rich)."""

    def __init__(self, device_count: int) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(stderr=False)
        self._detailed = device_count <= DETAIL_LIMIT
        self._live = Live(console=self._console, refresh_per_second=8, transient=False)
        self._live.start()

    def event(self, event: ManagerEvent) -> None:
        # A local fleet registers in milliseconds, faster than any redraw: the table alone
        # would jump from "disconnected" to "idle". Each transition is also logged above it
        # (small fleets), so every phase is seen.
        if self._detailed:
            line = PlainDisplay.line(event)
            self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def tick(self, profiles: dict[str, AgentProfile]) -> None:
        from rich.table import Table

        if self._detailed:
            table = Table(title="stellate: registration", expand=False)
            for column in ("device", "phase", "status", "attempts", "os", "capabilities"):
                table.add_column(column)
            for device_id, p in profiles.items():
                style = {"idle": "green", "failed": "red", "backoff": "yellow"}.get(p.status, "")
                table.add_row(
                    device_id,
                    phase_label(p.status),
                    f"[{style}]{p.status.value}[/]" if style else p.status.value,
                    str(p.connection_attempts),
                    p.os or "-",
                    str(len(p.capabilities)),
                )
            self._live.update(table)
        else:
            self._live.update(f"[{len(profiles)} devices] {status_counts(profiles.values())}")

    def close(self) -> None:
        self._live.stop()


def print_profiles(profiles: Iterable[AgentProfile], out: TextIO = sys.stdout) -> None:
    """The final profiles, in the registration flow's example output format."""
    for profile in profiles:
        if profile.status is DeviceStatus.IDLE:
            print("✅ Registration successful!", file=out)
        else:
            print(f"❌ Registration failed (status: {profile.status.value})", file=out)
        print("\n📊 AgentProfile:", file=out)
        print(f"  Device ID: {profile.device_id}", file=out)
        print(f"  Server: {redact_url(profile.server_url)}", file=out)
        print(f"  Status: {profile.status.value}", file=out)
        print(f"  OS: {profile.os}", file=out)
        print(f"  Capabilities: {list(profile.capabilities)}", file=out)
        system_info = profile.metadata.get("system_info") or {}
        print("  System Info:", file=out)
        print(f"    - CPU Cores: {system_info.get('cpu_count')}", file=out)
        print(f"    - Memory: {system_info.get('memory_total_gb')} GB", file=out)
        print(f"    - Hostname: {system_info.get('hostname')}", file=out)
        print(f"    - IP: {system_info.get('ip_address')}", file=out)
        print("", file=out)


def profiles_json(profiles: Iterable[AgentProfile]) -> str:
    """The profiles as a JSON list with Galaxy's keys, secrets in URLs redacted."""
    items = []
    for profile in profiles:
        item = profile.to_dict()
        item["server_url"] = redact_url(profile.server_url)
        items.append(item)
    return json.dumps(items, indent=2, default=str)
