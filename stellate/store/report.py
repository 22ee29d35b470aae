"""The whole fleet as the store holds it, in rows people read: every manager, every device.

``stellate status --store URL`` prints it, and a manager's fleet page, ``/api/fleet`` and
``/metrics`` show it (``stellate.manager.fleet_share`` keeps one, refreshed while someone
looks). Pure: it reads a :class:`~stellate.store.port.FleetView` and nothing else.

A device's owner is the manager holding the lease of its unit (``ownership.unit_of``) while that
lease is live: a device whose unit nobody holds (its owner died, its lease ran out, nobody has
claimed it yet) has no owner, and its status is the one its last owner wrote. A snapshot that
cannot be read is a row with its ``problem`` and no status.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from .ownership import unit_of
from .port import FleetView
from .snapshot import UnreadableSnapshot, decode

__all__ = ["DeviceRow", "FleetReport", "ManagerRow", "fleet_report"]


@attrs.frozen
class ManagerRow:
    """A live manager."""

    id: str
    #: Devices whose unit it holds (among the devices with a snapshot).
    devices: int
    #: Units (hash slots) it holds.
    units: int
    #: Seconds since it last renewed its membership (the store's clock).
    last_renewal: float
    #: Seconds until its membership ends unless renewed.
    expires_in: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "devices": self.devices,
            "units": self.units,
            "last_renewal": round(self.last_renewal, 3),
            "expires_in": round(self.expires_in, 3),
        }


@attrs.frozen
class DeviceRow:
    """One device as its last owner left it, and who owns it now."""

    device_id: str
    #: Its status as its owner last wrote it (None: the snapshot cannot be read).
    status: str | None
    #: The manager holding its unit's lease (None: nobody does now).
    owner: str | None
    failure_reason: str | None = None
    last_error: str | None = None
    #: Why the snapshot cannot be read (the device starts fresh on its next owner).
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "status": self.status,
            "owner": self.owner,
            "failure_reason": self.failure_reason,
            "last_error": self.last_error,
            "problem": self.problem,
        }


@attrs.frozen
class FleetReport:
    """Every live manager and every device with a snapshot, sorted by id."""

    managers: tuple[ManagerRow, ...]
    devices: tuple[DeviceRow, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"managers": [{"id": ...}, ...], "devices": [{"device_id": ...}, ...]}``."""
        return {
            "managers": [manager.to_json() for manager in self.managers],
            "devices": [device.to_json() for device in self.devices],
        }


def fleet_report(view: FleetView) -> FleetReport:
    """The rows of ``view``."""
    owner_of_unit = {unit: holder.lease.owner for unit, holder in view.holders.items()}
    devices = []
    for device_id, text in sorted(view.snapshots.items()):
        owner = owner_of_unit.get(unit_of(device_id))
        try:
            snapshot = decode(text, device_id)
        except UnreadableSnapshot as exc:
            devices.append(DeviceRow(device_id, None, owner, problem=exc.why))
            continue
        devices.append(
            DeviceRow(
                device_id,
                snapshot.status.value,
                owner,
                failure_reason=snapshot.failure_reason,
                last_error=snapshot.last_error,
            )
        )
    owned = Counter(device.owner for device in devices)
    units = Counter(owner_of_unit.values())
    managers = tuple(
        ManagerRow(
            member.manager,
            owned.get(member.manager, 0),
            units.get(member.manager, 0),
            member.age,
            member.expires_in,
        )
        for member in sorted(view.members, key=lambda member: member.manager)
    )
    return FleetReport(managers, tuple(devices))
