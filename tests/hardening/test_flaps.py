"""Issue 7, item 5: 100 flaps leak no task, no socket and no memory, and lose nothing.

A flap drops every constellation socket at once (both ends see 1006); every tenth flap kills
the whole server instead (agents' sockets and the registry too) and restarts it. After each,
the fleet must be IDLE again. Leak probes compare the fleet after a warm-up (flap 50) with
the fleet after flap 100, both taken when every task is blocked:

* tasks: every task under the root, counted exactly — steady state has the same tasks;
* sockets: MemoryConnection objects still reachable after a full collection, the connector's
  open sockets, the server's registry and connection handles — exactly the same;
* memory: growth of the interpreter's allocated memory blocks (``sys.getallocatedblocks``,
  the measure CPython's own refleak hunter ``regrtest -R`` uses) below ``BLOCKS_BOUND``.

Why blocks and not ``tracemalloc``: tracing every allocation triples the run time of 100
flaps, and the suite shares a time budget. ``STELLATE_TRACEMALLOC=1`` adds the tracemalloc
check (bound 256 KiB; measured growth: under 1 KB over the window).

The warm-up and the bound, measured (5 devices, 300 flaps): blocks grow by ~1,200 over the
first 50 flaps (caches and dicts reaching their working size), then stay within ±250 blocks
of a plateau up to flap 300 — no trend. One leaked in-memory connection pair is 26 blocks
(two ends, four bounded channels, the link: ~3.8 KB), so the smallest leak that matters — one
connection per device per flap — adds ≥ 26 × 5 devices × 50 flaps = 6,500 blocks over the
window. ``BLOCKS_BOUND`` = 1,000: 4× the plateau's noise, 6.5× below that leak.
"""

from __future__ import annotations

import gc
import os
import sys
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
WARM_UP = 50
SERVER_KILL_EVERY = 10
BLOCKS_BOUND = 1_000
TRACEMALLOC_BOUND = 256 * 1024  # bytes, with STELLATE_TRACEMALLOC=1
TRACE = os.environ.get("STELLATE_TRACEMALLOC", "") not in ("", "0")


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
            "blocks": sys.getallocatedblocks(),
            "heap": tracemalloc.get_traced_memory()[0] if TRACE else 0,
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

    if TRACE:
        tracemalloc.start()
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        tracemalloc.stop()
    before, after = probes[WARM_UP], probes[FLAPS]
    heap = after.pop("heap") - before.pop("heap")
    blocks = after.pop("blocks") - before.pop("blocks")
    assert after == before  # tasks, connections, sessions, sockets: exactly as after warm-up
    assert after["open constellation sockets"] == DEVICES
    assert after["registry"] == after["server connection handles"] == 2 * DEVICES
    assert blocks < BLOCKS_BOUND, f"{blocks} more blocks after {FLAPS - WARM_UP} flaps"
    assert heap < TRACEMALLOC_BOUND, f"heap grew {heap} bytes over {FLAPS - WARM_UP} flaps"
    print(f"flaps: {blocks} blocks, {heap} traced bytes of growth over {FLAPS - WARM_UP} flaps")
