"""OwnershipKeeper: one manager's side of the ownership rules, sans-IO.

The keeper decides and remembers; a driver (``stellate.manager.ownership``) performs. Each round
the driver asks the keeper what to send (the leases to renew, the units to hand over, the units
to claim), sends it to the store, and feeds the answers back with the instant (the manager's own
monotonic clock) the request was *sent*. The keeper never reads a clock and never awaits.

What the keeper guarantees, whatever the store answers or fails to answer:

* it acts as a unit's owner only while its lease is valid by :class:`LeasePolicy` (self-fencing:
  ``sent + lease − margin``); :meth:`settle` reports units gained and lost as time and answers
  go by, so the manager can start and stop the devices of each;
* a unit it hands over stops counting as acting *before* the driver is told to release it (the
  manager closes the devices first, then the store frees the unit for the next owner);
* it claims only units the rendezvous rule gives it, at most the claim rate's devices a second,
  and hands over at most the hand-off rate's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from .ownership import (
    CLAIM_RETRY,
    DRIFT_BOUND,
    LeasePolicy,
    RateLimit,
    assign,
    handoff_limit,
    handoff_share,
    units_of,
)
from .port import Claimed, Lease, Renewal

__all__ = ["OVERDUE", "OVERDUE_SLACK", "Change", "OwnershipKeeper"]

#: A member that has not renewed for this many renewal periods is overdue: the next round is
#: made when its membership would end, not a whole renewal period after.
OVERDUE = 1.2
#: Seconds past an overdue member's end before that round (the store's clock may be behind).
OVERDUE_SLACK = 0.05


@attrs.frozen
class Change:
    """Units the manager started or stopped acting as owner of."""

    gained: frozenset[str] = frozenset()
    lost: frozenset[str] = frozenset()
    #: The leases of the units in ``lost`` that were handed over (a hand-off or a graceful
    #: stop), not lost to time: they are still the units' current leases on the store until
    #: the driver releases them, after ``on_change`` returns, so the manager may write its
    #: last snapshots of their devices under them.
    handed: tuple[Lease, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.gained or self.lost)


@attrs.define
class _Held:
    lease: Lease
    #: Until when (manager's clock) the manager may act as the unit's owner.
    until: float


class OwnershipKeeper:
    """Ownership state of one manager over a fleet of devices.

    Args:
        manager: this manager's id.
        devices: every device of the fleet (all managers are given the same list).
        policy: the lease arithmetic.
        claims: limits devices taken over per second (default: ``RateLimit()``).
        handoffs: limits devices handed over per second (default: ``handoff_limit()``).
    """

    def __init__(
        self,
        manager: str,
        devices: Iterable[str],
        policy: LeasePolicy | None = None,
        *,
        claims: RateLimit | None = None,
        handoffs: RateLimit | None = None,
    ) -> None:
        self.manager = manager
        self.policy = policy or LeasePolicy()
        #: Unit → its devices.
        self.units: Mapping[str, tuple[str, ...]] = units_of(devices)
        self._claims = claims or RateLimit()
        self._handoffs = handoffs or handoff_limit()
        # The hand-off rate given, shared among the managers that may hand over at once.
        self._handoff_rate = (self._handoffs.rate, self._handoffs.burst)
        self._held: dict[str, _Held] = {}
        self._acting: frozenset[str] = frozenset()
        #: The live managers in the last answer from the store (empty: not joined yet).
        self.members: tuple[str, ...] = ()
        #: Unit → manager it should belong to, by the last member list.
        self._assigned: dict[str, str] = {}
        # Leases handed over since the last ``settle`` (reported with the loss).
        self._handed: list[Lease] = []
        # When (manager's clock) a member that missed its renewals loses its membership, if
        # it does not renew: the next round is made then, so its units are claimed at once.
        self._overdue_until: float | None = None

    # -- what the manager may do now ------------------------------------------------------------
    def acting(self, unit: str, now: float) -> bool:
        """True while this manager may act as the owner of ``unit``."""
        held = self._held.get(unit)
        return held is not None and now < held.until

    def acting_units(self, now: float) -> frozenset[str]:
        return frozenset(unit for unit, held in self._held.items() if now < held.until)

    def lease(self, unit: str, now: float) -> Lease | None:
        """The lease to write ``unit``'s devices' snapshots under (None: not acting)."""
        held = self._held.get(unit)
        return held.lease if held is not None and now < held.until else None

    def acting_until(self, unit: str) -> float | None:
        """When acting as ``unit``'s owner ends (manager's clock) unless renewed."""
        held = self._held.get(unit)
        return held.until if held is not None else None

    def next_expiry(self, now: float) -> float | None:
        """The earliest instant a unit acted on now stops being acted on (None: acting on
        none): the driver must :meth:`settle` then, renewal or not."""
        ends = [held.until for held in self._held.values() if now < held.until]
        return min(ends) if ends else None

    def wanted(self) -> frozenset[str]:
        """Units the rendezvous rule gives this manager that it does not hold."""
        mine = {unit for unit, owner in self._assigned.items() if owner == self.manager}
        return frozenset(mine - self._held.keys())

    def owed(self) -> frozenset[str]:
        """Units held that the rendezvous rule gives to another live manager."""
        return frozenset(
            unit
            for unit in self._held
            if (owner := self._assigned.get(unit)) is not None and owner != self.manager
        )

    def wake_in(self, now: float) -> float:
        """Seconds until the next round: the renewal period; the claim retry while units are
        wanted or owed to another manager (a hand-off goes at its rate, not once a renewal);
        when an overdue member's membership would end (its units are claimed as soon as the
        store frees them); never past the next self-fencing instant."""
        wait = self.policy.renew_every
        if self.wanted() or self.owed():
            wait = min(wait, CLAIM_RETRY)
        overdue = self._overdue_until
        if overdue is not None and overdue > now:  # past: the next answer says more
            wait = min(wait, overdue - now)
        expiry = self.next_expiry(now)
        return wait if expiry is None else max(0.0, min(wait, expiry - now))

    # -- a round: what to send ------------------------------------------------------------------
    def leases(self) -> tuple[Lease, ...]:
        """The leases to renew (every lease held, acted on or not: a renewal that succeeds
        proves nobody else took the unit, so acting may resume)."""
        return tuple(held.lease for held in self._held.values())

    def hand_off(self, now: float) -> tuple[Lease, ...]:
        """Units held that the rule now gives to another live manager, at the hand-off rate.

        They stop being acted on at once (reported by the next :meth:`settle`): the manager
        stops their devices, then the driver releases the leases returned.
        """
        out: list[Lease] = []
        for unit, held in list(self._held.items()):
            owner = self._assigned.get(unit)
            if owner is None or owner == self.manager:
                continue
            if not self._handoffs.take(len(self.units.get(unit, ())) or 1, now):
                break
            del self._held[unit]
            out.append(held.lease)
        self._handed += out
        return tuple(out)

    def to_claim(self, now: float) -> tuple[str, ...]:
        """Units to claim now: wanted ones, as many as the claim rate allows."""
        out: list[str] = []
        for unit in sorted(self.wanted()):
            if not self._claims.take(len(self.units.get(unit, ())) or 1, now):
                break
            out.append(unit)
        return tuple(out)

    def stop(self) -> tuple[Lease, ...]:
        """A graceful stop: nothing is acted on from now; release these leases, then leave."""
        leases = self.leases()
        self._held.clear()
        self._assigned = {}
        self.members = ()
        self._overdue_until = None
        self._handed += leases
        return leases

    # -- a round: what came back ----------------------------------------------------------------
    def renewed(self, renewal: Renewal, sent: float) -> None:
        """A renewal (or join) sent at ``sent`` succeeded: extend what it renewed, drop the
        rest, and take the member list as the new basis of assignment."""
        until = self.policy.acting_until(sent)
        for unit in list(self._held):
            if unit in renewal.renewed:
                self._held[unit].until = until
            else:
                del self._held[unit]
        self.members = tuple(member.manager for member in renewal.members)
        self._assigned = assign(self.units, self.members)
        rate, burst = handoff_share(*self._handoff_rate, len(self.members))
        self._handoffs.rate, self._handoffs.burst = rate, burst
        overdue = [
            sent + member.expires_in * (1 + DRIFT_BOUND) + OVERDUE_SLACK
            for member in renewal.members
            if member.manager != self.manager and member.age > self.policy.renew_every * OVERDUE
        ]
        self._overdue_until = min(overdue) if overdue else None

    def claimed(self, claimed: Claimed, sent: float, asked: Iterable[str] = ()) -> None:
        """A claim sent at ``sent`` came back: hold what was granted. Tokens spent on units
        another manager still holds are given back (``asked``: the units claimed)."""
        until = self.policy.acting_until(sent)
        for lease in claimed.granted:
            self._held[lease.unit] = _Held(lease, until)
        for unit in asked:
            if unit in claimed.taken:
                self._claims.give_back(len(self.units.get(unit, ())) or 1)

    def claim_failed(self, asked: Iterable[str]) -> None:
        """The claim never reached the store: give its tokens back."""
        for unit in asked:
            self._claims.give_back(len(self.units.get(unit, ())) or 1)

    def settle(self, now: float) -> Change:
        """Units gained and lost since the last call (by answers, hand-offs and time)."""
        acting = self.acting_units(now)
        lost = self._acting - acting
        handed = tuple(lease for lease in self._handed if lease.unit in lost)
        self._handed = []
        change = Change(gained=acting - self._acting, lost=lost, handed=handed)
        self._acting = acting
        return change
