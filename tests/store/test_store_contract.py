"""The fleet store contract: the same cases against the in-memory store and Redis.

Each case runs twice (``[memory]`` and ``[redis]``); the Redis side uses a ``redis-server`` this
module starts on a free loopback port (skipped, saying why, where none is installed). Time is
moved with the harness (store_support.py), never slept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis_servers import MISSING, RedisServer, redis_binary, redis_server
from store_support import MemoryHarness, StoreHarness, redis_harness

from stellate.adapters.store_redis import BATCH
from stellate.store.port import Lease, ManagerIdInUse, SnapshotWrite

TTL = 15.0


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if redis_binary() is None:
        pytest.skip(MISSING)
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[StoreHarness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    server: RedisServer = request.getfixturevalue("redis")
    async with redis_harness(server.url()) as redis_side:
        yield redis_side


# -- membership ---------------------------------------------------------------------------------


async def test_a_joined_manager_is_listed_with_its_lease(harness: StoreHarness) -> None:
    store = harness.store
    joined = await store.join("m1", TTL)
    assert [m.manager for m in joined.members] == ["m1"]
    await harness.advance(4)
    (member,) = (await store.view()).members
    assert member.manager == "m1"
    assert member.age == pytest.approx(4, abs=1)
    assert member.expires_in == pytest.approx(TTL - 4, abs=1)


async def test_a_live_id_cannot_join_twice_until_its_lease_runs_out(harness: StoreHarness) -> None:
    store = harness.store
    await store.join("m1", TTL)
    await harness.advance(5)
    with pytest.raises(ManagerIdInUse) as caught:
        await store.join("m1", TTL)
    assert caught.value.manager == "m1"
    assert caught.value.expires_in == pytest.approx(TTL - 5, abs=1)
    assert "'m1'" in str(caught.value)
    await harness.advance(TTL)
    rejoined = await store.join("m1", TTL)
    assert [m.manager for m in rejoined.members] == ["m1"]


async def test_renewing_keeps_a_member_and_a_lapsed_one_drops_out(harness: StoreHarness) -> None:
    store = harness.store
    await store.join("m1", TTL)
    await store.join("m2", TTL)
    for _ in range(3):
        await harness.advance(TTL / 3)
        renewal = await store.renew("m1", [], TTL)
    assert [m.manager for m in renewal.members] == ["m1"]  # m2 never renewed
    assert renewal.members[0].age == pytest.approx(0, abs=1)


async def test_a_renewal_after_a_lapse_lists_the_manager_again(harness: StoreHarness) -> None:
    store = harness.store
    await store.join("m1", TTL)
    await harness.advance(TTL + 1)
    assert (await store.view()).members == ()
    renewal = await store.renew("m1", [], TTL)
    assert [m.manager for m in renewal.members] == ["m1"]


async def test_leave_ends_a_membership_at_once(harness: StoreHarness) -> None:
    store = harness.store
    await store.join("m1", TTL)
    await store.join("m2", TTL)
    await store.leave("m1")
    assert [m.manager for m in (await store.view()).members] == ["m2"]
    await store.join("m1", TTL)  # the id is free again


# -- ownership ----------------------------------------------------------------------------------


async def test_a_claim_takes_free_units_with_growing_tokens(harness: StoreHarness) -> None:
    store = harness.store
    first = await store.claim("m1", ["u1", "u2"], TTL)
    second = await store.claim("m2", ["u3"], TTL)
    tokens = [lease.token for lease in (*first.granted, *second.granted)]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    assert [(lease.unit, lease.owner) for lease in first.granted] == [("u1", "m1"), ("u2", "m1")]
    assert first.taken == {} and second.taken == {}


async def test_a_held_unit_cannot_be_claimed_and_says_who_holds_it(harness: StoreHarness) -> None:
    store = harness.store
    (lease,) = (await store.claim("m1", ["u1"], TTL)).granted
    await harness.advance(5)
    for claimant in ("m2", "m1"):  # not even its holder takes it again while it is held
        answer = await store.claim(claimant, ["u1"], TTL)
        assert answer.granted == ()
        assert answer.taken["u1"].lease == lease
        assert answer.taken["u1"].expires_in == pytest.approx(TTL - 5, abs=1)


async def test_an_expired_unit_is_claimed_again_with_a_larger_token(harness: StoreHarness) -> None:
    store = harness.store
    (old,) = (await store.claim("m1", ["u1"], TTL)).granted
    await harness.advance(TTL + 1)
    (new,) = (await store.claim("m2", ["u1"], TTL)).granted
    assert new.owner == "m2" and new.token > old.token


async def test_a_renewal_extends_current_leases_only(harness: StoreHarness) -> None:
    store = harness.store
    await store.join("m1", TTL)
    kept, lapsed = (await store.claim("m1", ["kept", "lapsed"], TTL)).granted
    await harness.advance(TTL - 2)
    assert (await store.renew("m1", [kept], TTL)).renewed == {"kept"}
    await harness.advance(3)  # past the first lease: only the renewed one is still held
    (taken,) = (await store.claim("m2", ["lapsed"], TTL)).granted
    answer = await store.claim("m2", ["kept"], TTL)
    assert answer.granted == () and answer.taken["kept"].lease == kept
    renewal = await store.renew("m1", [kept, lapsed], TTL)
    assert renewal.renewed == {"kept"}  # the stale token renews nothing
    assert (await store.view()).holders["lapsed"].lease == taken


async def test_a_renewal_of_a_lease_that_ran_out_fails(harness: StoreHarness) -> None:
    store = harness.store
    (lease,) = (await store.claim("m1", ["u1"], TTL)).granted
    await harness.advance(TTL + 1)
    assert (await store.renew("m1", [lease], TTL)).renewed == frozenset()
    assert "u1" not in (await store.view()).holders


async def test_release_frees_a_current_lease_and_ignores_a_stale_one(harness: StoreHarness) -> None:
    store = harness.store
    (old,) = (await store.claim("m1", ["u1"], TTL)).granted
    await store.release([old])
    (new,) = (await store.claim("m2", ["u1"], TTL)).granted
    await store.release([old])  # stale: the new holder keeps the unit
    assert (await store.view()).holders["u1"].lease == new
    await store.release([Lease("u1", "m2", new.token + 1)])  # a token never granted
    assert (await store.view()).holders["u1"].lease == new


async def test_many_units_in_one_call(harness: StoreHarness) -> None:
    store = harness.store
    units = [f"u{i}" for i in range(BATCH * 2 + 7)]  # more than one script call on Redis
    await store.join("m1", TTL)
    claimed = await store.claim("m1", units, TTL)
    assert [lease.unit for lease in claimed.granted] == units
    renewal = await store.renew("m1", claimed.granted, TTL)
    assert renewal.renewed == set(units)
    writes = [SnapshotWrite(lease, f"d-{lease.unit}", "x") for lease in claimed.granted]
    written = await store.write_snapshots(writes)
    assert len(written.accepted) == len(units) and written.refused == ()
    assert len(await store.read_snapshots([w.device_id for w in writes])) == len(units)
    await store.release(claimed.granted)
    assert (await store.view()).holders == {}


# -- snapshots ----------------------------------------------------------------------------------


async def test_snapshots_written_under_a_current_lease_are_read_back(harness: StoreHarness) -> None:
    store = harness.store
    (lease,) = (await store.claim("m1", ["u1"], TTL)).granted
    written = await store.write_snapshots(
        [SnapshotWrite(lease, "d1", '{"v": 1}'), SnapshotWrite(lease, "d2", "two")]
    )
    assert written.accepted == ("d1", "d2") and written.refused == ()
    assert await store.read_snapshots(["d1", "d2", "nobody"]) == {"d1": '{"v": 1}', "d2": "two"}
    await store.write_snapshots([SnapshotWrite(lease, "d1", None)])  # None deletes
    assert await store.read_snapshots(["d1", "d2"]) == {"d2": "two"}


async def test_a_write_with_a_stale_token_is_refused(harness: StoreHarness) -> None:
    store = harness.store
    (old,) = (await store.claim("m1", ["u1"], TTL)).granted
    await store.write_snapshots([SnapshotWrite(old, "d1", "old owner")])
    await harness.advance(TTL + 1)
    # The lease ran out and nobody holds the unit: still refused.
    refused = await store.write_snapshots([SnapshotWrite(old, "d1", "late")])
    assert refused.accepted == () and refused.refused == ("d1",)
    (new,) = (await store.claim("m2", ["u1"], TTL)).granted
    await store.write_snapshots([SnapshotWrite(new, "d1", "new owner")])
    mixed = await store.write_snapshots(
        [SnapshotWrite(old, "d1", "stale"), SnapshotWrite(new, "d2", "fresh")]
    )
    assert mixed.accepted == ("d2",) and mixed.refused == ("d1",)
    assert await store.read_snapshots(["d1", "d2"]) == {"d1": "new owner", "d2": "fresh"}


async def test_a_write_by_the_same_owner_under_an_old_token_is_refused(
    harness: StoreHarness,
) -> None:
    # A manager that lost a unit and took it back must not write under the first lease.
    store = harness.store
    (first,) = (await store.claim("m1", ["u1"], TTL)).granted
    await store.release([first])
    (second,) = (await store.claim("m1", ["u1"], TTL)).granted
    written = await store.write_snapshots([SnapshotWrite(first, "d1", "stale")])
    assert written.refused == ("d1",)
    assert (await store.write_snapshots([SnapshotWrite(second, "d1", "ok")])).accepted == ("d1",)


async def test_the_view_shows_members_holders_and_snapshots(harness: StoreHarness) -> None:
    store = harness.store
    await store.join("m1", TTL)
    await store.join("m2", TTL)
    (a,) = (await store.claim("m1", ["ua"], TTL)).granted
    (b,) = (await store.claim("m2", ["ub"], TTL)).granted
    await store.write_snapshots([SnapshotWrite(a, "da", "A"), SnapshotWrite(b, "db", "B")])
    await harness.advance(2)
    view = await store.view()
    assert [m.manager for m in view.members] == ["m1", "m2"]
    assert {unit: holder.lease for unit, holder in view.holders.items()} == {"ua": a, "ub": b}
    assert all(0 < h.expires_in <= TTL - 1 for h in view.holders.values())
    assert view.snapshots == {"da": "A", "db": "B"}


async def test_a_store_names_itself_without_secrets(harness: StoreHarness) -> None:
    assert harness.store.name
    assert "@" not in harness.store.name or "***@" in harness.store.name
