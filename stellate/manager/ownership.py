"""The ownership loop: one manager's rounds against the fleet store, as a trio task.

Each round: join (the first time) or renew, hand over the units the rendezvous rule now gives to
another manager, claim the ones it gives to this manager. The decisions are the keeper's
(``stellate.store.keeper``); this task performs them and reports what changed through
``on_change`` — the units this manager started or stopped acting as owner of, *before* their
leases are released, so the caller stops those devices first.

A second task watches the clock: a unit stops being acted on at its self-fencing instant even
while a store call hangs. A store that cannot be reached is logged once when it goes and once
when it comes back, never per attempt; meanwhile the leases run out on their own (self-fencing)
and the loop keeps trying every round.

Not wired into ``ConstellationDeviceManager`` yet: docs/scaling.md says what remains.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..store.keeper import Change, OwnershipKeeper
from ..store.port import FleetStore, Renewal, StoreUnavailable

__all__ = ["keep_ownership", "stop_ownership"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
OnChange = Callable[[Change], None]


async def keep_ownership(
    store: FleetStore,
    keeper: OwnershipKeeper,
    on_change: OnChange,
    *,
    clock: Clock = trio.current_time,
    sleep: Sleep = trio.sleep,
) -> None:
    """Run ``keeper``'s rounds against ``store`` until cancelled.

    Args:
        store: the fleet store.
        keeper: this manager's ownership state.
        on_change: called with every change of the units acted on (synchronously: start or
            stop their devices from here, or schedule it).
        clock: the manager's monotonic clock (seconds).
        sleep: sleeps that many seconds of ``clock``.

    Raises:
        ManagerIdInUse: another live manager has this manager's id.
    """

    gained = trio.Event()

    def settle() -> None:
        nonlocal gained
        change = keeper.settle(clock())
        if change:
            on_change(change)
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
            settle()

    # The first join is made before the watcher starts, so an id in use is raised as itself
    # (from inside the nursery it would come out wrapped in an exception group).
    down: StoreUnavailable | None = None
    renewal: Renewal | None = None
    while renewal is None:
        try:
            sent = clock()
            renewal = await store.join(keeper.manager, keeper.policy.lease)
        except StoreUnavailable as exc:
            if down is None or down.kind != exc.kind:
                logger.warning("%s; retrying", exc)
            down = exc
            await sleep(keeper.policy.renew_every)
    keeper.renewed(renewal, sent)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_expiry)
        first = True  # the join's answer stands for the first round's renewal
        while True:
            try:
                if not first:
                    sent = clock()
                    keeper.renewed(
                        await store.renew(keeper.manager, keeper.leases(), keeper.policy.lease),
                        sent,
                    )
                first = False
                settle()
                handed = keeper.hand_off(clock())
                settle()
                if handed:
                    await store.release(handed)
                asked = keeper.to_claim(clock())
                if asked:
                    sent = clock()
                    try:
                        claimed = await store.claim(keeper.manager, asked, keeper.policy.lease)
                    except StoreUnavailable:
                        keeper.claim_failed(asked)
                        raise
                    keeper.claimed(claimed, sent, asked)
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
            settle()
            await sleep(keeper.wake_in(clock()))


async def stop_ownership(
    store: FleetStore,
    keeper: OwnershipKeeper,
    on_change: OnChange,
    *,
    clock: Clock = trio.current_time,
) -> None:
    """A graceful stop: stop acting on every unit (``on_change``), then release and leave.

    A store that cannot be reached is logged; its leases then run out on their own.
    """
    leases = keeper.stop()
    change = keeper.settle(clock())
    if change:
        on_change(change)
    try:
        await store.release(leases)
        await store.leave(keeper.manager)
    except StoreUnavailable as exc:
        logger.warning("%s; leaving %d leases to run out", exc, len(leases))
