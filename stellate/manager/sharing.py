"""What the rest of the manager asks of a fleet share, as a port (no import of the share).

``stellate.manager.fleet_share.FleetShare`` implements :class:`SharedFleet`; the manager keeps
the running one as ``ConstellationDeviceManager.fleet_share`` and its views (the fleet page,
``/api/fleet``, ``/metrics``) and commands (who owns a device) read it through this face, so
the manager's module never imports the share's (which imports the manager's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import attrs

from ..fsm import AgentProfile
from ..store.port import FleetStore
from ..store.report import FleetReport

__all__ = ["ConfiguredDevice", "SharedFleet"]


@attrs.frozen
class ConfiguredDevice:
    """A device of the shared fleet as the config gives it."""

    profile: AgentProfile
    auto_connect: bool = True


class SharedFleet(Protocol):
    """A manager's part of a fleet shared with other managers through a store."""

    @property
    def manager_id(self) -> str:
        """This manager's id among the fleet's managers."""
        ...

    @property
    def store(self) -> FleetStore:
        """The store the fleet is shared through."""
        ...

    @property
    def devices(self) -> Mapping[str, ConfiguredDevice]:
        """The whole fleet (every manager is given the same devices), by id."""
        ...

    @property
    def unreadable(self) -> Mapping[str, str]:
        """Device id → why its snapshot could not be read (it started fresh)."""
        ...

    @property
    def adopted(self) -> int:
        """Devices taken over since the share started."""
        ...

    @property
    def released(self) -> int:
        """Devices handed over or stopped (their unit lost) since the share started."""
        ...

    def owned_units(self) -> int:
        """Units (hash slots) this manager acts as the owner of now."""
        ...

    def owner_of(self, device_id: str) -> str | None:
        """The manager that owns ``device_id`` (this one's id when it does)."""
        ...

    def report(self) -> FleetReport | None:
        """The whole fleet as last read from the store (and ask for a fresh read)."""
        ...
