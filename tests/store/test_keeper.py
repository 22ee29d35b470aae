"""The keeper's rules, sans-IO (``stellate.store.keeper``'s docstring), one at a time.

The driver's side is played by hand: answers are built as the store would send them, with the
instant each request was sent. Policy ``LeasePolicy(15.0)``: renew every 5 s, a margin of 3 s,
so a lease granted or renewed by a request sent at ``t`` is acted on until ``t + 12``.
"""

from __future__ import annotations

import pytest

from stellate.store.keeper import Change, OwnershipKeeper
from stellate.store.ownership import CLAIM_RETRY, LeasePolicy, RateLimit, assign, units_of
from stellate.store.port import Claimed, Holder, Lease, Member, Renewal

POLICY = LeasePolicy(15.0)
VALID = 12.0  # lease 15 - margin 3
RENEW = 5.0
DEVICES = [f"d{i}" for i in range(6)]


def keeper(name: str = "m1", rate: float = 1000.0, devices: list[str] = DEVICES) -> OwnershipKeeper:
    return OwnershipKeeper(
        name, devices, POLICY, claims=RateLimit(rate, rate), handoffs=RateLimit(rate, rate)
    )


def member(name: str, age: float = 0.0, expires_in: float = 15.0) -> Member:
    return Member(name, age, expires_in)


def join(k: OwnershipKeeper, sent: float, *others: Member) -> None:
    """A renewal round sent at ``sent`` that renews every lease held, with these members."""
    members = sorted([member(k.manager), *others], key=lambda m: m.manager)
    k.renewed(Renewal(frozenset(lease.unit for lease in k.leases()), tuple(members)), sent)


def grant(k: OwnershipKeeper, units: list[str], sent: float) -> tuple[Lease, ...]:
    leases = tuple(Lease(u, k.manager, n + 1) for n, u in enumerate(units))
    k.claimed(Claimed(leases, {}), sent, units)
    return leases


def test_a_granted_unit_is_acted_on_until_sent_plus_lease_minus_margin() -> None:
    k = keeper()
    join(k, 0.0)
    unit = sorted(k.units)[0]
    (lease,) = grant(k, [unit], sent=10.0)
    assert k.acting(unit, 10.0 + VALID - 0.001) and not k.acting(unit, 10.0 + VALID)
    assert k.lease(unit, 21.9) == lease and k.lease(unit, 22.0) is None
    assert k.acting_until(unit) == 22.0 and k.acting_until("slot:nope") is None
    assert k.acting_units(21.0) == {unit} and k.acting_units(22.0) == frozenset()
    assert not k.acting("slot:nope", 0.0) and k.lease("slot:nope", 0.0) is None


def test_the_next_expiry_is_the_earliest_end_of_a_unit_acted_on() -> None:
    k = keeper()
    join(k, 0.0)
    first, second = sorted(k.units)[:2]
    assert k.next_expiry(0.0) is None
    grant(k, [first], sent=1.0)
    grant(k, [second], sent=3.0)
    assert k.next_expiry(2.0) == 13.0
    assert k.next_expiry(13.0) == 15.0  # the first is no longer acted on
    assert k.next_expiry(15.0) is None


def test_a_renewal_extends_what_it_renewed_from_when_it_was_sent_and_drops_the_rest() -> None:
    k = keeper()
    join(k, 0.0)
    kept, dropped = sorted(k.units)[:2]
    grant(k, [kept, dropped], sent=0.0)
    k.renewed(Renewal(frozenset({kept}), (member("m1"),)), sent=8.0)
    assert k.acting_until(kept) == 8.0 + VALID
    assert k.acting_until(dropped) is None and not k.acting(dropped, 1.0)
    assert [lease.unit for lease in k.leases()] == [kept]


def test_two_managers_split_the_units_each_wanting_only_its_own() -> None:
    one, two = keeper("m1"), keeper("m2")
    join(one, 0.0, member("m2"))
    join(two, 0.0, member("m1"))
    assert one.members == two.members == ("m1", "m2")
    assert one.wanted() and two.wanted()
    assert one.wanted() | two.wanted() == set(one.units)
    assert not one.wanted() & two.wanted()
    assert one.owed() == frozenset()  # holds nothing yet
    grant(one, sorted(one.units), sent=0.0)  # it took everything while alone, say
    assert one.owed() == two.wanted() and one.wanted() == frozenset()


def test_units_handed_over_stop_being_acted_on_before_they_are_released() -> None:
    k = keeper("m1")
    join(k, 0.0)
    grant(k, sorted(k.units), sent=0.0)
    assert k.settle(1.0).gained == set(k.units)
    join(k, 1.0, member("m2"))
    owed = k.owed()
    handed = k.hand_off(1.0)
    assert {lease.unit for lease in handed} == owed and owed
    assert all(not k.acting(unit, 1.0) for unit in owed)
    change = k.settle(1.0)
    assert change.lost == owed and change.gained == frozenset()
    assert set(change.handed) == set(handed)
    assert k.settle(1.0) == Change() and not Change()  # reported once


def test_a_graceful_stop_hands_back_every_lease() -> None:
    k = keeper("m1")
    join(k, 0.0, member("m0", age=100.0))
    granted = grant(k, sorted(k.wanted()), sent=0.0)
    k.settle(0.0)
    leases = k.stop()
    assert set(leases) == set(granted) and granted
    assert k.leases() == () and k.members == () and k.wanted() == frozenset()
    assert k.wake_in(0.0) == RENEW  # the overdue member is forgotten, nothing wanted
    change = k.settle(0.0)
    assert change.lost == {lease.unit for lease in leases} and set(change.handed) == set(leases)


def same_slot_devices(count: int) -> list[str]:
    """``count`` devices the slot rule puts in one unit, and one device alone in another."""
    slots: dict[str, list[str]] = {}
    for n in range(100_000):
        name = f"dev-{n}"
        (unit,) = units_of([name])
        slots.setdefault(unit, []).append(name)
        if len(slots[unit]) == count:
            return slots[unit]
    raise AssertionError("no slot holds that many")


def test_claims_cost_one_token_per_device_at_most_the_rate() -> None:
    big = same_slot_devices(3)
    k = OwnershipKeeper("m1", [*big, "solo"], POLICY, claims=RateLimit(1.0, 4.0))
    join(k, 0.0)
    (big_unit,) = units_of(big)
    (solo_unit,) = units_of(["solo"])
    assert k.units[big_unit] == tuple(big)
    # 4 tokens: both units (3 + 1 devices) now, in the order of their names.
    assert k.to_claim(0.0) == tuple(sorted([big_unit, solo_unit]))
    # Spent: nothing more until the bucket refills (1 token a second).
    assert k.to_claim(0.5) == ()
    # The store said both were taken by another: the tokens come back.
    k.claimed(Claimed((), {u: Holder(Lease(u, "m2", 1), 9.0) for u in k.wanted()}), 0.5, k.wanted())
    assert k.to_claim(0.5) == tuple(sorted([big_unit, solo_unit]))
    k.claim_failed(k.wanted())  # never reached the store: tokens back too
    assert k.to_claim(0.5) == tuple(sorted([big_unit, solo_unit]))
    assert k.to_claim(1.5) == ((solo_unit,) if solo_unit < big_unit else ())


def test_hand_offs_go_at_their_rate_one_token_per_device() -> None:
    big = same_slot_devices(3)
    devices = [*big, *DEVICES]
    k = OwnershipKeeper("m1", devices, POLICY, handoffs=RateLimit(1.0, 3.0))
    join(k, 0.0)
    grant(k, sorted(k.units), sent=0.0)
    join(k, 0.0, member("m2"))
    owed = k.owed()
    first = k.hand_off(0.0)
    cost = sum(len(k.units[lease.unit]) for lease in first)
    assert 1 <= cost <= 3 and len(first) < len(owed)
    assert k.hand_off(0.0) == ()  # the bucket is empty
    later = k.hand_off(100.0)  # a full bucket again (3 tokens)
    assert later and sum(len(k.units[lease.unit]) for lease in later) <= 3


def test_the_next_round_comes_after_a_renewal_period_or_sooner_when_there_is_work() -> None:
    k = keeper("m1")
    assert k.wake_in(0.0) == RENEW  # not joined: nothing wanted yet
    join(k, 0.0)
    assert k.wake_in(0.0) == CLAIM_RETRY  # units wanted
    grant(k, sorted(k.units), sent=0.0)
    assert k.wake_in(0.0) == RENEW
    assert k.wake_in(9.0) == 3.0  # never past the end of acting (at 12)
    assert k.wake_in(12.0) == RENEW  # acting on nothing: no end to wait for
    join(k, 0.0, member("m2"))  # a newcomer: units owed to it go at the hand-off rate
    assert k.owed() and k.wake_in(0.0) == CLAIM_RETRY


@pytest.mark.parametrize(("age", "overdue"), [(6.0, False), (6.01, True), (30.0, True)])
def test_a_member_overdue_for_its_renewal_brings_the_next_round_to_its_end(
    age: float, overdue: bool
) -> None:
    """Overdue: no renewal for 1.2 renewal periods (6 s here). The next round is made when
    its membership would end (the earliest of the overdue), the store's clock allowed 5 %
    drift and 0.05 s; once that instant is past, the next answer says more."""
    k = keeper("m1", devices=[])  # no unit: nothing wanted, owed or acted on
    join(k, 10.0, member("m0", age=age, expires_in=4.0), member("m2", age=age, expires_in=2.0))
    end = 10.0 + 2.0 * 1.05 + 0.05  # m2's, the earlier
    assert k.wake_in(10.0) == (pytest.approx(end - 10.0) if overdue else RENEW)
    assert k.wake_in(end) == RENEW  # the round made at the end does not call for another
    assert k.wake_in(end + 0.5) == RENEW


def test_the_manager_itself_is_never_overdue() -> None:
    k = keeper("m1", devices=["solo"])
    k.renewed(Renewal(frozenset(), (member("m1", age=60.0, expires_in=0.5),)), 0.0)
    grant(k, sorted(k.wanted()), sent=0.0)
    assert k.wake_in(0.0) == RENEW


def units_owned_by(manager: str, sizes: list[int]) -> list[list[str]]:
    """Devices for units of these sizes that the rendezvous rule gives to ``manager`` when the
    members are m1 and m2 (searched, so the test need not know the hash)."""
    found: list[list[str]] = []
    slots: dict[str, list[str]] = {}
    for n in range(200_000):
        name = f"dev-{n}"
        (unit,) = units_of([name])
        slots.setdefault(unit, []).append(name)
        if assign({unit: tuple(slots[unit])}, ("m1", "m2"))[unit] != manager:
            continue
        if len(slots[unit]) == sizes[len(found)]:
            found.append(slots.pop(unit))
            if len(found) == len(sizes):
                return found
    raise AssertionError("not found")


def test_hand_offs_go_in_order_a_unit_the_bucket_cannot_pay_for_waiting_with_those_after() -> None:
    """One token per device, at most the rate; a unit larger than what is left waits (and the
    units after it too, so a large unit is not overtaken round after round)."""
    solo1, big, solo2 = units_owned_by("m2", [1, 3, 1])
    k = OwnershipKeeper(
        "m1", [*solo1, *big, *solo2], POLICY, handoffs=RateLimit(1.0, 3.0), claims=RateLimit()
    )
    join(k, 0.0)
    order = [units_of(devices).popitem()[0] for devices in (solo1, big, solo2)]
    for unit in order:
        grant(k, [unit], sent=0.0)
    join(k, 0.0, member("m2"))
    assert k.owed() == set(order)
    assert [lease.unit for lease in k.hand_off(0.0)] == order[:1]  # 1 of 3 tokens; 3 > 2
    assert [lease.unit for lease in k.hand_off(1.0)] == order[1:2]  # full again: 3 tokens
    assert [lease.unit for lease in k.hand_off(2.0)] == order[2:]  # one token back


def test_the_lease_policy_given_is_the_one_applied() -> None:
    k = OwnershipKeeper("m1", DEVICES, LeasePolicy(30.0))  # renew every 10 s, margin 6 s
    join(k, 0.0)
    unit = sorted(k.units)[0]
    grant(k, [unit], sent=5.0)
    assert k.acting_until(unit) == 29.0
    k.to_claim(5.0)
    grant(k, sorted(k.wanted()), sent=5.0)
    assert k.wake_in(5.0) == 10.0
