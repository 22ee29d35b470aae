"""The ownership rules (stellate/store/ownership.py): each stated number, checked on its own."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellate.store.ownership import (
    CLAIM_RETRY,
    DEFAULT_LEASE,
    DRIFT_BOUND,
    MAX_LEASE,
    MIN_LEASE,
    SLOTS,
    LeasePolicy,
    RateLimit,
    assign,
    handoff_share,
    lease_problems,
    owner_of,
    slot_of,
    unit_of,
    units_of,
    unowned_bound,
)

UNITS = [f"slot:{i:04d}" for i in range(SLOTS)]
managers = st.lists(
    st.text("abcdefgh0123456789-", min_size=1, max_size=8), min_size=1, max_size=8, unique=True
)


def test_a_device_s_slot_is_pinned() -> None:
    # The slot of a device must never change between versions or machines (not Python's
    # salted hash()), or managers of two versions would disagree about who owns what.
    assert (slot_of("windowsagent"), slot_of("device-1"), slot_of("é")) == (157, 154, 745)
    assert all(0 <= slot_of(f"device-{i}") < SLOTS for i in range(2000))
    assert unit_of("windowsagent") == "slot:0157"


def test_devices_spread_over_the_slots() -> None:
    counts = Counter(slot_of(f"device-{i}") for i in range(20_000))
    assert len(counts) == SLOTS  # 20,000 devices leave no slot empty
    assert max(counts.values()) < 3 * 20_000 / SLOTS


def test_units_of_groups_devices_keeping_their_order() -> None:
    devices = [f"d{i}" for i in range(50)]
    grouped = units_of(devices)
    assert sorted(d for ds in grouped.values() for d in ds) == sorted(devices)
    for unit, members in grouped.items():
        assert all(unit_of(d) == unit for d in members)
        assert list(members) == [d for d in devices if d in members]


@given(managers)
def test_every_manager_computes_the_same_owner(names: list[str]) -> None:
    forward = assign(UNITS[:64], names)
    backward = assign(UNITS[:64], list(reversed(names)))
    assert forward == backward
    assert set(forward.values()) <= set(names)


def test_the_split_is_balanced() -> None:
    names = [f"manager-{i}" for i in range(4)]
    counts = Counter(assign(UNITS, names).values())
    assert set(counts) == set(names)
    assert all(abs(count - SLOTS / 4) < 0.2 * SLOTS / 4 for count in counts.values()), counts


def test_a_join_moves_only_units_to_the_newcomer_about_one_in_n() -> None:
    before = assign(UNITS, ["m1", "m2", "m3"])
    after = assign(UNITS, ["m1", "m2", "m3", "m4"])
    moved = [unit for unit in UNITS if before[unit] != after[unit]]
    assert all(after[unit] == "m4" for unit in moved)
    assert abs(len(moved) - SLOTS / 4) < 0.2 * SLOTS / 4


def test_a_leave_moves_only_the_leaver_s_units() -> None:
    before = assign(UNITS, ["m1", "m2", "m3"])
    after = assign(UNITS, ["m1", "m3"])
    assert all(before[u] == after[u] for u in UNITS if before[u] != "m2")
    assert owner_of("slot:0001", []) is None and assign(UNITS, []) == {}


def test_the_lease_arithmetic_at_the_default() -> None:
    policy = LeasePolicy()
    assert policy.lease == DEFAULT_LEASE == 15.0
    assert policy.renew_every == 5.0
    assert policy.margin == 3.0
    assert policy.valid_for == 12.0
    assert policy.acting_until(100.0) == 112.0
    assert policy.stop_allowance() == pytest.approx(15 - 12 / 0.95)


@pytest.mark.parametrize("lease", [MIN_LEASE, DEFAULT_LEASE, 60.0, MAX_LEASE])
def test_a_slow_clock_within_the_drift_bound_stops_acting_before_the_store_frees(
    lease: float,
) -> None:
    policy = LeasePolicy(lease)
    # The manager's clock runs DRIFT_BOUND slower than the store's: its valid_for lasts
    # valid_for / (1 - DRIFT_BOUND) of the store's time, which must end before the lease.
    assert policy.valid_for / (1 - DRIFT_BOUND) < lease
    assert policy.stop_allowance() > 0.1 * lease
    # Two renewals may fail and the third still comes in time.
    assert 2 * policy.renew_every < policy.valid_for


@pytest.mark.parametrize("lease", [0.0, MIN_LEASE - 0.1, MAX_LEASE + 1, float("nan"), float("inf")])
def test_a_lease_out_of_range_is_refused(lease: float) -> None:
    assert list(lease_problems(lease))
    with pytest.raises(ValueError, match="lease"):
        LeasePolicy(lease)


def test_the_rate_limit_spends_a_burst_then_refills_at_its_rate() -> None:
    limit = RateLimit(rate=10, burst=10)
    assert limit.take(10, now=0.0)
    assert not limit.take(1, now=0.0)
    assert not limit.take(5, now=0.4)  # 4 tokens back
    assert limit.take(5, now=0.5)
    limit.give_back(5)
    assert limit.take(5, now=0.5)


def test_a_unit_larger_than_the_burst_is_allowed_from_a_full_bucket() -> None:
    limit = RateLimit(rate=10, burst=10)
    assert limit.take(25, now=0.0)
    assert not limit.take(1, now=1.0)  # in debt: 25 tokens took 2.5 s to earn back
    assert limit.take(1, now=3.6)


def test_the_unowned_bound() -> None:
    policy = LeasePolicy()
    limit = RateLimit(rate=500, burst=500)
    # 15 s lease + (5 s notice + 0.5 s retry + 0 s of rate limit) x 1.05
    assert CLAIM_RETRY == 0.5
    assert unowned_bound(policy, 400, limit) == pytest.approx(15 + 5.5 * 1.05)
    # 5,500 devices to one manager: 10 s more of claims at 500/s.
    assert unowned_bound(policy, 5_500, limit) == pytest.approx(15 + 15.5 * 1.05)


def test_the_managers_handing_over_to_a_joiner_share_its_claim_rate() -> None:
    # A manager joining takes from every other one at once: together they hand over no faster
    # than it claims, so a unit released waits at most a claim retry for it.
    assert handoff_share(500.0, 500.0, 1) == (500.0, 500.0)  # alone: nobody to hand over to
    assert handoff_share(500.0, 500.0, 2) == (500.0, 500.0)
    rate, burst = handoff_share(500.0, 500.0, 4)
    assert rate * 3 == pytest.approx(500.0) and burst * 3 == pytest.approx(500.0)
