"""Run a fleet of devices against a fake agent server under ``MockClock``, and check it.

:func:`run_fleet` is the whole harness in one call: it starts a
:class:`~stellate.adapters.memory.MemoryNetwork`, a :class:`~.fake_server.FakeAgentServer`
scripted with every device's fault schedule, and the real
:class:`~stellate.manager.ConstellationDeviceManager` (runner, protocol, machine), all under
``trio.testing.MockClock(autojump_threshold=0)`` with trio's scheduler and the backoff's
random source seeded: the same fleet and seed give the same run, transition for transition.
It waits until every device has settled (FAILED, or IDLE on a connection the server keeps
healthy), lets a grace period pass, cancels the manager and records what it saw.

:meth:`FleetResult.problems` checks the global invariants and returns them as readable lines
(empty when all hold): each device took exactly the path its schedule dictates
(:func:`~.faults.expected_path`), the final profile is right, no device exceeded
``max_retries``, every backoff stayed within its bounds and devices failing together did not
retry together, a silent server was given up exactly when its heartbeat lease ran out, the
event stream agrees with the registry, the manager spoke correct AIP, and cancelling the
manager left no task and no socket behind. Expected profiles, backoff bounds and lease
deadlines come from :mod:`~.reference` (the documented rules, restated), never from the
production code under test.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import trio
import trio.testing

from ..adapters.memory import MemoryNetwork
from ..fsm.lifecycle import TransitionRecord
from ..fsm.meaning import Meaning
from ..fsm.paths import Path, Step
from ..fsm.profile import AgentProfile
from ..fsm.states import ACTIVE, SETTLED, DeviceStatus
from ..fsm.trigger import Trigger
from ..manager import ConstellationDeviceManager, ManagerEvent
from ..timing import RetryPolicy, Timing
from . import reference
from .fake_server import Attempt, FakeAgentServer
from .faults import (
    Answer,
    Busy,
    DropAfterIdle,
    Fault,
    Healthy,
    Outage,
    SilentAfterIdle,
    describe_schedule,
    expected_path,
    normalize,
)

__all__ = [
    "HARNESS_TIMING",
    "BackoffRecord",
    "DeviceOutcome",
    "FleetDevice",
    "FleetResult",
    "FleetTiming",
    "RecordingRandom",
    "check_fleet",
    "run_fleet",
    "run_under_mock_clock",
    "seeded_scheduler",
]

T = TypeVar("T")


def _faults(values: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(values)


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen
class FleetDevice:
    """One device of a fleet: its configuration and its fault schedule.

    Args:
        device_id: the device's id (unique in the fleet).
        schedule: the fault each successive connection attempt meets.
        max_retries: the device's retry limit (``None``: forever).
        os, capabilities, metadata: configured profile fields.
        then: what attempts after the schedule meet (default ``Healthy()``).
        retries: how many times the owner retries the device (``retry_device``) when it is
            FAILED; each retry starts a fresh run on the schedule's next entry.
    """

    device_id: str
    schedule: tuple[Fault, ...] = attrs.field(default=(), converter=_faults)
    max_retries: int | None = 5
    os: str | None = None
    capabilities: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    metadata: Mapping[str, Any] = attrs.field(factory=dict, eq=False)
    then: Fault | None = None
    retries: int = 0

    def profile(self, url: str) -> AgentProfile:
        """The configured ``AgentProfile`` (phase 1), pointing at ``url``."""
        return AgentProfile(
            device_id=self.device_id,
            server_url=url,
            os=self.os,
            capabilities=self.capabilities,
            metadata=dict(self.metadata),
            max_retries=self.max_retries,
        )

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value in (
                ("os", self.os),
                ("capabilities", self.capabilities),
                ("metadata", dict(self.metadata)),
                ("then", self.then),
                ("retries", self.retries),
            )
            if value
        )
        return (
            f"FleetDevice({self.device_id!r}, {describe_schedule(self.schedule)}, "
            f"max_retries={self.max_retries!r}{extra})"
        )


#: The harness's default timing: ``Timing``'s, without a recovery or stability window and
#: without a way back from FAILED (the reference's rules: reconnects after a loss spend
#: ``max_retries``, every loss starts the backoff over, FAILED waits for the owner).
#: ``fleet_timings()`` draws both windows, and the checks follow either way.
HARNESS_TIMING = Timing(recovery_window=0.0, stability_window=0.0, retry_failed_after=None)


@attrs.frozen(kw_only=True)
class FleetTiming(Timing):
    """Deprecated: pass a ``Timing`` (e.g. ``HARNESS_TIMING.evolve(...)``) and ``task_name``
    to :func:`run_fleet` instead. Kept so code written against it runs: it is a ``Timing``
    with the harness's windows and a task name."""

    task_name: str = "stellate"
    recovery_window: float = 0.0
    stability_window: float = 0.0
    retry_failed_after: float | None = None

    def __attrs_post_init__(self) -> None:
        warnings.warn(
            "FleetTiming is deprecated: pass timing=HARNESS_TIMING.evolve(...) (a Timing) and "
            "task_name= to run_fleet",
            DeprecationWarning,
            stacklevel=3,
        )
        super().__attrs_post_init__()

    def manager_kwargs(self) -> dict[str, Any]:
        return {"task_name": self.task_name, "timing": self.policy}

    @property
    def policy(self) -> Timing:
        """The plain ``Timing`` the manager runs with."""
        return Timing(**{field.name: getattr(self, field.name) for field in attrs.fields(Timing)})


def _harness_settings(timing: Timing | None, task_name: str) -> tuple[Timing, str]:
    """The timing and task name a run uses (a deprecated ``FleetTiming`` carries both)."""
    if isinstance(timing, FleetTiming):
        return timing.policy, timing.task_name
    return timing or HARNESS_TIMING, task_name


class RecordingRandom:
    """A seeded ``RandomSource`` that remembers every draw ``(low, high, value)``."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self.draws: list[tuple[float, float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        value = self._random.uniform(a, b)
        self.draws.append((a, b, value))
        return value


@attrs.frozen
class BackoffRecord:
    """One wait between attempts: when it began, its bounds, the delay drawn, the time waited."""

    device_id: str
    at: float
    failures: int
    low: float
    high: float
    delay: float
    waited: float | None  # None if the run ended during the wait


@attrs.define
class DeviceOutcome:
    """What happened to one device."""

    device: FleetDevice
    url: str
    path: Path
    profile: AgentProfile
    failure_reason: str | None
    attempts: list[Attempt]
    backoffs: list[BackoffRecord]
    events: list[tuple[float, ManagerEvent]]

    @property
    def status(self) -> DeviceStatus:
        return self.profile.status


@attrs.define
class FleetResult:
    """Everything :func:`run_fleet` observed; :meth:`problems` checks the invariants."""

    devices: dict[str, DeviceOutcome]
    timing: Timing
    seed: int
    settled_at: float
    virtual_time: float
    real_time: float
    violations: list[str]
    tasks_left: int
    sockets_left: int
    handlers_left: int
    changed_in_grace: list[str]
    draws_unmatched: int

    @property
    def paths(self) -> dict[str, Path]:
        return {device_id: outcome.path for device_id, outcome in self.devices.items()}

    def problems(self) -> list[str]:
        """Every broken invariant, one readable line each (empty: the fleet behaved)."""
        out = [line for lines in self.device_problems().values() for line in lines]
        out += _jitter_problems(self.devices.values(), self.timing)
        if self.tasks_left:
            out.append(f"{self.tasks_left} task(s) still alive after the manager was cancelled")
        if self.sockets_left:
            out.append(f"{self.sockets_left} client socket(s) left open after cancellation")
        if self.handlers_left:
            out.append(f"{self.handlers_left} server handler(s) still serving after cancellation")
        if self.draws_unmatched:
            out.append(f"{self.draws_unmatched} backoff draw(s) not matched by a BACKOFF entry")
        return out

    def device_problems(self) -> dict[str, list[str]]:
        """The broken invariants that concern one device, by device id (only devices with
        some): its path, profile, backoffs and lease, the AIP it was spoken, the grace period."""
        out: dict[str, list[str]] = {}
        for device_id, outcome in self.devices.items():
            found = _device_problems(outcome, self.timing)
            found += [
                f"protocol violation seen by the fake server: {v}"
                for v in self.violations
                if v.startswith(f"{device_id}: ")
            ]
            if device_id in self.changed_in_grace:
                found.append(f"{device_id}: changed state during the grace period")
            if found:
                out[device_id] = found
        return out

    def check(self) -> None:
        """Raise ``AssertionError`` listing every broken invariant."""
        problems = self.problems()
        if problems:
            raise AssertionError("fleet invariants broken:\n  " + "\n  ".join(problems))


def check_fleet(
    devices: Sequence[FleetDevice],
    *,
    timing: Timing | None = None,
    task_name: str = "stellate",
    seed: int = 0,
    alone: int = 3,
) -> FleetResult:
    """:func:`run_fleet`, then :meth:`FleetResult.check`, with a small reproduction on failure.

    When invariants break, up to ``alone`` of the failing devices are run again, each in a
    fleet of its own (same timing, same seed), and the message says whether each still fails
    alone — a one-device case to paste into a test — or only beside the others. That makes a
    failing fleet readable without hypothesis shrinking it, which for fleets of dozens of
    devices costs minutes (so the suite's fleet properties skip the shrink phase except under
    the ``thorough`` profile).

    Raises:
        AssertionError: an invariant broke (every broken invariant listed).
    """
    result = run_fleet(devices, timing=timing, task_name=task_name, seed=seed)
    problems = result.problems()
    if not problems:
        return result
    lines = list(problems)
    failing = [d for d in devices if d.device_id in result.device_problems()]
    for device in failing[:alone]:
        again = run_fleet([device], timing=timing, task_name=task_name, seed=seed).problems()
        if again:
            lines.append(f"alone, {device!r} fails too ({len(again)} problem(s))")
        else:
            lines.append(f"alone, {device!r} behaves: it fails only beside the others")
    raise AssertionError(
        f"fleet invariants broken ({len(devices)} devices, seed {seed}):\n  " + "\n  ".join(lines)
    )


#: Transitions after which attempts count against max_retries again: a run that starts over, or
#: activation.
_RECOVERY_OVER = frozenset({Meaning.RUN_STARTED, Meaning.READY})


def _timed_records(
    events: Sequence[tuple[float, ManagerEvent]],
) -> list[tuple[float, TransitionRecord]]:
    """Each transition with its time (one transition may yield several events)."""
    out: list[tuple[float, TransitionRecord]] = []
    previous = None
    for at, event in events:
        if event.record is not previous:
            out.append((at, event.record))
        previous = event.record
    return out


def _timed_steps(events: Sequence[tuple[float, ManagerEvent]]) -> list[tuple[float, Step]]:
    """The path with the time of each step."""
    return [(at, Step(*record.step)) for at, record in _timed_records(events)]


def _path(events: Sequence[tuple[float, ManagerEvent]]) -> Path:
    """The steps of a device's events."""
    return tuple(step for _at, step in _timed_steps(events))


def _fmt(path: Path) -> str:
    return " → ".join(f"{s.trigger}:{s.dest}" for s in path) or "(nothing)"


def _applied_as_schedule(attempts: Sequence[Attempt]) -> list[Fault]:
    return [a.fault for a in attempts]


def explains(
    schedule: Sequence[Fault], then: Fault | None, attempts: Sequence[Attempt]
) -> str | None:
    """Why the attempts the server saw do not follow ``schedule`` (None if they do)."""
    entries = [normalize(f) for f in schedule]
    tail = normalize(then) if then is not None else Healthy()
    k = 0
    for entry in entries:
        if k >= len(attempts):
            return None
        if isinstance(entry, Outage):
            if not attempts[k].outage:
                return f"attempt {k} should have met {entry!r}"
            end = attempts[k].started_at + entry.seconds
            while k < len(attempts) and attempts[k].outage and attempts[k].started_at < end:
                k += 1
            if k < len(attempts) and attempts[k].started_at < end:
                return f"attempt {k} let through during the outage"
            continue
        if attempts[k].fault != entry or attempts[k].outage:
            return f"attempt {k} met {attempts[k].fault!r}, scheduled {entry!r}"
        k += 1
    for attempt in attempts[k:]:
        if attempt.fault != tail:
            return f"attempt {attempt.index} met {attempt.fault!r} after the schedule, not {tail!r}"
    return None


def expected_profile(
    device: FleetDevice, url: str, attempts: Sequence[Attempt], policy: RetryPolicy
) -> AgentProfile:
    """The configured profile with every telemetry answer the device received merged in.

    The merge is :func:`~.reference.merged_fields`, the harness's own restatement of the
    documented rule, never the production ``merge_system_info`` it checks.
    """
    os, capabilities, metadata = device.os, device.capabilities, dict(device.metadata)
    for attempt in attempts:
        fault = attempt.fault
        if (
            isinstance(fault, Healthy)
            and fault.register_delay < policy.registration_timeout
            and isinstance(fault.telemetry, Answer)
            and fault.telemetry.delay < policy.telemetry_timeout
            and fault.system_info is not None
        ):
            os, capabilities, metadata = reference.merged_fields(
                os, capabilities, metadata, fault.system_info
            )
    return attrs.evolve(device.profile(url), os=os, capabilities=capabilities, metadata=metadata)


def _lease_problems(outcome: DeviceOutcome, timing: Timing) -> list[str]:
    """A silent server is lost within its lease and not before; a dropped one at the drop."""
    out: list[str] = []
    name = f"{outcome.device!r}"
    attempt = -1
    for at, record in _timed_records(outcome.events):
        if Meaning.ATTEMPT in record.meanings:
            attempt += 1
        if Meaning.LOST not in record.meanings:
            continue
        if not 0 <= attempt < len(outcome.attempts):
            continue  # the path check reports the mismatch
        seen = outcome.attempts[attempt]
        fault = seen.fault
        idle = fault.idle if isinstance(fault, Healthy) else None
        if isinstance(idle, SilentAfterIdle) and seen.last_sent_at is not None:
            allowed = reference.lease_expiry(
                seen.heartbeats,
                seen.last_sent_at,
                interval=timing.heartbeat_interval,
                miss_limit=timing.miss_limit,
            )
            if not any(math.isclose(at, t, rel_tol=1e-9, abs_tol=1e-6) for t in allowed):
                want = " or ".join(f"t={t:g}" for t in allowed) or "never"
                out.append(
                    f"{name}: attempt {attempt}: the server fell silent at "
                    f"t={seen.last_sent_at:g} (heartbeats at "
                    f"{', '.join(f'{h:g}' for h in seen.heartbeats) or 'none'}); the lease "
                    f"({timing.heartbeat_interval:g}s × {timing.miss_limit}) should end at "
                    f"{want}, the device was lost at t={at:g}"
                )
        elif isinstance(idle, DropAfterIdle) and len(seen.heartbeats) >= idle.after_heartbeats:
            dropped = seen.heartbeats[idle.after_heartbeats - 1]
            if not math.isclose(at, dropped, rel_tol=1e-9, abs_tol=1e-6):
                out.append(
                    f"{name}: attempt {attempt}: the server dropped the socket at "
                    f"t={dropped:g}, the device noticed at t={at:g}"
                )
    return out


def _device_problems(outcome: DeviceOutcome, timing: Timing) -> list[str]:
    device = outcome.device
    name = f"{device!r}"
    out: list[str] = []
    why = explains(device.schedule, device.then, outcome.attempts)
    if why:
        out.append(f"{name}: the server's log does not follow the schedule: {why}")
    try:
        expected = expected_path(
            _applied_as_schedule(outcome.attempts),
            max_retries=device.max_retries,
            policy=timing,
            then=device.then,
            times=[at for at, _step in _timed_steps(outcome.events)],
            retries=device.retries,
        )
    except ValueError as exc:
        out.append(f"{name}: no expected path: {exc}")
        expected = ()
    if expected and outcome.path != expected:
        out.append(
            f"{name}:\n      expected path {_fmt(expected)}"
            f"\n      actual path   {_fmt(outcome.path)}"
        )
    status = outcome.profile.status
    if status not in SETTLED:
        out.append(f"{name}: ended {status}, neither idle nor failed")
    # The event stream agrees with the registry.
    if outcome.events:
        last = outcome.events[-1][1]
        if last.record.dest is not status:
            out.append(f"{name}: last event says {last.record.dest}, registry says {status}")
        if attrs.evolve(last.profile, last_heartbeat=None) != attrs.evolve(
            outcome.profile, last_heartbeat=None
        ):
            out.append(f"{name}: the last event's profile differs from the registry's")
    # Attempts never exceed max_retries (except while recovering under a recovery window,
    # where attempts do not spend it).
    limit = device.max_retries
    counted, recovering = [], False
    for _at, event in outcome.events:
        meanings = event.meanings
        if Meaning.LOST in meanings:
            recovering = timing.recovery_window > 0
        elif meanings & _RECOVERY_OVER:
            recovering = False
        if not recovering:
            counted.append(event.profile.connection_attempts)
    most = max(counted, default=0)
    if limit is not None and most > limit:
        out.append(f"{name}: made {most} consecutive attempts, max_retries={limit}")
    # The final profile.
    want = expected_profile(device, outcome.url, outcome.attempts, timing)
    got = outcome.profile
    for field in ("os", "capabilities", "metadata", "max_retries", "current_task_id"):
        if getattr(got, field) != getattr(want, field):
            out.append(
                f"{name}: {field} is {getattr(got, field)!r}, expected {getattr(want, field)!r}"
            )
    if status is DeviceStatus.IDLE and got.connection_attempts != 0:
        out.append(f"{name}: idle with connection_attempts={got.connection_attempts}")
    if expected and expected[-1].dest == DeviceStatus.FAILED:
        out += _reason_problems(name, expected, outcome.failure_reason or "", timing)
    out += _backoff_problems(outcome, timing)
    out += _lease_problems(outcome, timing)
    return out


def _reason_problems(name: str, expected: Path, reason: str, timing: Timing) -> list[str]:
    """A FAILED device's reason names what ended it: the rejection, the retries spent, or the
    recovery window that passed."""
    last = expected[-1].trigger
    retried = [i for i, s in enumerate(expected) if s.trigger == Trigger.RETRY]
    run = expected[retried[-1] :] if retried else expected  # the owner's retry starts over
    recovering = timing.recovery_window > 0 and any(s.source in ACTIVE for s in run)
    window = reason.startswith("recovery window of ")
    gave_up = reason.startswith("gave up after ")
    if last == Trigger.REGISTRATION_ANSWERED:
        # A final refusal names the rejection; a transient one (the reference's texts while
        # recovering) that used the last retry is a failed attempt: "gave up after N ...".
        final = reason.startswith("registration rejected: ")
        text = reason.partition(" attempts: ")[2]
        exhausted = gave_up and reference.transient_refusal(text)
        ok = final or exhausted or (recovering and window)
    elif last in (Trigger.CONNECTION_FAILED, Trigger.TIMED_OUT, Trigger.PROTOCOL_VIOLATION):
        ok = window if recovering else gave_up
    else:
        ok = bool(reason)
    if ok:
        return []
    return [f"{name}: failure_reason {reason!r} does not say why it failed ({last})"]


def _reference_waits(outcome: DeviceOutcome, timing: Timing) -> list[reference.Wait]:
    """The wait each backoff of ``outcome`` must be, by the reference, along its timed path."""
    steps = _timed_steps(outcome.events)
    return reference.backoff_waits(
        [(at, s.trigger, s.source, s.dest) for at, s in steps],
        reconnect_delay=timing.reconnect_delay,
        backoff_cap=timing.backoff_cap,
        rejoin_delay=timing.rejoin_delay,
        recovery_window=timing.recovery_window,
        stability_window=timing.stability_window,
        jitter_floor=timing.jitter_floor,
        retry_after=[_retry_after(outcome.attempts, at, step) for at, step in steps],
    )


def _retry_after(attempts: Sequence[Attempt], at: float, step: Step) -> float | None:
    """The Retry-After the server sent with the refusal ``step`` records, if any: the attempt
    refused at ``at`` met ``Busy``."""
    if step.trigger != Trigger.CONNECTION_FAILED or step.source != DeviceStatus.CONNECTING:
        return None
    started = [a for a in attempts if a.started_at <= at]
    fault = started[-1].fault if started else None
    return fault.retry_after if isinstance(fault, Busy) else None


def _backoff_problems(outcome: DeviceOutcome, timing: Timing) -> list[str]:
    """Each wait drawn within the reference's bounds, and waited out exactly as drawn (or up
    to the recovery window's end, if that came first)."""
    name = f"{outcome.device!r}"
    out: list[str] = []
    waits = _reference_waits(outcome, timing)
    if len(waits) != len(outcome.backoffs):
        return [f"{name}: {len(outcome.backoffs)} backoff(s) recorded, the path has {len(waits)}"]
    for want, b in zip(waits, outcome.backoffs, strict=True):
        low, high = want.low, want.high
        drawn_as_documented = math.isclose(b.low, low, rel_tol=1e-9, abs_tol=1e-9) and (
            math.isclose(b.high, high, rel_tol=1e-9, abs_tol=1e-9)
        )
        what = f"failure {want.failures}" if want.failures else "a transient refusal"
        if not drawn_as_documented or not low - 1e-9 <= b.delay <= high + 1e-9:
            out.append(
                f"{name}: backoff after {what} at t={b.at:g} was {b.delay:.3f}s, drawn from "
                f"{b.low:.3f}–{b.high:.3f}; the documented bounds are {low:.3f}–{high:.3f}"
            )
        wait = want.waited(b.delay, b.at)
        if b.waited is not None and not math.isclose(b.waited, wait, abs_tol=1e-6):
            cut = "" if want.until is None else f", the recovery window ending at {want.until:g}"
            cut += f", Retry-After {want.floor:g}s" if want.floor else ""
            out.append(
                f"{name}: drew a {b.delay:.3f}s backoff at t={b.at:g}{cut}, "
                f"so should have waited {wait:.3f}s, waited {b.waited:.3f}s"
            )
    return out


def _jitter_problems(outcomes: Iterable[DeviceOutcome], timing: Timing) -> list[str]:
    """Devices entering BACKOFF at the same instant, after as many failures, must not all
    draw the same delay."""
    groups: dict[tuple[float, int], list[BackoffRecord]] = defaultdict(list)
    for outcome in outcomes:
        waits = _reference_waits(outcome, timing)
        for want, b in zip(waits, outcome.backoffs, strict=False):
            groups[(b.at, want.failures)].append(b)
    out = []
    for (at, failures), group in sorted(groups.items()):
        if len(group) < 2 or group[0].high <= group[0].low:
            continue  # a single device, or no room to jitter (jitter_floor 1)
        if len({b.delay for b in group}) == 1:
            names = ", ".join(sorted(b.device_id for b in group))
            out.append(
                f"devices {names} failed together at t={at:g} (failure {failures}) and all "
                f"retry after {group[0].delay:g}s: the backoff is not jittered"
            )
    return out


@contextlib.contextmanager
def seeded_scheduler(seed: int) -> Iterator[None]:
    """Seed trio's scheduler (which shuffles runnable tasks) for a reproducible run.

    Trio randomises the order in which runnable tasks run, on purpose; under hypothesis it does
    so deterministically. This pins it to ``seed`` for the block and restores it afterwards.
    It reaches into ``trio._core._run._r``, so it is a test helper only (and a no-op if a
    future trio drops that attribute).
    """
    from trio._core import _run

    source = getattr(_run, "_r", None)
    if not isinstance(source, random.Random):
        yield
        return
    state = source.getstate()
    source.seed(seed)
    try:
        yield
    finally:
        source.setstate(state)


def run_under_mock_clock(async_fn: Callable[..., Awaitable[T]], *args: Any, seed: int = 0) -> T:
    """``trio.run(async_fn, *args)`` under ``MockClock(autojump_threshold=0)``, scheduler seeded.

    Virtual time jumps straight to the next deadline whenever every task is blocked, so hours
    of timeouts, backoffs and heartbeats take milliseconds.
    """
    with seeded_scheduler(seed):
        return trio.run(async_fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


def run_fleet(
    devices: Sequence[FleetDevice],
    *,
    timing: Timing | None = None,
    task_name: str = "stellate",
    seed: int = 0,
    grace: float | None = None,
    max_virtual_time: float = 1e7,
    max_events: int = 20_000,
) -> FleetResult:
    """Run ``devices`` against a fake server under MockClock until all settle; check nothing.

    Args:
        devices: the fleet (unique ids).
        timing: the manager's timing (default :data:`HARNESS_TIMING`).
        task_name: the manager's task name.
        seed: seeds trio's scheduler and the backoff's random source.
        grace: virtual seconds to keep running after everything settled, to see that it
            stays so (default: one heartbeat lease plus one interval).
        max_virtual_time: give up (``TooSlowError``) if the fleet has not settled by then.
        max_events: give up if one device makes this many transitions: a loop that never
            waits (virtual time stands still, so ``max_virtual_time`` cannot catch it).

    Returns:
        A :class:`FleetResult`; call ``.problems()`` or ``.check()`` on it.

    Raises:
        ValueError: two devices share an id.
        trio.TooSlowError: the fleet did not settle within ``max_virtual_time``.
        RuntimeError: a device made ``max_events`` transitions (the message names it).
    """
    timing, task_name = _harness_settings(timing, task_name)
    ids = [d.device_id for d in devices]
    if len(set(ids)) != len(ids):
        raise ValueError("device ids must be unique")
    if grace is None:
        grace = timing.heartbeat_interval * (timing.miss_limit + 1)
    started = time.perf_counter()
    result = run_under_mock_clock(
        _fleet,
        list(devices),
        timing,
        task_name,
        seed,
        grace,
        max_virtual_time,
        max_events,
        seed=seed,
    )
    result.real_time = time.perf_counter() - started
    return result


async def _fleet(
    devices: list[FleetDevice],
    timing: Timing,
    task_name: str,
    seed: int,
    grace: float,
    max_virtual_time: float,
    max_events: int,
) -> FleetResult:
    rng = RecordingRandom(seed)
    events: dict[str, list[tuple[float, ManagerEvent]]] = {d.device_id: [] for d in devices}
    backoffs: dict[str, list[BackoffRecord]] = {d.device_id: [] for d in devices}
    open_backoff: dict[str, int] = {}
    draws_used = 0
    all_settled = trio.Event()

    async with MemoryNetwork() as network:
        fake = FakeAgentServer(network)
        urls = {d.device_id: fake.script(d.device_id, d.schedule, then=d.then) for d in devices}
        manager = ConstellationDeviceManager(
            # strict: a bug in a device's task fails the run instead of that device only
            task_name,
            timing=timing,
            connector=fake.connector,
            rng=rng,
            strict=True,
        )
        baseline = trio.lowlevel.current_statistics().tasks_living

        unsettled = {d.device_id for d in devices}
        #: The owner's retries left for each device (``FleetDevice.retries``).
        retries = {d.device_id: d.retries for d in devices}

        def update(device_id: str) -> None:
            # A device's settledness changes only with its own transitions: the server marks
            # a connection it will keep healthy before the device can reach IDLE on it.
            state = manager.device_registry.lifecycle(device_id).state
            if (state is DeviceStatus.FAILED and not retries[device_id]) or (
                state is DeviceStatus.IDLE and fake.settled(device_id)
            ):
                unsettled.discard(device_id)
            else:
                unsettled.add(device_id)

        async def watch(
            channel: trio.MemoryReceiveChannel[ManagerEvent], owner: trio.Nursery
        ) -> None:
            nonlocal draws_used
            async with channel:
                async for event in channel:
                    now = trio.current_time()
                    device_id = event.device_id
                    events[device_id].append((now, event))
                    if len(events[device_id]) > max_events:
                        raise RuntimeError(
                            f"device {device_id!r} made {max_events} transitions by "
                            f"t={now:g}s without settling: a reconnect loop that never waits?"
                        )
                    if device_id in open_backoff:  # its next transition leaves the wait
                        i = open_backoff.pop(device_id)
                        b = backoffs[device_id][i]
                        backoffs[device_id][i] = attrs.evolve(b, waited=now - b.at)
                    if Meaning.BACKS_OFF in event.meanings:
                        low, high, value = (
                            rng.draws[draws_used]
                            if draws_used < len(rng.draws)
                            else (math.nan,) * 3
                        )
                        draws_used += 1
                        failures = event.profile.connection_attempts
                        backoffs[device_id].append(
                            BackoffRecord(device_id, now, failures, low, high, value, None)
                        )
                        open_backoff[device_id] = len(backoffs[device_id]) - 1
                    update(device_id)
                    if Meaning.GAVE_UP in event.meanings and retries[device_id]:
                        retries[device_id] -= 1  # the owner retries it (a fresh run)
                        owner.start_soon(manager.retry_device, device_id)
                    if not unsettled:
                        all_settled.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            nursery.start_soon(watch, manager.subscribe(), nursery)
            for d in devices:
                manager.add_device(d.profile(urls[d.device_id]))
            with trio.fail_after(max_virtual_time):
                await all_settled.wait()
            settled_at = trio.current_time()
            await trio.sleep(grace)
            final = {d.device_id: manager.device_registry.lifecycle(d.device_id) for d in devices}
            outcomes = {
                d.device_id: DeviceOutcome(
                    device=d,
                    url=urls[d.device_id],
                    path=_path(events[d.device_id]),
                    profile=final[d.device_id].profile,
                    failure_reason=final[d.device_id].failure_reason,
                    attempts=fake.applied(d.device_id),
                    backoffs=backoffs[d.device_id],
                    events=events[d.device_id],
                )
                for d in devices
            }
            virtual_time = trio.current_time()
            nursery.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        tasks_left = trio.lowlevel.current_statistics().tasks_living - baseline
        return FleetResult(
            devices=outcomes,
            timing=timing,
            seed=seed,
            settled_at=settled_at,
            virtual_time=virtual_time,
            real_time=0.0,
            violations=list(fake.violations),
            tasks_left=max(tasks_left, 0),
            sockets_left=fake.connector.open_connections,
            handlers_left=fake.live_handlers,
            changed_in_grace=sorted(
                device_id
                for device_id, seen in events.items()
                if any(at > settled_at for at, _e in seen)
            ),
            draws_unmatched=len(rng.draws) - draws_used,
        )
