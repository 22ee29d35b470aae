"""What both fleet-store simulations draw, and how a drawn schedule is played against a world.

A schedule is a list of (seconds to wait, step): managers joining with a drifting clock,
crashing (kill -9: nothing handed over), stopping gracefully (everything handed over), a store
outage, one manager cut off from the store. ``ownership_world.World`` plays it with the
ownership loops alone, ``share_world.ShareWorld`` with whole managers; each checks its own
invariants in ``sample``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import trio
from hypothesis import strategies as st

from stellate.store.ownership import DRIFT_BOUND
from stellate.store.port import Unavailability

Step = tuple[Any, ...]
Schedule = list[tuple[float, Step]]

drift = st.floats(-DRIFT_BOUND, DRIFT_BOUND)
who = st.integers(0, 7)
STEPS = (
    st.tuples(st.just("join"), drift),
    st.tuples(st.just("crash"), who),
    st.tuples(st.just("stop"), who),
    st.tuples(st.just("outage"), st.floats(0.5, 40.0)),
    st.tuples(st.just("partition"), who, st.floats(0.5, 40.0)),
)


def schedules(*more: st.SearchStrategy[Step], max_size: int) -> st.SearchStrategy[Schedule]:
    """Schedules of the common steps and ``more`` (a world's own), a change at most 30 s apart."""
    steps = st.one_of(*STEPS, *more)
    return st.lists(st.tuples(st.floats(0.0, 30.0), steps), min_size=1, max_size=max_size)


class Store(Protocol):
    unavailable: Unavailability | None


class World(Protocol):
    """What a simulated world offers a schedule."""

    @property
    def store(self) -> Store: ...

    def live(self) -> Sequence[Any]: ...
    def join(self, drift: float) -> Any: ...
    def crash(self, manager: Any) -> None: ...
    async def stop(self, manager: Any) -> None: ...
    async def partition(self, manager: Any, seconds: float) -> None: ...
    def sample(self, *, all_owned: bool) -> None: ...


async def play(
    world: World,
    schedule: Schedule,
    *,
    bound: float,
    sample_every: float,
    nursery: trio.Nursery,
    more: Mapping[str, Callable[..., Awaitable[None]]] | None = None,
) -> float:
    """Play ``schedule``, sampling the world every ``sample_every`` seconds (in a task of
    ``nursery`` that runs until it is cancelled) and after every step, asking for every unit
    owned only from ``bound`` seconds after the last change. Returns that instant. A step whose
    manager does not exist (a crash with none live) changes nothing; ``more`` plays a world's
    own steps (their arguments after the kind)."""
    settled_from = trio.current_time() + bound

    async def sampler() -> None:
        while True:
            world.sample(all_owned=trio.current_time() >= settled_from and bool(world.live()))
            await trio.sleep(sample_every)

    nursery.start_soon(sampler)
    for wait, (kind, *args) in schedule:
        await trio.sleep(wait)
        settled_from = float("inf")  # a change begins: the bound counts from its end
        live = world.live()
        if kind == "join":
            world.join(args[0])
        elif kind == "crash" and live:
            world.crash(live[args[0] % len(live)])
        elif kind == "stop" and live:
            await world.stop(live[args[0] % len(live)])
        elif kind == "outage":
            world.store.unavailable = Unavailability.UNREACHABLE
            await trio.sleep(args[0])
            world.store.unavailable = None
        elif kind == "partition" and live:
            await world.partition(live[args[0] % len(live)], args[1])
        elif more is not None and kind in more:
            await more[kind](*args)
        world.sample(all_owned=False)
        settled_from = trio.current_time() + bound
    if not world.live():
        world.join(0.0)
        settled_from = trio.current_time() + bound
    return settled_from
