"""Issue 7, item 5: 100 flaps leak no task, no socket and no memory, and lose nothing.

A flap drops every constellation socket at once (both ends see 1006); every tenth flap kills
the whole server instead (agents' sockets and the registry too) and restarts it. After each,
the fleet must be IDLE again. Leak probes compare the fleet after a warm-up (flap 10) with
the fleet after flap 100, both taken when every task is blocked:

* tasks: every task under the root, counted exactly — steady state has the same tasks;
* sockets: MemoryConnection objects still reachable after a full collection, the connector's
  open sockets, the server's registry and connection handles — exactly the same;
* memory: ``tracemalloc`` growth between the two points below ``MEMORY_BOUND``.

The memory bound: one leaked in-memory connection pair costs ~3.8 KB (measured with
tracemalloc: two ends, four bounded channels, the link), a leaked server session ~0.2 KB
more. The smallest leak that matters — one connection per device per flap — would grow the
heap by ≥ 3.8 KB × 5 devices × 90 flaps ≈ 1.7 MB; a lone 600-byte record per device-flap would
add ~270 KB. Measured growth without a leak is ~15-25 KB (allocator and dict-resize noise).
256 KiB sits ~10× above that noise and ~6× below the smallest connection leak.
"""

from __future__ import annotations

import gc
import tracemalloc

import trio
import trio.testing
from hardening_support import (
    FIGURES,
    Fleet,
    count_tasks,
    live_memory_connections,
    until_all_idle_again,
)

from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import DeviceStatus
from stellate.protocol import ServerSession

DEVICES = 5
FLAPS = 100
WARM_UP = 10
SERVER_KILL_EVERY = 10
MEMORY_BOUND = 256 * 1024


def _sessions() -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is ServerSession)


def test_100_flaps_leak_nothing_and_lose_nothing() -> None:
    ids = [f"flap{i}" for i in range(DEVICES)]
    probes: dict[int, dict[str, int]] = {}

    async def probe(fleet: Fleet) -> dict[str, int]:
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        return {
            "tasks": count_tasks(),
            "memory connections": live_memory_connections(),
            "server sessions": _sessions(),
            "open constellation sockets": fleet.connector.open_now,
            "registry": len(fleet.host.server.registry),
            "server connection handles": len(fleet.host.server._handles),
            "heap": tracemalloc.get_traced_memory()[0],
        }

    async def main() -> None:
        async with MemoryNetwork() as network, trio.open_nursery() as nursery:
            fleet = Fleet(network, ids, max_retries=lambda _d: 5)
            with trio.fail_after(FLAPS * 60.0):  # virtual: ~1 s of backoff per flap
                async with fleet.manager.events() as events:
                    await fleet.start(nursery)
                    await until_all_idle_again(events, ids)
                    for flap in range(1, FLAPS + 1):
                        if flap % SERVER_KILL_EVERY == 0:
                            fleet.kill_server()
                            await fleet.restart_server()
                        else:
                            assert fleet.connector.drop_all() == DEVICES
                        FIGURES["faults injected"] += 1
                        await until_all_idle_again(events, ids)
                        if flap in (WARM_UP, FLAPS):
                            probes[flap] = await probe(fleet)
            FIGURES["device flaps"] += DEVICES * FLAPS
            FIGURES["devices flapped"] += DEVICES
            profiles = fleet.profiles()
            assert all(p.status is DeviceStatus.IDLE for p in profiles.values())
            assert all(p.connection_attempts == 0 for p in profiles.values())
            fleet.check_nothing_lost()
            for d in ids:  # telemetry merged again after the last flap
                assert profiles[d].metadata["system_info"]["hostname"] == f"host-{d}"
            nursery.cancel_scope.cancel()

    tracemalloc.start()
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        tracemalloc.stop()
    before, after = probes[WARM_UP], probes[FLAPS]
    growth = after.pop("heap") - before.pop("heap")
    assert after == before  # tasks, connections, sessions, sockets: exactly as after warm-up
    assert after["open constellation sockets"] == DEVICES
    assert after["registry"] == after["server connection handles"] == 2 * DEVICES
    assert growth < MEMORY_BOUND, f"heap grew {growth} bytes over {FLAPS - WARM_UP} flaps"
