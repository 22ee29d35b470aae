"""Issue 21, class 7: a side door cannot starve the main job of descriptors.

The manager's fleet port (``stellate up --metrics-port``) had no connection limit and was not
counted in the descriptor budget: 250 idle HTTP connections at ``ulimit -n 96`` made a device's
connect attempts fail with EMFILE for as long as they stayed. Now the fleet port holds at most
``MAX_FLEET_CONNECTIONS`` connections at once (more wait in the kernel's backlog, holding no
descriptor of the process), and ``stellate up`` counts that share in the budget it checks
before starting.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
from hardening_support import FIGURES
from http_get import raw_status
from hypothesis import example, given, settings
from hypothesis import strategies as st
from profiles import examples
from real_time import HANG_GUARD

from stellate.adapters.ws_server import ListenerStats
from stellate.cli.up import DESCRIPTORS_PER_DEVICE, _Options, descriptors_needed
from stellate.manager import ConstellationDeviceManager
from stellate.manager.metrics import FLEET_DESCRIPTORS, MAX_FLEET_CONNECTIONS, serve_fleet


async def _eventually(predicate: object) -> None:
    """Poll until ``predicate()`` holds: the listener accepts in its own task."""
    while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
        await trio.sleep(0.01)


FLEET_REQUEST = b"GET /api/fleet HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@settings(max_examples=examples(8))
@given(idle=st.integers(0, 3 * MAX_FLEET_CONNECTIONS))
@example(idle=MAX_FLEET_CONNECTIONS - 1)  # the boundary, documented in the README
@example(idle=MAX_FLEET_CONNECTIONS)
@example(idle=MAX_FLEET_CONNECTIONS + 1)
@example(idle=250)  # the outside run's count
def test_the_fleet_port_holds_at_most_its_share_however_many_knock(idle: int) -> None:
    """``idle`` peers connect and say nothing: the port holds at most its share of them, and a
    request that waited behind them is answered as soon as they go."""
    FIGURES["side-door connections tried"] += idle + 1

    async def main() -> None:
        stats = ListenerStats()
        with trio.fail_after(HANG_GUARD):
            async with (
                ConstellationDeviceManager(strict=True) as manager,
                trio.open_nursery() as nursery,
            ):
                port = await nursery.start(
                    partial(serve_fleet, manager, "127.0.0.1", 0, stats=stats)
                )
                streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(idle)]
                held = min(idle, MAX_FLEET_CONNECTIONS)
                await _eventually(lambda: stats.open == held)
                answered = trio.Event()
                status: list[int] = []

                async def ask() -> None:
                    status.append(await raw_status(port, FLEET_REQUEST))
                    answered.set()

                nursery.start_soon(ask)
                await trio.testing.wait_all_tasks_blocked()
                assert stats.open <= MAX_FLEET_CONNECTIONS
                if idle < MAX_FLEET_CONNECTIONS:
                    await answered.wait()
                assert (idle >= MAX_FLEET_CONNECTIONS) == (not answered.is_set())
                for stream in streams:
                    await stream.aclose()
                await answered.wait()
                assert status == [200]
                nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.parametrize("embedded", [True, False])
@pytest.mark.parametrize("devices", [1, 500])
def test_stellate_up_budgets_the_fleet_port(embedded: bool, devices: int) -> None:
    without = _Options(embedded=embedded, once=True, as_json=False)
    with_port = _Options(embedded=embedded, once=True, as_json=False, metrics_port=0)
    assert descriptors_needed(devices, without) == devices * DESCRIPTORS_PER_DEVICE[embedded]
    assert descriptors_needed(devices, with_port) == (
        devices * DESCRIPTORS_PER_DEVICE[embedded] + FLEET_DESCRIPTORS
    )
    assert FLEET_DESCRIPTORS >= MAX_FLEET_CONNECTIONS + 1  # its connections and its listener
