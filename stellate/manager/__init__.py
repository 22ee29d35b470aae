"""The constellation side: a fleet of devices, one trio task each, in one nursery.

* :mod:`.constellation` — ``ConstellationDeviceManager`` and ``open_constellation``;
* :mod:`.registry` — Galaxy's ``DeviceRegistry`` (device id → lifecycle);
* :mod:`.events` — what a transition means to a watcher (``EventKind``, ``ManagerEvent``);
* :mod:`.runner` — one device's task: performs its lifecycle's effects, feeds back events;
* :mod:`.alarms` — the fleet's one timer (deadlines, heartbeats);
* :mod:`.stats` — counts and durations over the event stream (``manager.stats()``);
* :mod:`.metrics` — the fleet page, ``/api/fleet`` and ``/metrics`` on the manager's port;
* :mod:`.control` — the control API on that port (retry, disconnect, reload);
* :mod:`.reload` — what a reload of devices.yaml changes (``ReloadReport``).
"""

from __future__ import annotations

from .constellation import ConstellationDeviceManager, open_constellation
from .events import EventKind, ManagerEvent
from .registry import DeviceFailed, DeviceOwnedElsewhere, DeviceRegistry, UnknownDevice
from .reload import ReloadRefused, ReloadReport

__all__ = [
    "ConstellationDeviceManager",
    "DeviceFailed",
    "DeviceOwnedElsewhere",
    "DeviceRegistry",
    "EventKind",
    "ManagerEvent",
    "ReloadRefused",
    "ReloadReport",
    "UnknownDevice",
    "open_constellation",
]
