"""Managers joining, crashing, stopping, cut off, with drifting clocks: the ownership invariants.

Hypothesis draws a schedule; a world of managers (ownership_world.py) runs it under a MockClock
against the in-memory store, each manager on the real ownership loop and its own clock (rate
within ±DRIFT_BOUND of the store's). The oracle checks, all along and at the end:

1. never two managers acting as owner of one unit at the same moment;
2. no snapshot write accepted under a stale lease (late writes by crashed, stopped and cut-off
   managers are part of the schedules);
3. with the store reachable, every unit owned again within ``unowned_bound`` of the last change.

A last test runs a clock drifting past the bound and shows the oracle catches the overlap.
"""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from ownership_world import World
from profiles import examples
from schedules import Schedule, drift, play, who
from schedules import schedules as schedules_of

from stellate.store.ownership import LeasePolicy, RateLimit, unowned_bound

DEVICES = [f"device-{i}" for i in range(30)]
POLICY = LeasePolicy(15.0)
RATE, BURST = 10.0, 10.0
BOUND = unowned_bound(POLICY, len(DEVICES), RateLimit(RATE, BURST))
SAMPLE = 0.1  # seconds of true time between two samples of every keeper

schedules = schedules_of(st.tuples(st.just("zombie"), who), max_size=10)

#: Figures of the last run, for the report (the schedules run, the samples taken).
RUNS = {"schedules": 0, "samples": 0, "writes accepted": 0, "writes refused": 0}


async def run_schedule(schedule: Schedule, drifts: tuple[float, float]) -> World:
    async with trio.open_nursery() as nursery:
        world = World(nursery, DEVICES, POLICY, RATE, BURST)
        for d in drifts:
            world.join(d)

        async def zombie(index: int) -> None:
            if world.managers:
                await world.zombie_write(world.managers[index % len(world.managers)])

        settled_from = await play(
            world,
            schedule,
            bound=BOUND,
            sample_every=SAMPLE,
            nursery=nursery,
            more={"zombie": zombie},
        )
        await trio.sleep_until(settled_from + 2 * POLICY.lease)
        for manager in world.managers:  # the dead write late, after the survivors took over
            await world.zombie_write(manager)
        world.finish()
        nursery.cancel_scope.cancel()
    return world


def simulate(schedule: Schedule, drifts: tuple[float, float]) -> World:
    return trio.run(
        run_schedule, schedule, drifts, clock=trio.testing.MockClock(autojump_threshold=0)
    )


@settings(max_examples=examples(40))
@given(schedules, st.tuples(drift, drift))
def test_ownership_invariants_hold_on_every_schedule(
    schedule: Schedule, drifts: tuple[float, float]
) -> None:
    world = simulate(schedule, drifts)
    RUNS["schedules"] += 1
    RUNS["samples"] += world.samples
    RUNS["writes accepted"] += world.oracle.writes_accepted
    RUNS["writes refused"] += world.oracle.writes_refused
    assert world.oracle.violations == []
    assert world.oracle.writes_accepted > 0


def test_a_crash_is_taken_over_within_the_bound_and_late_writes_are_refused() -> None:
    world = simulate([(20.0, ("crash", 0)), (1.0, ("zombie", 0))], (0.0, 0.0))
    assert world.oracle.violations == []
    assert world.oracle.writes_refused > 0  # the crashed manager's late writes
    (survivor,) = world.live()
    assert world.final[survivor.name] == set(survivor.keeper.units)


def test_a_partitioned_manager_stops_acting_before_its_units_move() -> None:
    world = simulate([(20.0, ("partition", 0, 30.0))], (0.0, 0.0))
    assert world.oracle.violations == []
    moved = [
        unit
        for unit, intervals in world.oracle.acting.items()
        if len({interval[0] for interval in intervals}) > 1
    ]
    assert moved  # the cut-off manager's units went to the other and came back


def test_the_oracle_sees_a_clock_drifting_past_the_bound() -> None:
    # A manager whose clock runs 45 % slow acts past its lease: cut off, it keeps acting for
    # valid_for / 0.55 = 21.8 s of store time, while its units are free after 15 s and taken
    # by the other manager at its next round, at most 5 s later.
    world = simulate([(20.0, ("partition", 0, 40.0))], (-0.45, 0.0))
    assert any("acted" in violation for violation in world.oracle.violations)
