"""The live display and the final report: no raw markup, progress for big fleets, short output.

RichDisplay is driven with a real ``rich`` console writing to a string (a terminal of a fixed
size), and a fake clock, so rate and ETA are exact.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from rich.console import Console

from stellate.cli.display import (
    DETAIL_LIMIT,
    MIN_RATE_SPAN,
    PLAIN_PROGRESS_EVERY,
    PROFILE_BLOCKS,
    RATE_WINDOW,
    TROUBLE_LISTED,
    DeviceReport,
    PlainDisplay,
    Progress,
    RateMeter,
    RichDisplay,
    Troubles,
    event_line,
    fleet_summary,
    print_profiles,
)
from stellate.cli.main import configure_logging
from stellate.fsm import AgentProfile, DeviceStatus, Trigger
from stellate.fsm.lifecycle import TransitionRecord
from stellate.manager import EventKind, ManagerEvent
from stellate.manager.stats import FleetStats, StatusCounts

S = DeviceStatus
URL = "ws://agents.test:5005/ws"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def profile(device_id: str, status: DeviceStatus = S.DISCONNECTED, **kw: Any) -> AgentProfile:
    return AgentProfile(device_id, URL, status=status, **kw)


def event(
    device_id: str,
    source: DeviceStatus,
    dest: DeviceStatus,
    trigger: Trigger,
    kind: EventKind = EventKind.PHASE,
    **kw: Any,
) -> ManagerEvent:
    record = TransitionRecord(device_id, trigger, source, dest)
    attempts = kw.pop("attempts", 0)
    return ManagerEvent(
        kind, device_id, record, profile(device_id, dest, connection_attempts=attempts), **kw
    )


def tick(display: Any, profiles: dict[str, AgentProfile]) -> None:
    """A display's periodic redraw, with the counts the manager's stats give for ``profiles``."""
    display.tick(profiles, FleetStats(StatusCounts(p.status for p in profiles.values())))


def terminal(height: int = 40) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, height=height, color_system=None)
    return console, out


def test_a_backoff_line_says_why_and_when() -> None:
    line = event_line(
        event(
            "dev-a",
            S.CONNECTING,
            S.BACKOFF,
            Trigger.CONNECTION_FAILED,
            reason="connection refused (127.0.0.1:5055)",
            retry_in=1.84,
            attempts=1,
        )
    )
    assert line == (
        "dev-a: connecting -> backoff: connection refused (127.0.0.1:5055); attempt 2/5 in 1.8 s"
    )


def test_leaving_backoff_on_its_deadline_reads_as_the_retry_not_a_timeout() -> None:
    retry = event("dev-a", S.BACKOFF, S.CONNECTING, Trigger.TIMED_OUT)
    assert event_line(retry) == (
        "dev-a: backoff -> connecting (wait over, retrying)  [phase 2 connection]"
    )
    timeout = event("dev-a", S.CONNECTING, S.BACKOFF, Trigger.TIMED_OUT, reason="timed out")
    assert event_line(timeout).startswith("dev-a: connecting -> backoff: timed out; attempt")


def test_a_failed_line_says_why() -> None:
    failed = event(
        "d", S.REGISTERING, S.FAILED, Trigger.REGISTRATION_ANSWERED, EventKind.FAILED, reason="no"
    )
    assert event_line(failed) == "d: registering -> failed: no"


def test_the_live_table_shows_no_markup_even_with_lines_logged_above(
    caplog: pytest.LogCaptureFixture,
) -> None:
    console, out = terminal()
    display = RichDisplay(3, console=console, clock=FakeClock())
    profiles = {
        "a": profile("a", S.BACKOFF),
        "b": profile("b", S.FAILED),
        "[red]c[/]": profile("[red]c[/]", S.IDLE),  # a device id that looks like markup
    }
    tick(display, profiles)
    display.event(event("a", S.CONNECTING, S.BACKOFF, Trigger.CONNECTION_FAILED, reason="[x]"))
    logging.getLogger("stellate.test").warning("a line logged above the table")
    tick(display, profiles)
    display.close()
    text = out.getvalue()
    assert "[yellow]" not in text and "[/]" not in text.replace("[red]c[/]", "")
    assert "backoff" in text and "failed" in text
    assert "[red]c[/]" in text  # shown as written, not as a style
    assert "a: connecting -> backoff: [x]" in text  # the line above the table, as written
    assert "1/3 idle, 1 failed" in text  # progress under the table


@pytest.fixture
def cli_logging() -> Any:
    """The root logger as ``stellate`` sets it up (pytest's own handlers put back afterwards)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        configure_logging(0)
        yield
    finally:
        root.handlers, root.level = saved


def test_a_record_logged_while_the_table_is_live_is_printed_above_it(cli_logging: Any) -> None:
    # The live display swaps sys.stderr for a proxy that prints above the table; the CLI's log
    # handler must write there, not to the stderr it saw at start-up (under the table, where
    # the next redraw overwrites it).
    console, out = terminal()
    display = RichDisplay(1, console=console, clock=FakeClock())
    tick(display, {"a": profile("a", S.BACKOFF)})
    logging.getLogger("stellate.test").warning("the agent said [red]no[/]")
    tick(display, {"a": profile("a", S.IDLE)})
    display.close()
    text = out.getvalue()
    assert "WARNING stellate.test: the agent said [red]no[/]" in text  # through the console
    assert text.index("the agent said") < text.rindex("stellate: registration")  # table below


def ready(device_id: str) -> ManagerEvent:
    return event(device_id, S.TELEMETRY, S.IDLE, Trigger.TELEMETRY_RECEIVED, EventKind.READY)


def test_the_live_table_carries_rate_and_eta() -> None:
    console, out = terminal()
    clock = FakeClock()
    display = RichDisplay(4, console=console, clock=clock)
    clock.now = 4.0
    display.event(ready("a"))
    clock.now = 5.0
    tick(display, {"a": profile("a", S.IDLE)} | {d: profile(d, S.BACKOFF) for d in "bcd"})
    display.close()
    assert "1/4 idle · 0.2/s · ETA 15 s" in out.getvalue()


def test_a_fleet_larger_than_the_terminal_gets_a_progress_view() -> None:
    console, out = terminal(height=20)
    clock = FakeClock()
    display = RichDisplay(100, console=console, clock=clock)
    clock.now = 10.0
    profiles = {f"d{i:03}": profile(f"d{i:03}", S.IDLE) for i in range(40)}
    for device_id in profiles:
        display.event(ready(device_id))
    profiles |= {
        f"d{i:03}": profile(f"d{i:03}", S.BACKOFF, connection_attempts=3) for i in range(40, 95)
    }
    profiles |= {f"d{i:03}": profile(f"d{i:03}", S.FAILED) for i in range(95, 100)}
    tick(display, profiles)
    display.close()
    text = out.getvalue()
    assert "40/100 idle, 5 failed · 4.0/s · ETA 14 s" in text
    assert "idle=40" in text and "backoff=55" in text and "failed=5" in text
    assert "furthest from ready:" in text and "d040: backoff, attempt 3" in text
    assert "failed: d095, d096, d097, d098, d099" in text
    assert "d000" not in text  # no row per device
    assert "━" in text  # the bar


def test_progress_rate_and_eta() -> None:
    progress = Progress(total=500, idle=100, failed=0, settled=100, rate=5.0)
    assert progress.eta == 80.0
    assert progress.text() == "100/500 idle · 5.0/s · ETA 1 min 20 s"
    assert Progress(total=3, idle=0, failed=0, settled=0).text() == "0/3 idle"
    assert (
        Progress(total=3, idle=2, failed=1, settled=3, rate=0.5).text()
        == "2/3 idle, 1 failed · 0.5/s"
    )


def test_the_rate_counts_arrivals_over_a_real_interval_only() -> None:
    """The class of absurd rates: a fleet already idle when a display starts (``stellate up``
    keeping the fleet after bring-up) showed `52/52 idle · 1087820.7/s` on its first line."""
    clock = FakeClock()
    meter = RateMeter(clock)
    clock.now = 0.000048  # 52 devices idle, but none of them arrived under this meter
    idle = StatusCounts([S.IDLE] * 52)
    assert Progress.of(idle, 52, meter.rate()).text() == "52/52 idle"
    meter.observe(ready("d0"))
    assert meter.rate() is None  # one arrival 48 µs in is not a rate
    clock.now = MIN_RATE_SPAN
    assert meter.rate() == 1.0
    # Arrivals older than the window no longer count: a fleet stuck in backoff has no rate and
    # so no ETA, instead of a figure averaged over the minutes before.
    clock.now = MIN_RATE_SPAN + RATE_WINDOW + 1
    assert meter.rate() is None
    stuck = Progress.of(StatusCounts([S.IDLE, S.BACKOFF]), 2, meter.rate())
    assert stuck.text() == "1/2 idle" and stuck.eta is None
    for i in range(20):
        meter.observe(ready(f"d{i}"))
    assert meter.rate() == 20 / RATE_WINDOW


def test_a_display_started_on_an_idle_fleet_shows_no_rate() -> None:
    out = io.StringIO()
    clock = FakeClock()
    display = PlainDisplay(out, DETAIL_LIMIT + 12, clock)
    clock.now = 0.000048
    tick(display, {f"d{i}": profile(f"d{i}", S.IDLE) for i in range(DETAIL_LIMIT + 12)})
    (line,) = out.getvalue().splitlines()
    assert (
        line.startswith(f"[{DETAIL_LIMIT + 12} devices] {DETAIL_LIMIT + 12}/") and "/s" not in line
    )


def test_plain_progress_for_big_fleets_is_rate_limited() -> None:
    out = io.StringIO()
    clock = FakeClock()
    display = PlainDisplay(out, DETAIL_LIMIT + 1, clock)
    fleet = {f"d{i}": profile(f"d{i}") for i in range(DETAIL_LIMIT + 1)}
    tick(display, fleet)
    fleet["d0"] = profile("d0", S.IDLE)
    display.event(ready("d0"))
    clock.now = PLAIN_PROGRESS_EVERY / 2
    tick(display, fleet)  # changed, but too soon
    clock.now = PLAIN_PROGRESS_EVERY * 2
    tick(display, fleet)
    tick(display, fleet)  # unchanged
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith(f"[{DETAIL_LIMIT + 1} devices] 1/{DETAIL_LIMIT + 1} idle · ")


def test_after_a_few_profiles_a_summary_line() -> None:
    reports = [DeviceReport(profile(f"d{i}", S.IDLE, os="linux")) for i in range(8)]
    reports += [DeviceReport(profile("bad", S.FAILED), failure_reason="registration rejected")]
    out = io.StringIO()
    print_profiles(reports, out, blocks=3)
    text = out.getvalue()
    assert text.count("📊 AgentProfile:") == 3
    assert (
        "… and 6 more devices: idle=5  failed=1 (stellate up --json prints every profile)" in text
    )
    assert "  ❌ bad: registration rejected" in text


def test_by_default_only_the_first_few_blocks_are_printed() -> None:
    reports = [DeviceReport(profile(f"d{i}", S.IDLE, os="linux")) for i in range(20)]
    out = io.StringIO()
    print_profiles(reports, out)
    text = out.getvalue()
    assert PROFILE_BLOCKS <= 5
    assert text.count("📊 AgentProfile:") == PROFILE_BLOCKS
    assert f"… and {20 - PROFILE_BLOCKS} more devices: idle={20 - PROFILE_BLOCKS}" in text
    assert len(text.splitlines()) <= 12 * PROFILE_BLOCKS + 2


def test_a_profile_block_leaves_out_what_is_unknown() -> None:
    out = io.StringIO()
    print_profiles([DeviceReport(profile("p", S.FAILED), failure_reason="gave up")], out)
    text = out.getvalue()
    assert "None" not in text and "System Info" not in text and "OS:" not in text
    assert "  Reason: gave up\n" in text


def test_fleet_summary() -> None:
    reports = [
        DeviceReport(profile("a", S.IDLE)),
        DeviceReport(profile("b", S.FAILED), failure_reason="nope"),
        DeviceReport(profile("c", S.BACKOFF)),
        DeviceReport(profile("off")),
    ]
    assert fleet_summary(reports, ["a", "b", "c"]) == "1/3 idle, 1 failed (b: nope), 1 not settled"


def test_event_times_are_utc() -> None:
    from stellate.cli.display import event_json

    line = event_json(
        event("a", S.DISCONNECTED, S.CONNECTING, Trigger.CONNECT),
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert line.startswith('{"time": "2026-01-02T03:04:05+00:00", "event": "phase"')
    assert attrs.has(DeviceReport)


def test_activation_without_telemetry_says_so() -> None:
    ready = event("d", S.TELEMETRY, S.IDLE, Trigger.TIMED_OUT, EventKind.READY)
    assert event_line(ready) == (
        "d: no telemetry in time; activated without it\n"
        "d: telemetry -> idle (timed_out)  [phase 5 activation]"
    )
    answered = event("d", S.TELEMETRY, S.IDLE, Trigger.TELEMETRY_RECEIVED, EventKind.READY)
    assert event_line(answered) == "d: telemetry -> idle (telemetry_received)  [phase 5 activation]"


def backs_off(device_id: str, reason: str, retry_in: float) -> ManagerEvent:
    return event(
        device_id,
        S.CONNECTING,
        S.BACKOFF,
        Trigger.CONNECTION_FAILED,
        reason=reason,
        retry_in=retry_in,
    )


def gives_up(device_id: str, reason: str, retry_in: float | None) -> ManagerEvent:
    return event(
        device_id,
        S.REGISTERING,
        S.FAILED,
        Trigger.REGISTRATION_ANSWERED,
        EventKind.FAILED,
        reason=reason,
        retry_in=retry_in,
    )


def test_troubles_name_failing_and_waiting_devices_most_recent_first_with_their_next_attempt() -> (
    None
):
    clock = FakeClock()
    troubles = Troubles(clock)
    troubles.observe(backs_off("a", "connection refused (127.0.0.1:5055)", 1.84))
    clock.now = 10.0
    troubles.observe(gives_up("b", "registration rejected: no such device", 300.0))
    clock.now = 20.0
    troubles.observe(gives_up("c", "registration rejected", None))  # retry_failed_after: null
    clock.now = 70.0
    assert troubles.lines() == [
        "failing or waiting (most recent first):",
        "  c: failed: registration rejected; waits for a retry (stellate ctl retry)",
        "  b: failed: registration rejected: no such device; next attempt in 4 min 00 s",
        "  a: backoff: connection refused (127.0.0.1:5055); next attempt in 0.0 s",
    ]
    # a's wait is over: it is trying again, still listed (still failing), nothing scheduled
    troubles.observe(event("a", S.BACKOFF, S.CONNECTING, Trigger.TIMED_OUT))
    assert troubles.latest(1)[0].device_id == "c"  # an attempt does not make it more recent
    assert troubles.lines()[3] == (
        "  a: connecting: connection refused (127.0.0.1:5055); attempt under way"
    )
    troubles.observe(ready("a"))  # ready: no longer in trouble
    troubles.observe(event("c", S.FAILED, S.DISCONNECTED, Trigger.DISCONNECT))  # stopped
    assert [t.device_id for t in troubles.latest()] == ["b"]


def test_the_troubles_listed_are_bounded_and_say_how_many_more() -> None:
    clock = FakeClock()
    troubles = Troubles(clock)
    for i in range(TROUBLE_LISTED + 3):
        troubles.observe(backs_off(f"d{i}", "connection refused", 2.0))
    lines = troubles.lines()
    assert lines[0] == "failing or waiting (most recent first; 3 more):"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        f"d{i}" for i in reversed(range(3, TROUBLE_LISTED + 3))
    ]
    assert len(troubles) == TROUBLE_LISTED + 3


def test_the_live_views_name_the_failing_device_its_reason_and_next_attempt() -> None:
    """The class of ``51/52 idle, 1 failed`` naming nobody: the progress view (a fleet bigger
    than the terminal), the table (one that fits) and the plain progress line of a log."""
    console, out = terminal(height=20)
    clock = FakeClock()
    big = RichDisplay(52, console=console, clock=clock)
    fleet = {f"d{i:02}": profile(f"d{i:02}", S.IDLE) for i in range(51)}
    fleet["d51"] = profile("d51", S.FAILED)
    big.event(gives_up("d51", "connection refused (10.0.0.7:5005)", 300.0))
    clock.now = 48.0
    tick(big, fleet)
    big.close()
    assert "d51: failed: connection refused (10.0.0.7:5005); next attempt in 4 min 12 s" in (
        out.getvalue()
    )

    console, out = terminal()
    small = RichDisplay(2, console=console, clock=clock)
    small.event(backs_off("b", "connection refused", 1.5))
    tick(small, {"a": profile("a", S.IDLE), "b": profile("b", S.BACKOFF)})
    small.close()
    assert "connection refused; next attempt in 1.5 s" in out.getvalue()

    log = io.StringIO()
    plain = PlainDisplay(log, DETAIL_LIMIT + 1, clock)
    plain.event(gives_up("d7", "registration rejected", None))
    tick(plain, {"d7": profile("d7", S.FAILED)})
    assert log.getvalue().splitlines()[1:] == [
        "failing or waiting (most recent first):",
        "  d7: failed: registration rejected; waits for a retry (stellate ctl retry)",
    ]
