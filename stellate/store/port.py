"""The fleet store port: what several managers sharing one fleet need from a shared store.

A manager talks to the store through :class:`FleetStore` only. Two adapters implement it
(``stellate.adapters.store_memory``: one process, the default; ``stellate.adapters.store_redis``:
Redis through coredis), and one contract test holds both to the rules below.

Four things live in the store:

* **Membership.** Each manager keeps a membership on a lease (``ttl`` seconds): :meth:`join` once,
  then :meth:`renew` well inside the ttl. A manager whose lease runs out is no longer listed.
  A second live manager cannot join under an id that is live (:class:`ManagerIdInUse`).
* **Ownership.** Devices are owned through *units* (a name the caller chooses: a hash slot of
  devices, see ``stellate.store.ownership``), each held on a lease. :meth:`claim` takes a unit
  only when it is free or its lease has run out, and hands back a :class:`Lease` carrying a
  **fencing token** drawn from a counter that only grows: a later claim of any unit always gets
  a larger token than every earlier one. :meth:`renew` extends the leases still held (same
  owner, same token); :meth:`release` frees them.
* **Snapshots.** One encoded text per device (``stellate.store.snapshot`` writes and reads it).
  :meth:`write_snapshots` writes a batch; each write names the lease it is written under and
  is checked against the unit's current holder *on the store, in the same step*: once the
  token is stale (the lease ran out, was released, or the unit was claimed again) the write is
  refused. That is what keeps a paused or partitioned old owner from overwriting the new one.
* **The view**: every live manager, every unit's holder, every snapshot (:meth:`view`).

Times in results are *durations on the store's clock* (``age``, ``expires_in``), never instants:
the store's clock and a manager's are different clocks.

Errors (both :class:`~stellate.errors.StellateError`): :class:`StoreUnavailable` means the store
could not do it right now (unreachable, wrong password, not a Redis, out of memory,
read-only); its message names the store in a form safe to show (no password). A refused write
or a lost lease is not an error: it is a result.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from enum import StrEnum
from typing import Protocol

import attrs

from ..errors import LocalError, RemoteError

__all__ = [
    "Claimed",
    "FleetStore",
    "FleetView",
    "Holder",
    "Lease",
    "ManagerIdInUse",
    "Member",
    "Renewal",
    "SnapshotWrite",
    "StoreUnavailable",
    "Unavailability",
    "Written",
]


class Unavailability(StrEnum):
    """Why a store could not serve a request: one kind per cause a person fixes differently."""

    #: Nothing answers at the address (refused, unreachable, timed out).
    UNREACHABLE = "unreachable"
    #: The store refused the credentials (or needs some and got none).
    AUTHENTICATION = "authentication"
    #: Something answers, but it does not speak the store's protocol.
    NOT_A_STORE = "not a store"
    #: The store is out of memory and refuses writes.
    OUT_OF_MEMORY = "out of memory"
    #: The store is a read-only replica (or otherwise refuses writes).
    READ_ONLY = "read only"
    #: Anything else the store answered with an error.
    ERROR = "error"


class StoreUnavailable(RemoteError):
    """The store cannot serve the request now; retrying later may work (the store's fault,
    or the network's: a :class:`RemoteError`).

    ``store`` names the store in a form safe to show (a redacted URL); ``kind`` says why.
    """

    def __init__(self, store: str, kind: Unavailability, detail: str) -> None:
        self.store = store
        self.kind = kind
        self.detail = detail
        super().__init__(f"fleet store {store}: {kind.value}: {detail}")


class ManagerIdInUse(LocalError):
    """A manager with this id is live in the store: two managers must not share an id (fix the
    configuration: a :class:`LocalError`)."""

    def __init__(self, store: str, manager: str, expires_in: float) -> None:
        self.store = store
        self.manager = manager
        self.expires_in = expires_in
        super().__init__(
            f"fleet store {store}: manager id {manager!r} is live already (another manager "
            f"uses it, or a previous run's lease has {expires_in:.1f} s left): choose another "
            "id, or wait for that lease to run out"
        )


@attrs.frozen
class Lease:
    """A unit held by a manager under a fencing token. Writes under it name it."""

    unit: str
    owner: str
    token: int


@attrs.frozen
class Holder:
    """Who holds a unit now, and for how long yet (seconds on the store's clock)."""

    lease: Lease
    expires_in: float


@attrs.frozen
class Member:
    """A live manager: when it last renewed (``age`` seconds ago) and when its lease ends."""

    manager: str
    age: float
    expires_in: float


@attrs.frozen
class Renewal:
    """The answer to one renewal round (or a join): everything the next round plans from."""

    #: The units whose leases were extended (every other lease passed in is lost).
    renewed: frozenset[str]
    #: The live managers after this renewal, sorted by id (the caller among them).
    members: tuple[Member, ...]


@attrs.frozen
class Claimed:
    """The answer to a claim: the leases granted, and who holds each unit that was not free."""

    granted: tuple[Lease, ...]
    taken: Mapping[str, Holder]


@attrs.frozen
class SnapshotWrite:
    """One device's snapshot, written under ``lease`` (``data=None`` deletes it)."""

    lease: Lease
    device_id: str
    data: str | None


@attrs.frozen
class Written:
    """What a batch of snapshot writes did: device ids written, and device ids refused
    because the lease they were written under is no longer the unit's current one."""

    accepted: tuple[str, ...]
    refused: tuple[str, ...]


@attrs.frozen
class FleetView:
    """The whole fleet as the store holds it."""

    members: tuple[Member, ...]
    #: Every unit with a live lease → its holder.
    holders: Mapping[str, Holder]
    #: Every device with a snapshot → the encoded snapshot.
    snapshots: Mapping[str, str]


class FleetStore(Protocol):
    """The port. Every method may raise :class:`StoreUnavailable`; ``ttl`` is in seconds."""

    @property
    def name(self) -> str:
        """Where the store is, safe to show (a URL without its password)."""
        ...

    async def join(self, manager: str, ttl: float) -> Renewal:
        """Start ``manager``'s membership.

        Raises:
            ManagerIdInUse: a manager with this id is live.
        """
        ...

    async def renew(self, manager: str, leases: Collection[Lease], ttl: float) -> Renewal:
        """One renewal round in one step: the membership (re-created if it had lapsed) and
        every lease in ``leases`` that is still the unit's current one."""
        ...

    async def leave(self, manager: str) -> None:
        """End ``manager``'s membership (its leases are released separately, first)."""
        ...

    async def claim(self, manager: str, units: Collection[str], ttl: float) -> Claimed:
        """Take each unit that is free (or whose lease ran out) with a new token."""
        ...

    async def release(self, leases: Collection[Lease]) -> None:
        """Free each unit whose current lease is the one given (others are left alone)."""
        ...

    async def write_snapshots(self, writes: Sequence[SnapshotWrite]) -> Written:
        """Write each snapshot whose lease is still its unit's current one; refuse the rest."""
        ...

    async def read_snapshots(self, device_ids: Collection[str]) -> Mapping[str, str]:
        """The snapshots of these devices that exist."""
        ...

    async def view(self) -> FleetView:
        """Members, holders and snapshots, for the fleet-wide view."""
        ...
