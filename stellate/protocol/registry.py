"""The agent server's registry of connected clients (devices and constellations).

Pure bookkeeping, no I/O and no clock: every call that depends on time takes ``at`` (seconds
on whatever monotonic clock the caller uses; the trio edge passes ``trio.current_time()``, so
a ``MockClock`` drives leases in tests).

An entry belongs to the connection that registered it (``owner``). Removal names the owner,
so a connection that was replaced by a newer one cannot remove its successor's entry when it
finally goes away.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import attrs

from .ids import LookAlikes
from .messages import ClientType

__all__ = ["ClientEntry", "ClientRegistry"]


@attrs.define
class ClientEntry:
    """One registered client.

    ``lease_expires`` is ``inf`` for clients without a lease (constellations): their liveness
    is their socket's. ``connection_lost`` is set when the owner knows its socket is gone but
    has not deregistered yet; such an entry is stale and may be replaced.

    A device's ``system_info`` is kept as its compact JSON text (``system_info_json``), not as
    the decoded objects: what a device costs the server is then the length of that text (which
    the session caps), not the several times more that many small Python objects take.
    """

    client_id: str
    client_type: ClientType
    owner: object
    target_id: str | None = None
    system_info_json: str | None = None
    platform: str | None = None
    registered_at: float = 0.0
    lease_expires: float = math.inf
    connection_lost: bool = False

    @property
    def system_info(self) -> dict[str, Any] | None:
        """The device's ``system_info`` as it sent it (a fresh copy), if it is kept."""
        if self.system_info_json is None:
            return None
        value: dict[str, Any] = json.loads(self.system_info_json)
        return value

    def is_stale(self, at: float) -> bool:
        return self.connection_lost or at >= self.lease_expires


class ClientRegistry:
    """Devices and constellations by ``client_id``, with an index of constellations by target."""

    def __init__(self) -> None:
        self._clients: dict[str, ClientEntry] = {}
        self._by_target: dict[str, set[str]] = {}
        self._look_alikes = LookAlikes()

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[ClientEntry]:
        return iter(list(self._clients.values()))

    def get(self, client_id: str) -> ClientEntry | None:
        return self._clients.get(client_id)

    def look_alike_of(self, client_id: str) -> str | None:
        """A registered id that ``client_id`` looks like without being it (``ids.skeleton``)."""
        return self._look_alikes.of(client_id)

    def add(self, entry: ClientEntry) -> None:
        """Insert ``entry``, replacing any entry under the same id (the caller decided)."""
        self._discard(entry.client_id)
        self._clients[entry.client_id] = entry
        self._look_alikes.add(entry.client_id)
        if entry.client_type is ClientType.CONSTELLATION and entry.target_id is not None:
            self._by_target.setdefault(entry.target_id, set()).add(entry.client_id)

    def remove(self, client_id: str, owner: object) -> ClientEntry | None:
        """Remove ``client_id`` if ``owner`` still owns it; return the removed entry."""
        entry = self._clients.get(client_id)
        if entry is None or entry.owner is not owner:
            return None
        self._discard(client_id)
        return entry

    def renew(self, client_id: str, owner: object, lease_expires: float) -> None:
        entry = self._clients.get(client_id)
        if entry is not None and entry.owner is owner:
            entry.lease_expires = lease_expires

    def live_device(self, device_id: str, at: float) -> ClientEntry | None:
        """The device registered as ``device_id`` if it is connected and its lease holds."""
        entry = self._clients.get(device_id)
        if entry is None or entry.client_type is not ClientType.DEVICE or entry.is_stale(at):
            return None
        return entry

    def constellations_of(self, device_id: str) -> list[ClientEntry]:
        """Constellations registered with ``target_id == device_id``."""
        return [self._clients[cid] for cid in sorted(self._by_target.get(device_id, ()))]

    def devices(self) -> list[ClientEntry]:
        return [e for e in self._clients.values() if e.client_type is ClientType.DEVICE]

    def constellations(self) -> list[ClientEntry]:
        return [e for e in self._clients.values() if e.client_type is ClientType.CONSTELLATION]

    def _discard(self, client_id: str) -> None:
        old = self._clients.pop(client_id, None)
        if old is not None:
            self._look_alikes.discard(client_id)
        if old is not None and old.target_id is not None:
            targets = self._by_target.get(old.target_id)
            if targets is not None:
                targets.discard(client_id)
                if not targets:
                    del self._by_target[old.target_id]
