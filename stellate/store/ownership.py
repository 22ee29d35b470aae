"""The ownership rules: who owns which device, for how long, and how fast ownership moves.

Every rule several managers sharing one fleet obey is stated here, as arithmetic on plain
values: no I/O, no clock of its own (callers pass ``now``). ``keeper.py`` applies them for one
manager; docs/scaling.md explains them with the measurements behind the numbers.

**Units.** Devices are owned in :data:`SLOTS` hash slots, not one by one: slot =
BLAKE2b(device_id) mod :data:`SLOTS`, and a manager holds a lease per slot that has devices.
A renewal round then costs the same for 1,000 devices as for 20,000 (at most :data:`SLOTS`
leases; per-device leases cost one per device: docs/scaling.md, "Slots or keys").

**Assignment.** Rendezvous (highest-random-weight) hashing over the live managers: a unit goes
to the manager with the largest BLAKE2b(manager, unit). Every manager computes the same answer
from the same member list; the split is balanced, and a manager joining or leaving moves only
the units it gains or loses (about 1/n of them).

**Leases** (:class:`LeasePolicy`; ``lease`` seconds, default :data:`DEFAULT_LEASE`):

* a manager renews its membership and its units every ``lease / 3`` (two renewals may fail
  before anything is at risk);
* **self-fencing**: a manager acts as a unit's owner only until ``sent + lease − margin`` by
  its own monotonic clock, ``sent`` being when it *sent* the claim or renewal that succeeded
  (so the store's lease, counted from when the store received it, cannot have run out sooner);
  ``margin = lease / 5``;
* the margin tolerates a rate difference of up to :data:`DRIFT_BOUND` (5 %) between the
  manager's clock and the store's: the manager's ``lease − margin`` lasts at most
  ``(lease − margin) / (1 − DRIFT_BOUND)`` of the store's time (0.84 · lease), still short of
  ``lease``; what is left (:meth:`LeasePolicy.stop_allowance`, 0.16 · lease: 2.4 s at 15 s) is
  the time the manager has to stop acting (close its devices' sockets) before the store can hand
  the unit to another manager.

**Claim rate** (:class:`RateLimit`): a manager takes over at most :data:`CLAIM_RATE` devices a
second (a burst of one second's worth), so a failover or a join is not a reconnect storm. A unit
costs as many tokens as it has devices.

**Hand-off rate** (:func:`handoff_limit`): a planned move (a manager joining) takes devices that
are on the air, and each is off the air from its old owner's close to its new owner's
registration, so hand-offs go at the pace a manager registers devices without a queue:
:data:`HANDOFF_RATE` devices a second for the joiner, in batches of a claim retry's worth. A
manager that joins takes from every other one at once, so each of the ``n − 1`` others hands
over ``1 / (n − 1)`` of it (:func:`handoff_share`); a unit handed over then waits at most a
claim retry for its new owner and a batch's registrations. A failover has no such pace: the
devices of a dead manager are off the air already, and the survivors claim at the claim rate.

**Unowned bound** (:func:`unowned_bound`): with the store reachable, after the last change
(a manager joining, stopping or dying, the store coming back) every unit is held again within
``lease + (renew_every + claim_retry + (devices − burst) / rate) · (1 + DRIFT_BOUND)``:
the old leases run out, the survivors see the change at their next renewal, claim at the next
retry, and the rate limit spreads the rest.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Iterator

import attrs

__all__ = [
    "CLAIM_RATE",
    "CLAIM_RETRY",
    "DEFAULT_LEASE",
    "DRIFT_BOUND",
    "HANDOFF_RATE",
    "MAX_LEASE",
    "MAX_MANAGER_ID",
    "MIN_LEASE",
    "SLOTS",
    "LeasePolicy",
    "RateLimit",
    "assign",
    "handoff_limit",
    "handoff_share",
    "lease_problems",
    "manager_id_problems",
    "owner_of",
    "slot_of",
    "unit_of",
    "units_of",
    "unowned_bound",
]

#: Hash slots of devices: the unit of ownership (docs/scaling.md, "Slots or keys").
SLOTS = 1024
#: Seconds a lease lasts unless configured (``store: lease:``).
DEFAULT_LEASE = 15.0
#: The shortest lease accepted: its margin still leaves time to stop acting.
MIN_LEASE = 5.0
#: The longest lease accepted: past this a dead manager's devices wait too long.
MAX_LEASE = 600.0
#: The margin is this fraction of the lease.
MARGIN_FRACTION = 0.2
#: A renewal every lease / RENEWALS_PER_LEASE.
RENEWALS_PER_LEASE = 3
#: The largest relative rate difference between a manager's clock and the store's that
#: self-fencing tolerates (5 %: far beyond an NTP-disciplined or even a free-running clock).
DRIFT_BOUND = 0.05
#: Devices a manager takes over (or hands over) per second, at most.
CLAIM_RATE = 500.0
#: Seconds between claim attempts while a manager wants units it does not hold yet (and
#: between hand-off batches while it owes some).
CLAIM_RETRY = 0.5
#: Devices a second a joining manager takes over by hand-offs, from all the others together.
HANDOFF_RATE = 100.0
#: The longest manager id accepted.
MAX_MANAGER_ID = 128


def _weight(*parts: str) -> int:
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def slot_of(device_id: str) -> int:
    """The hash slot of a device (stable across processes, machines and versions)."""
    return _weight("slot", device_id) % SLOTS


def unit_of(device_id: str) -> str:
    """The ownership unit of a device: its slot's name in the store."""
    return f"slot:{slot_of(device_id):04d}"


def units_of(device_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Unit → its devices (only units that have devices), devices in the order given."""
    found: dict[str, list[str]] = {}
    for device_id in device_ids:
        found.setdefault(unit_of(device_id), []).append(device_id)
    return {unit: tuple(devices) for unit, devices in found.items()}


def owner_of(unit: str, managers: Collection[str]) -> str | None:
    """The manager that should own ``unit``: the highest rendezvous weight (None: nobody)."""
    if not managers:
        return None
    return max(managers, key=lambda manager: (_weight("owner", manager, unit), manager))


def assign(units: Iterable[str], managers: Collection[str]) -> dict[str, str]:
    """Unit → the manager that should own it, for every unit (empty if no managers)."""
    if not managers:
        return {}
    return {unit: owner for unit in units if (owner := owner_of(unit, managers)) is not None}


def manager_id_problems(manager_id: str) -> Iterator[str]:
    """What is wrong with ``manager_id`` as a manager's id (nothing when it is fine): it
    names the manager in the store, in logs and in ``stellate status``."""
    if not manager_id:
        yield "must not be empty"
    elif len(manager_id) > MAX_MANAGER_ID:
        yield f"must be at most {MAX_MANAGER_ID} characters, got {len(manager_id)}"
    elif not all(ch.isprintable() and not ch.isspace() for ch in manager_id):
        yield "must be printable, without spaces or control characters"


def lease_problems(lease: float) -> Iterator[str]:
    """What is wrong with ``lease`` as a lease in seconds (nothing when it is fine)."""
    if not math.isfinite(lease):
        yield f"must be a finite number of seconds, got {lease!r}"
    elif not MIN_LEASE <= lease <= MAX_LEASE:
        yield f"must be between {MIN_LEASE:g} and {MAX_LEASE:g} seconds, got {lease!r}"


@attrs.frozen
class LeasePolicy:
    """The lease arithmetic for one lease length (seconds).

    Raises:
        ValueError: the lease is outside ``MIN_LEASE..MAX_LEASE``.
    """

    lease: float = DEFAULT_LEASE

    def __attrs_post_init__(self) -> None:
        problems = list(lease_problems(self.lease))
        if problems:
            raise ValueError(f"lease: {problems[0]}")

    @property
    def renew_every(self) -> float:
        """Seconds between two renewal rounds."""
        return self.lease / RENEWALS_PER_LEASE

    @property
    def margin(self) -> float:
        """Seconds before the store's lease ends at which the manager stops acting."""
        return self.lease * MARGIN_FRACTION

    @property
    def valid_for(self) -> float:
        """Seconds after sending a successful claim or renewal that a manager acts as owner,
        by its own clock."""
        return self.lease - self.margin

    def acting_until(self, sent: float) -> float:
        """The instant (manager's clock) until which a lease renewed by a request sent at
        ``sent`` lets the manager act as owner."""
        return sent + self.valid_for

    def stop_allowance(self) -> float:
        """Seconds (store's clock) left between the latest moment a manager whose clock runs
        up to ``DRIFT_BOUND`` slow stops acting, and the earliest moment the store frees the
        unit: the time the manager has to close its devices' sockets."""
        return self.lease - self.valid_for / (1 - DRIFT_BOUND)


@attrs.define
class RateLimit:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved. Pure: pass ``now``.

    A unit of ownership costs as many tokens as it has devices; a unit larger than the burst
    is allowed when the bucket is full (else it could never be taken).
    """

    rate: float = CLAIM_RATE
    burst: float = CLAIM_RATE
    _tokens: float = attrs.field(default=math.nan, init=False)
    _at: float = attrs.field(default=math.nan, init=False)

    def _refill(self, now: float) -> None:
        if math.isnan(self._at):
            self._tokens, self._at = self.burst, now
            return
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = max(self._at, now)

    def take(self, cost: float, now: float) -> bool:
        """Spend ``cost`` tokens if the bucket has them (or is full); False changes nothing."""
        self._refill(now)
        if cost <= self._tokens or self._tokens >= self.burst:
            self._tokens -= cost
            return True
        return False

    def give_back(self, cost: float) -> None:
        """Return tokens taken for work that did not happen (a claim the store refused)."""
        self._tokens = min(self.burst, self._tokens + cost)

    def time_for(self, cost: float) -> float:
        """Seconds, from a full bucket, to spend ``cost`` tokens."""
        return max(0.0, cost - self.burst) / self.rate


def handoff_limit() -> RateLimit:
    """The hand-off rate limit of one manager (:func:`handoff_share` divides it as managers
    come and go): :data:`HANDOFF_RATE`, in batches of a claim retry's worth."""
    return RateLimit(HANDOFF_RATE, HANDOFF_RATE * CLAIM_RETRY)


def handoff_share(rate: float, burst: float, members: int) -> tuple[float, float]:
    """The hand-off rate and burst of one of ``members`` live managers, given the whole rate
    and burst a manager taking over can follow (see the module's rules)."""
    others = max(1, members - 1)
    return rate / others, burst / others


def unowned_bound(
    policy: LeasePolicy,
    devices: int,
    limit: RateLimit | None = None,
    claim_retry: float = CLAIM_RETRY,
) -> float:
    """Seconds after the last change within which every unit is held again, the store
    reachable, when ``devices`` devices (at most) must move to one manager."""
    limit = limit or RateLimit()
    local = policy.renew_every + claim_retry + limit.time_for(devices)
    return policy.lease + local * (1 + DRIFT_BOUND)
