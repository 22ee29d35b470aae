"""The ownership loop (stellate/manager/ownership.py) on its own, under a MockClock.

Each test runs managers on the real loop against the in-memory store and looks at what they
report through ``on_change``, what the store holds, and what is logged.
"""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from stellate.adapters.store_memory import MemoryFleetStore
from stellate.manager.ownership import keep_ownership, stop_ownership
from stellate.store.keeper import Change, OwnershipKeeper
from stellate.store.ownership import CLAIM_RETRY, LeasePolicy, RateLimit
from stellate.store.port import ManagerIdInUse, Unavailability

DEVICES = [f"device-{i}" for i in range(40)]
POLICY = LeasePolicy(15.0)


def keeper(name: str, rate: float = 1000.0) -> OwnershipKeeper:
    return OwnershipKeeper(
        name,
        DEVICES,
        POLICY,
        claims=RateLimit(rate, rate),
        handoffs=RateLimit(rate, rate),
    )


class Seen:
    """What one manager reported: the units it acts on now."""

    def __init__(self) -> None:
        self.units: set[str] = set()
        self.changes: list[Change] = []

    async def __call__(self, change: Change) -> None:
        self.changes.append(change)
        self.units |= change.gained
        self.units -= change.lost


async def test_a_lone_manager_owns_every_unit_after_its_first_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryFleetStore()
    alone, seen = keeper("m1"), Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_ownership, store, alone, seen)
        await trio.sleep(0.001)
        assert seen.units == set(alone.units)
        view = await store.view()
        assert {h.lease.owner for h in view.holders.values()} == {"m1"}
        await trio.sleep(10 * POLICY.lease)  # renewals keep it so
        assert seen.units == set(alone.units) and len(seen.changes) == 1
        nursery.cancel_scope.cancel()


async def test_the_claim_rate_spreads_a_take_over(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryFleetStore()
    slow, seen = keeper("m1", rate=10.0), Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_ownership, store, slow, seen)
        await trio.sleep(0.001)
        first = len(seen.units)
        assert 0 < first < len(slow.units)  # a burst of 10 devices' worth
        await trio.sleep((len(DEVICES) - 10) / 10.0 + CLAIM_RETRY)
        assert len(seen.units) == len(slow.units)  # the rest at 10 a second, a retry apart
        nursery.cancel_scope.cancel()


async def test_a_second_manager_with_the_same_id_is_refused_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryFleetStore()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_ownership, store, keeper("m1"), Seen())
        await trio.sleep(1)
        with pytest.raises(ManagerIdInUse):
            await keep_ownership(store, keeper("m1"), Seen())
        nursery.cancel_scope.cancel()


async def test_a_join_hands_over_part_and_a_graceful_stop_hands_back_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryFleetStore()
    first, second = keeper("m1"), keeper("m2")
    seen1, seen2 = Seen(), Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_ownership, store, first, seen1)
        await trio.sleep(1)
        async with trio.open_nursery() as nursery2:
            nursery2.start_soon(keep_ownership, store, second, seen2)
            await trio.sleep(POLICY.renew_every + 2 * CLAIM_RETRY)
            assert seen1.units and seen2.units
            assert seen1.units.isdisjoint(seen2.units)
            assert seen1.units | seen2.units == set(first.units)
            nursery2.cancel_scope.cancel()
        await stop_ownership(store, second, seen2)
        assert seen2.units == set()
        assert [m.manager for m in (await store.view()).members] == ["m1"]
        await trio.sleep(POLICY.renew_every + CLAIM_RETRY)  # no lease to wait out
        assert seen1.units == set(first.units)
        nursery.cancel_scope.cancel()


async def test_an_outage_stops_acting_at_the_margin_and_is_logged_once_each_way(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "stellate.manager.ownership")
    store = MemoryFleetStore()
    alone, seen = keeper("m1"), Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_ownership, store, alone, seen)
        await trio.sleep(POLICY.renew_every * 2 + 0.5)
        renewed_at = trio.current_time() - 0.5  # the last successful round
        store.unavailable = Unavailability.UNREACHABLE
        await trio.sleep_until(renewed_at + POLICY.valid_for - 0.01)
        assert seen.units == set(alone.units)  # still inside its lease, minus the margin
        await trio.sleep_until(renewed_at + POLICY.valid_for + 0.01)
        assert seen.units == set()  # self-fenced, renewals failing or not
        await trio.sleep(60)  # a minute of failing rounds
        store.unavailable = None
        await trio.sleep(POLICY.renew_every + CLAIM_RETRY)
        assert seen.units == set(alone.units)
        nursery.cancel_scope.cancel()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert "unreachable" in messages[0] and "until their leases run out" in messages[0]
    assert "is back" in messages[1]


async def test_a_hand_off_goes_at_its_rate_not_once_a_renewal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 4 devices a second: m2's share of the 40 devices takes several hand-off batches. Made
    # once a renewal (every 5 s) they would take a renewal period each; made at the claim
    # retry while units are owed, they follow each other a second apart.
    store = MemoryFleetStore()
    first, second = keeper("m1", rate=4.0), keeper("m2", rate=4.0)
    seen1, seen2 = Seen(), Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_ownership, store, first, seen1)
        await trio.sleep(30)  # m1 holds every unit
        assert seen1.units == set(first.units)
        nursery.start_soon(keep_ownership, store, second, seen2)
        joined = trio.current_time()
        await trio.sleep(0.001)
        while seen2.units != {u for u, owner in second._assigned.items() if owner == "m2"}:
            assert trio.current_time() - joined < 10 * POLICY.lease  # (a hang guard)
            await trio.sleep(0.1)
        took = trio.current_time() - joined
        devices = sum(len(first.units[u]) for u in seen2.units)
        batches = -(-devices // 4)
        assert batches >= 3, devices  # several batches, each a second apart at most
        assert took <= POLICY.renew_every + (batches + 1) * CLAIM_RETRY + 1, took
        nursery.cancel_scope.cancel()


async def test_the_managers_handing_over_to_a_joiner_share_one_hand_off_rate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Three managers, each given 12 devices a second: a fourth joining takes from all three at
    # once, and together they hand over 12 a second (4 each), not 36 — the pace the joiner
    # registers its devices at, whatever the number of managers.
    devices = [f"device-{i}" for i in range(400)]
    store = MemoryFleetStore()
    fast = 1e6
    old = [
        OwnershipKeeper(
            f"m{i}", devices, POLICY, claims=RateLimit(fast, fast), handoffs=RateLimit(12.0, 12.0)
        )
        for i in (1, 2, 3)
    ]
    joiner = OwnershipKeeper("m4", devices, POLICY, claims=RateLimit(fast, fast))
    gained: list[tuple[float, int]] = []

    class Timed(Seen):
        async def __call__(self, change: Change) -> None:
            await super().__call__(change)
            count = sum(len(joiner.units[u]) for u in change.gained)
            gained.append((trio.current_time(), count))

    async with trio.open_nursery() as nursery:
        for one in old:
            nursery.start_soon(keep_ownership, store, one, Seen())
        await trio.sleep(POLICY.lease)  # settled among three
        nursery.start_soon(keep_ownership, store, joiner, Timed())
        await trio.sleep(10 * POLICY.lease)
        nursery.cancel_scope.cancel()
    share = sum(len(joiner.units[u]) for u in joiner.acting_units(trio.current_time()))
    assert share >= 60  # about a quarter of 400: enough to see the pace
    began = gained[0][0]
    total = 0
    for at, count in gained:
        total += count
        # Each of the three saves at most a burst of 4 devices' worth (a slot holds 1-3).
        assert total <= 3 * (4 + 2) + 12.0 * (at - began), (at - began, total)
    assert total == share


async def test_a_dead_manager_s_units_are_claimed_as_soon_as_its_membership_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # m2 dies (nothing released). The survivor's renewals see it overdue (not renewed for more
    # than a renewal period), so its next round is when m2's membership ends, not its next
    # renewal, up to a renewal period later.
    store = MemoryFleetStore()
    first, second = keeper("m1"), keeper("m2")
    seen1 = Seen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_ownership, store, first, seen1)
        await trio.sleep(2.5)
        dying = trio.CancelScope()
        nursery.start_soon(_run_until, store, second, dying)
        await trio.sleep(10.5)
        dying.cancel()  # a crash: nothing released
        (member,) = [m for m in (await store.view()).members if m.manager == "m2"]
        ends = trio.current_time() + member.expires_in
        while seen1.units != set(first.units):
            assert trio.current_time() < ends + POLICY.renew_every  # (a hang guard)
            await trio.sleep(0.01)
        assert ends <= trio.current_time() < ends + 0.2
        nursery.cancel_scope.cancel()


async def _run_until(store: MemoryFleetStore, k: OwnershipKeeper, scope: trio.CancelScope) -> None:
    with scope:
        await keep_ownership(store, k, Seen())
