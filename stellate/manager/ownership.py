"""The ownership loop: one manager's rounds against the fleet store, as a trio task.

Each round: join (the first time) or renew, hand over the units the rendezvous rule now gives to
another manager, claim the ones it gives to this manager. The decisions are the keeper's
(``stellate.store.keeper``); this task performs them and reports what changed through
``on_change`` — the units this manager started or stopped acting as owner of. ``on_change`` is
awaited, and a hand-off's leases are released only once it has returned: the manager closes
those devices' sockets first, so the next owner never registers a device this one still holds.

A second task watches the clock: a unit stops being acted on at its self-fencing instant even
while a store call hangs. A store that cannot be reached is logged once when it goes and once
when it comes back, never per attempt; meanwhile the leases run out on their own (self-fencing)
and the loop keeps trying every round.

``stellate.manager.fleet_share`` runs this loop for a ``ConstellationDeviceManager``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..store.keeper import Change, OwnershipKeeper
from ..store.port import FleetStore, StoreUnavailable

__all__ = ["JOIN_RETRY_FIRST", "join_fleet", "keep_ownership", "stop_ownership"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
OnChange = Callable[[Change], Awaitable[None]]

#: Seconds before the first retry of a join the store did not answer; each later wait doubles,
#: up to the renewal period.
JOIN_RETRY_FIRST = 0.5


async def join_fleet(
    store: FleetStore,
    keeper: OwnershipKeeper,
    *,
    clock: Clock = trio.current_time,
    sleep: Sleep = trio.sleep,
) -> None:
    """Join the fleet as ``keeper.manager``, retrying (with a growing wait) while the store
    cannot be reached; each kind of unavailability is logged once, as a warning.

    Raises:
        ManagerIdInUse: another live manager has this manager's id.
    """
    down: StoreUnavailable | None = None
    wait = JOIN_RETRY_FIRST
    while True:
        try:
            sent = clock()
            renewal = await store.join(keeper.manager, keeper.policy.lease)
        except StoreUnavailable as exc:
            if down is None or down.kind != exc.kind:
                logger.warning(
                    "%s; not acting as owner of any device until it answers, retrying", exc
                )
            down = exc
            await sleep(wait)
            wait = min(wait * 2, keeper.policy.renew_every)
            continue
        if down is not None:
            logger.warning("fleet store %s answers: joined as %r", store.name, keeper.manager)
        keeper.renewed(renewal, sent)
        return


async def keep_ownership(
    store: FleetStore,
    keeper: OwnershipKeeper,
    on_change: OnChange,
    *,
    clock: Clock = trio.current_time,
    sleep: Sleep = trio.sleep,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``keeper``'s rounds against ``store`` until cancelled.

    Joins first (:func:`join_fleet`) unless the keeper has joined already; ``task_status`` is
    told once joined.

    Args:
        store: the fleet store.
        keeper: this manager's ownership state.
        on_change: awaited with every change of the units acted on: start the devices of the
            units gained, stop (close) those of the units lost before returning.
        clock: the manager's monotonic clock (seconds).
        sleep: sleeps that many seconds of ``clock``.

    Raises:
        ManagerIdInUse: another live manager has this manager's id.
    """

    gained = trio.Event()

    async def settle() -> None:
        nonlocal gained
        change = keeper.settle(clock())
        if change:
            await on_change(change)
        if change.gained:
            gained.set()
            gained = trio.Event()

    async def watch_expiry() -> None:
        # Expiries only move later (a renewal or claim is sent after the last one), so sleeping
        # until the earliest one known is never late; with none, wait for a unit to be gained.
        while True:
            expiry = keeper.next_expiry(clock())
            if expiry is None:
                await gained.wait()
                continue
            await sleep(max(0.0, expiry - clock()))
            await settle()

    # The first join is made before the watcher starts, so an id in use is raised as itself
    # (from inside the nursery it would come out wrapped in an exception group).
    first = not keeper.members  # the join's answer stands for the first round's renewal
    if first:
        await join_fleet(store, keeper, clock=clock, sleep=sleep)
    task_status.started()
    down: StoreUnavailable | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_expiry)
        while True:
            try:
                if not first:
                    sent = clock()
                    keeper.renewed(
                        await store.renew(keeper.manager, keeper.leases(), keeper.policy.lease),
                        sent,
                    )
                first = False
                await settle()
                handed = keeper.hand_off(clock())
                await settle()  # their devices are closed before the leases are released
                if handed:
                    await store.release(handed)
                    logger.debug("released %d units handed over", len(handed))
                asked = keeper.to_claim(clock())
                if asked:
                    sent = clock()
                    try:
                        claimed = await store.claim(keeper.manager, asked, keeper.policy.lease)
                    except StoreUnavailable:
                        keeper.claim_failed(asked)
                        raise
                    keeper.claimed(claimed, sent, asked)
                    logger.debug(
                        "claimed %d of %d units (%d held by others)",
                        len(claimed.granted),
                        len(asked),
                        len(claimed.taken),
                    )
                if down is not None:
                    logger.warning(
                        "fleet store %s is back: renewing and claiming again", store.name
                    )
                    down = None
            except StoreUnavailable as exc:
                if down is None or down.kind != exc.kind:
                    logger.warning(
                        "%s; acting as owner of %d units until their leases run out, retrying",
                        exc,
                        len(keeper.acting_units(clock())),
                    )
                down = exc
            await settle()
            await sleep(keeper.wake_in(clock()))


async def stop_ownership(
    store: FleetStore,
    keeper: OwnershipKeeper,
    on_change: OnChange,
    *,
    clock: Clock = trio.current_time,
) -> None:
    """A graceful stop: stop acting on every unit (``on_change``, awaited), then release and
    leave.

    A store that cannot be reached is logged; its leases then run out on their own.
    """
    leases = keeper.stop()
    change = keeper.settle(clock())
    if change:
        await on_change(change)
    try:
        await store.release(leases)
        await store.leave(keeper.manager)
    except StoreUnavailable as exc:
        logger.warning("%s; leaving %d leases to run out", exc, len(leases))
