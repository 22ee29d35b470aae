"""Whole managers sharing one fleet through the store, under a MockClock: the issue's invariants.

Hypothesis draws schedules of managers joining, crashing (kill -9: nothing handed over),
stopping gracefully (SIGTERM: everything handed over), being cut off from the store, store
outages, and a clock rate per manager within ±DRIFT_BOUND; each manager is a real
ConstellationDeviceManager with a real FleetShare, its devices served by the fake agent server
(share_world.py). After every step and every 0.1 s of simulated time:

1. never two managers registered for one device at the agent server at once (nor running it);
2. no device FAILED (every agent is healthy: a FAILED device could only come from a move);
3. after the last change, every device running on exactly one live manager that acts as its
   unit's owner, within ``unowned_bound`` (plus the time to read its snapshot and start it);
4. no snapshot write accepted under a stale lease;

and at the end, with the store reachable, every device IDLE on exactly one manager.
"""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples
from schedules import Schedule, drift, play
from schedules import schedules as schedules_of
from share_world import ShareWorld

from stellate.adapters.memory import MemoryNetwork
from stellate.store.ownership import DRIFT_BOUND, LeasePolicy, RateLimit, unowned_bound

DEVICES = [f"device-{i}" for i in range(24)]
POLICY = LeasePolicy(15.0)
RATE, BURST = 8.0, 8.0
#: Ownership within the bound; the devices of the last units claimed are started as the claim
#: answers (a snapshot read: no simulated time), so the bound is the rules' own.
BOUND = unowned_bound(POLICY, len(DEVICES), RateLimit(RATE, BURST))
#: After the bound, the time every device gets to be IDLE again (a registration, and the
#: backoff of a device whose first attempt met the previous owner's registration).
SETTLE = 30.0
SAMPLE = 0.1

schedules = schedules_of(max_size=8)


async def run_schedule(schedule: Schedule, drifts: tuple[float, ...]) -> ShareWorld:
    async with MemoryNetwork() as network, trio.open_nursery() as nursery:
        world = ShareWorld(nursery, network, DEVICES, POLICY, RATE, BURST)
        for d in drifts:
            world.join(d)
        settled_from = await play(
            world, schedule, bound=BOUND, sample_every=SAMPLE, nursery=nursery
        )
        await trio.sleep_until(settled_from + SETTLE)
        world.sample(all_owned=True)
        world.violations += world.idle_everywhere()
        nursery.cancel_scope.cancel()
    return world


def simulate(schedule: Schedule, drifts: tuple[float, ...] = (0.0, 0.0)) -> ShareWorld:
    return trio.run(
        run_schedule, schedule, drifts, clock=trio.testing.MockClock(autojump_threshold=0)
    )


@settings(max_examples=examples(25))
@given(schedules, st.tuples(drift, drift))
@example([(20.0, ("join", 0.0)), (20.0, ("stop", 0)), (20.0, ("crash", 0))], (0.0, 0.0))
@example([(0.0, ("crash", 0))], (0.0, 0.0))  # while it starts (the thorough profile found it)
@example(  # a partition healing while its devices close (found by the thorough profile too)
    [
        (0.0, ("join", 0.05)),
        (11.852689495404848, ("stop", 4)),
        (24.118982197184412, ("crash", 1)),
        (22.93223722783473, ("join", 0.004451085434245314)),
        (1.1, ("join", -0.0)),
        (0.5, ("partition", 0, 10.550541521385934)),
        (1.6874965001226032, ("partition", 1, 18.204247427350854)),
        (22.19646242695605, ("join", -0.003940445099260226)),
    ],
    (-0.0006210733321302536, -0.00547176330606295),
)
@example([(20.0, ("partition", 0, 40.0))], (-DRIFT_BOUND, DRIFT_BOUND))
@example([(20.0, ("outage", 30.0)), (1.0, ("join", DRIFT_BOUND))], (DRIFT_BOUND, 0.0))
def test_managers_share_a_fleet_safely_on_every_schedule(
    schedule: Schedule, drifts: tuple[float, float]
) -> None:
    world = simulate(schedule, drifts)
    assert world.violations == []
    assert world.oracle.violations == []
    assert world.fake.duplicates == []
    assert world.oracle.writes_accepted > 0


def test_a_crashed_manager_s_devices_come_back_idle_on_the_survivor_from_their_snapshots() -> None:
    world = simulate([(20.0, ("crash", 0))])
    assert world.violations == [] and world.fake.duplicates == []
    (survivor,) = world.live()
    assert survivor.share is not None and survivor.share.adopted > len(DEVICES) / 2
    assert survivor.manager is not None
    assert set(survivor.manager.device_registry.get_all_devices()) == set(DEVICES)


def test_a_joining_manager_takes_its_share_by_hand_offs() -> None:
    world = simulate([(20.0, ("join", 0.0))])
    assert world.violations == [] and world.fake.duplicates == []
    shares = [m.share for m in world.live()]
    assert all(s is not None and s.adopted > 0 for s in shares)
    assert sum(s.released for s in shares if s is not None) > 0  # moved by hand-offs


def test_a_partitioned_manager_closes_its_devices_before_the_others_take_them() -> None:
    world = simulate([(20.0, ("partition", 0, 40.0))])
    assert world.violations == [] and world.fake.duplicates == []
    cut = world.managers[0].share
    assert cut is not None and cut.released > 0  # self-fenced: its devices were closed
