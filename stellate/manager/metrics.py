"""The manager's figures for people and for Prometheus: ``/metrics``, ``/api/fleet`` and ``/``.

``stellate up --metrics-port N`` serves them with :func:`serve_fleet` (127.0.0.1 by default):

* ``/metrics`` — :class:`ManagerCollector`: devices by status, attempts, losses, recoveries,
  failures by the row that failed them, and histograms of the time spent in each state and of
  the time from the start of a run to IDLE (``prometheus_client``'s types and exposition);
* ``/api/fleet`` — :func:`fleet_json`: every device's profile (URLs redacted) with its status,
  attempts, last error and time in state, the counts, and the transition table itself;
* ``/`` — the fleet page (``stellate/web/fleet.html``): one self-contained HTML file that
  draws the state diagram from the table in ``/api/fleet`` with the live count in each state,
  and a table of devices, refreshed every second.

Everything is read from the manager when asked (``manager.stats()``, its ``FleetObserver``,
its lifecycles): serving this adds nothing to a device's path. An app embedding the manager
can register :class:`ManagerCollector` in its own registry instead of serving it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from typing import Any, NoReturn

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..adapters.listener import is_loopback_host
from ..adapters.ws_server import (
    HttpActions,
    HttpRequest,
    HttpResponse,
    HttpRoute,
    ListenerStats,
    serve_http,
)
from ..fsm import AgentProfile, DeviceStatus, Meaning, rows
from ..fsm.states import INITIAL
from ..text.redact import redact_url, safe_json
from .constellation import ConstellationDeviceManager
from .sharing import SharedFleet
from .stats import Durations

__all__ = [
    "FLEET_DESCRIPTORS",
    "MAX_FLEET_CONNECTIONS",
    "PREFIX",
    "ManagerCollector",
    "fleet_json",
    "fleet_page",
    "fleet_routes",
    "profile_json",
    "serve_fleet",
]

#: Every metric of the manager starts with this.
PREFIX = "stellate_manager"
#: Connections the fleet port holds at once (a page, a scraper, a curl or two); more wait in
#: the backlog. A side door must not take the descriptors the devices' sockets need.
MAX_FLEET_CONNECTIONS = 16
#: Descriptors the fleet port may hold: its connections and its listening sockets (IPv4, IPv6).
FLEET_DESCRIPTORS = MAX_FLEET_CONNECTIONS + 2


class ManagerCollector:
    """A ``prometheus_client`` collector reading one :class:`ConstellationDeviceManager`."""

    def __init__(self, manager: ConstellationDeviceManager, prefix: str = PREFIX) -> None:
        self._manager = manager
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        manager, p = self._manager, self._prefix
        stats = manager.stats()
        devices = GaugeMetricFamily(f"{p}_devices", "Devices in each status.", labels=["status"])
        for status, count in stats.by_status.items():
            devices.add_metric([status.value], count)
        yield devices
        yield CounterMetricFamily(
            f"{p}_connection_attempts", "Connection attempts started.", value=stats.attempts
        )
        yield CounterMetricFamily(
            f"{p}_losses",
            "Activated devices that lost their server (socket dropped, lease expired).",
            value=stats.losses,
        )
        yield CounterMetricFamily(
            f"{p}_recoveries",
            "Devices that reached IDLE again after a loss.",
            value=stats.recoveries,
        )
        failures = CounterMetricFamily(
            f"{p}_failures",
            "Devices that ended FAILED, by the trigger of the row that failed them.",
            labels=["trigger"],
        )
        for trigger in _failing_triggers() | set(stats.failures):
            failures.add_metric([trigger], stats.failures.get(trigger, 0))
        yield failures
        observer = manager.fleet
        yield _histogram(
            f"{p}_state_seconds",
            "Seconds spent in a state, observed when a device leaves it.",
            "state",
            {status.value: observer.time_in_state[status] for status in DeviceStatus},
        )
        yield _histogram(
            f"{p}_time_to_idle_seconds",
            "Seconds from the start of a run to IDLE: after the owner's connect or retry "
            "(start=connect), or after a loss (start=recovery).",
            "start",
            observer.time_to_idle,
        )
        share = manager.fleet_share
        if share is not None:
            yield from _shared_fleet(share, p)


def _shared_fleet(share: SharedFleet, p: str) -> Iterator[Metric]:
    """A fleet shared through a store: this manager's part, and the whole fleet per manager
    (as the store held it at the last read of its view)."""
    yield GaugeMetricFamily(
        f"{p}_owned_units",
        "Units (hash slots of devices) this manager acts as the owner of.",
        value=share.owned_units(),
    )
    yield CounterMetricFamily(
        f"{p}_devices_adopted",
        "Devices this manager took over (from a snapshot, or fresh).",
        value=share.adopted,
    )
    yield CounterMetricFamily(
        f"{p}_devices_released",
        "Devices this manager handed over or stopped running (their unit lost).",
        value=share.released,
    )
    yield GaugeMetricFamily(
        f"{p}_unreadable_snapshots",
        "Devices whose snapshot could not be read (each started fresh).",
        value=len(share.unreadable),
    )
    report = share.report()
    if report is None:
        return
    yield GaugeMetricFamily(
        f"{p}_fleet_managers", "Live managers of the shared fleet.", value=len(report.managers)
    )
    fleet = GaugeMetricFamily(
        f"{p}_fleet_devices",
        "Devices of the shared fleet by owner and status, as the store holds them "
        "(owner empty: nobody holds the device's unit now).",
        labels=["owner", "status"],
    )
    counts = Counter((d.owner or "", d.status or "unreadable") for d in report.devices)
    for manager in report.managers:  # every live manager listed, idle count included
        counts.setdefault((manager.id, DeviceStatus.IDLE.value), 0)
    for (owner, status), n in sorted(counts.items()):
        fleet.add_metric([owner, status], n)
    yield fleet


def _failing_triggers() -> set[str]:
    """Every trigger with a row that gives up: the label values of the failures counter."""
    return {row.trigger.value for row in rows() if Meaning.GAVE_UP in row.meanings}


def _histogram(
    name: str, documentation: str, label: str, series: dict[str, Durations]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=[label])
    for value, durations in series.items():
        buckets = [(_bound(le), float(n)) for le, n in durations.cumulative()]
        family.add_metric([value], buckets, sum_value=durations.total)
    return family


def _bound(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(le)


#: ``redact_url`` remembered per URL: a device's URL rarely changes, and the page asks for every
#: device's every second (parsing each again was most of an ``/api/fleet`` answer's cost).
_redacted_url = functools.lru_cache(maxsize=16384)(redact_url)


def profile_json(profile: AgentProfile) -> dict[str, Any]:
    """A profile's JSON form with Galaxy's keys, secrets in its URL redacted."""
    item = profile.to_dict()
    item["server_url"] = _redacted_url(profile.server_url)
    return item


def fleet_json(manager: ConstellationDeviceManager) -> dict[str, Any]:
    """What the fleet page shows: the table, the counts, and one entry per device.

    Each device says its ``owner``: the manager running it (None without a fleet store). With
    one (``manager.fleet_share``), the devices other managers run are listed too, as the store
    holds them (their status as their owner last wrote it; no profile, attempts or time in
    state), and ``store`` names the store, this manager and every live one; ``stats`` stays
    this manager's own.
    """
    observer = manager.fleet
    share = manager.fleet_share
    here = share.manager_id if share is not None else None
    devices = []
    for lifecycle in manager.device_registry.lifecycles():
        profile = lifecycle.profile
        in_state = observer.time_in_current_state(profile.device_id)
        devices.append(
            {
                "device_id": profile.device_id,
                "status": lifecycle.state.value,
                "owner": here,
                "attempts": profile.connection_attempts,
                "last_error": lifecycle.last_error,
                "failure_reason": lifecycle.failure_reason,
                "time_in_state": None if in_state is None else round(in_state, 3),
                "next_attempt_in": _rounded(manager.next_attempt_in(profile.device_id)),
                "draining": lifecycle.drain_requested,
                "profile": profile_json(profile),
            }
        )
    store = None
    if share is not None:
        report = share.report()
        listed = {device["device_id"] for device in devices}
        rows = {row.device_id: row for row in report.devices} if report is not None else {}
        for device_id in share.devices:
            if device_id in listed:
                continue
            row = rows.get(device_id)
            devices.append(
                {
                    "device_id": device_id,
                    "status": None if row is None else row.status,
                    "owner": None if row is None else row.owner,
                    "attempts": None,
                    "last_error": None if row is None else row.last_error,
                    "failure_reason": None if row is None else row.failure_reason or row.problem,
                    "time_in_state": None,
                    "next_attempt_in": None,
                    "draining": False,
                    "profile": None,
                }
            )
        store = {
            "name": share.store.name,
            "manager_id": here,
            "managers": [] if report is None else [m.to_json() for m in report.managers],
            "unreadable": dict(share.unreadable),
        }
    return {
        "task_name": manager.task_name,
        "states": [status.value for status in DeviceStatus],
        "initial": INITIAL,
        "transitions": [dict(row) for row in _table_rows()],
        "stats": manager.stats().to_dict(),
        "store": store,
        "devices": devices,
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


@functools.cache
def _table_rows() -> list[dict[str, object]]:
    """The transition table as the page draws it (built once: the table never changes)."""
    return [
        {
            "trigger": row.trigger.value,
            "source": row.source.value,
            "dest": row.dest.value,
            "guard": row.guard,
            "meaning": sorted(m.value for m in row.meanings),
            "serves": sorted(c.value for c in row.serves),
        }
        for row in rows()
    ]


def fleet_page() -> bytes:
    """The fleet page: one HTML file, no external assets."""
    return resources.files("stellate").joinpath("web/fleet.html").read_bytes()


def fleet_routes(manager: ConstellationDeviceManager) -> dict[str, HttpRoute]:
    """``/metrics``, ``/api/fleet`` and ``/`` for ``manager``."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ManagerCollector(manager))
    page = fleet_page()

    def metrics(_request: HttpRequest) -> HttpResponse:
        return HttpResponse(generate_latest(registry), CONTENT_TYPE_LATEST)

    def fleet(_request: HttpRequest) -> HttpResponse:
        return HttpResponse(safe_json(fleet_json(manager)).encode())

    def index(_request: HttpRequest) -> HttpResponse:
        return HttpResponse(page, "text/html; charset=utf-8")

    return {"/metrics": metrics, "/api/fleet": fleet, "/": index}


async def serve_fleet(
    manager: ConstellationDeviceManager,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    api_key: str | None = None,
    actions: HttpActions | None = None,
    stats: ListenerStats | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve the manager's ``/metrics``, ``/api/fleet`` and ``/`` until cancelled, and the
    control API's ``actions`` (``stellate.manager.control.control_actions``) when given.

    ``port = await nursery.start(serve_fleet, manager, "127.0.0.1", 0)``. On a loopback
    address every request addressed to a loopback name is answered; elsewhere only those
    carrying ``api_key`` (``X-API-Key`` or ``Authorization: Bearer``), and none when there is
    no key; the actions need their own key wherever the port listens. At most
    :data:`MAX_FLEET_CONNECTIONS` connections are held at once.
    """
    await serve_http(
        fleet_routes(manager),
        host,
        port,
        api_key=None if is_loopback_host(host) else api_key,
        actions=actions,
        http_open=is_loopback_host(host),
        max_open=MAX_FLEET_CONNECTIONS,
        stats=stats,
        task_status=task_status,
    )
