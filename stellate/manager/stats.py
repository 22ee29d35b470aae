"""The manager's figures: what its devices went through, counted as it happens.

:class:`FleetObserver` watches the manager's events synchronously (``manager.add_observer``),
so it stamps each transition with the moment it fired. Per event it does a few dictionary
updates and, on leaving a state, one bucket search: nothing per heartbeat, nothing per frame.
``manager.stats()`` reads it into a :class:`FleetStats`; ``stellate.manager.metrics`` turns
it into Prometheus metrics and the fleet page's JSON.

What counts as what comes from the table, never from a list here: the states are
``DeviceStatus``, groups of them its tags (``Tag``), and what a transition means (an attempt,
ready, lost, failed, stopped) the row's ``Meaning``. :class:`StatusCounts` is the one place
devices are counted per status: the stats, the CLI's display and ``stellate up`` all read it.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final

import attrs
import trio

from ..fsm import DeviceStatus, Meaning, Tag, tagged
from ..fsm.lifecycle import DeviceLifecycle
from .events import EventKind, ManagerEvent

__all__ = ["DURATION_BUCKETS", "Durations", "FleetObserver", "FleetStats", "StatusCounts"]

#: Histogram bounds (seconds) for time in a state and time to IDLE: loopback handshakes take
#: milliseconds, a WAN registration a second or two, backoffs and recoveries minutes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)


@attrs.define
class Durations:
    """A histogram of durations: counts per bucket (``le`` bounds, cumulative when read)."""

    bounds: tuple[float, ...] = DURATION_BUCKETS
    counts: list[int] = attrs.field()
    total: float = 0.0
    count: int = 0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)  # the last one is +Inf

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` for each bucket, ending with ``+Inf``."""
        running, out = 0, []
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


#: Each tag's states, looked up once.
_GROUPS: Final[Mapping[Tag, frozenset[DeviceStatus]]] = {tag: tagged(tag) for tag in Tag}


class StatusCounts(Mapping[DeviceStatus, int]):
    """Devices per status (every status listed, zeros included) and per group of states.

    Args:
        statuses: one status per device counted.
    """

    __slots__ = ("_counts",)

    def __init__(self, statuses: Iterable[DeviceStatus] = ()) -> None:
        self._counts = dict.fromkeys(DeviceStatus, 0)
        for status in statuses:
            self._counts[status] += 1

    def __getitem__(self, status: DeviceStatus) -> int:
        return self._counts[status]

    def __iter__(self) -> Iterator[DeviceStatus]:
        return iter(self._counts)

    def __len__(self) -> int:
        return len(self._counts)

    def __repr__(self) -> str:
        return f"StatusCounts({self.text() or 'no devices'})"

    @property
    def total(self) -> int:
        """Devices counted."""
        return sum(self._counts.values())

    def tagged(self, tag: Tag) -> int:
        """Devices in the states the table tags ``tag`` (``Tag.SETTLED``: idle or failed)."""
        return sum(self._counts[status] for status in _GROUPS[tag])

    def move(self, source: DeviceStatus, dest: DeviceStatus) -> None:
        """One device went from ``source`` to ``dest`` (kept up to date per event)."""
        self._counts[source] -= 1
        self._counts[dest] += 1

    def text(self) -> str:
        """``idle=3  failed=1``: the statuses that have devices, in the table's order."""
        return "  ".join(f"{status.value}={n}" for status, n in self._counts.items() if n)


@attrs.frozen
class FleetStats:
    """A moment of the fleet, as ``manager.stats()`` returns it.

    Attributes:
        by_status: devices in each status now (every status listed, zeros included), and in
            each group of states (``by_status.tagged(Tag.SETTLED)``).
        attempts: connection attempts started since the manager started.
        losses: activated devices that lost their server (a socket dropped, a lease expired).
        recoveries: devices that reached IDLE again after a loss.
        failures: devices that ended FAILED, by the trigger of the row that failed them
            (``connection_failed``, ``timed_out``, ``registration_answered``, ...).
    """

    by_status: StatusCounts
    attempts: int = 0
    losses: int = 0
    recoveries: int = 0
    failures: Mapping[str, int] = attrs.field(factory=dict)

    @property
    def devices(self) -> int:
        return self.by_status.total

    def to_dict(self) -> dict[str, object]:
        return {
            "devices": self.devices,
            "by_status": {status.value: n for status, n in self.by_status.items()},
            "attempts": self.attempts,
            "losses": self.losses,
            "recoveries": self.recoveries,
            "failures": dict(self.failures),
        }


class FleetObserver:
    """Counts and times the manager's events; read with :meth:`snapshot`.

    Args:
        clock: the time of an event (default ``trio.current_time``: the manager's clock, so
            a ``MockClock`` drives it in tests).
    """

    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        self.attempts = 0
        self.losses = 0
        self.recoveries = 0
        self.failures: Counter[str] = Counter()
        #: Seconds spent in each state, observed when a device leaves it.
        self.time_in_state: dict[DeviceStatus, Durations] = {s: Durations() for s in DeviceStatus}
        #: Seconds from the start of a run to IDLE, by how it started: ``connect`` (the
        #: owner's connect or retry) or ``recovery`` (after a loss).
        self.time_to_idle: dict[str, Durations] = {"connect": Durations(), "recovery": Durations()}
        self._entered: dict[str, float] = {}
        self._run_started: dict[str, tuple[str, float]] = {}

    def observe(self, event: ManagerEvent) -> None:
        """One manager event (called synchronously as the transition fires)."""
        now = self._clock()
        record, device = event.record, event.device_id
        if event.kind is EventKind.TELEMETRY_MERGED:
            return  # the same record comes again as READY
        meanings = record.meanings
        entered = self._entered.get(device)
        if entered is not None:  # every record is a change of state (internal rows are not)
            self.time_in_state[record.source].observe(now - entered)
        self._entered[device] = now
        if Meaning.ATTEMPT in meanings:
            self.attempts += 1
            # A run starts with the first attempt after rest (a failed attempt's backoff
            # and the next attempt belong to the same run).
            self._run_started.setdefault(device, ("connect", now))
        elif Meaning.STOPPED in meanings:
            self._run_started.pop(device, None)
        if event.kind is EventKind.CONNECTION_LOST:
            self.losses += 1
            self._run_started[device] = ("recovery", now)
        elif event.kind is EventKind.READY:
            started = self._run_started.pop(device, None)
            if started is not None:
                how, at = started
                self.time_to_idle[how].observe(now - at)
                self.recoveries += how == "recovery"
        elif event.kind is EventKind.FAILED:
            self.failures[record.trigger.value] += 1
            self._run_started.pop(device, None)

    def time_in_current_state(self, device_id: str) -> float | None:
        """Seconds since the device's last transition (None: none seen yet)."""
        entered = self._entered.get(device_id)
        return None if entered is None else self._clock() - entered

    def snapshot(self, lifecycles: Iterable[DeviceLifecycle]) -> FleetStats:
        """The figures now, with the statuses of ``lifecycles`` (the manager's devices)."""
        present = set()
        statuses = []
        for lifecycle in lifecycles:
            statuses.append(lifecycle.state)
            present.add(lifecycle.device_id)
        by_status = StatusCounts(statuses)
        for gone in self._entered.keys() - present:  # removed devices: forget their clocks
            del self._entered[gone]
            self._run_started.pop(gone, None)
        return FleetStats(
            by_status=by_status,
            attempts=self.attempts,
            losses=self.losses,
            recoveries=self.recoveries,
            failures=dict(self.failures),
        )
