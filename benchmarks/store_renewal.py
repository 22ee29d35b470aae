"""``python -m benchmarks.store_renewal [--sizes 1000,20000] [--rounds 20]``: slots or keys?

What one renewal round costs a manager and its Redis when devices are owned one lease per
device ("keys") or one lease per hash slot of devices ("slots", stellate.store.ownership.SLOTS),
through the real Redis adapter against a real ``redis-server`` started on a free loopback port.
For each size and each way: the leases renewed per round, the script calls and pipelined round
trips per round, the manager's CPU per round (``time.process_time`` around the call, so it
includes coredis's encoding and decoding) and per device, the wall time per round, and the
server's CPU per round (``INFO cpu`` before and after).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import trio

from stellate.adapters.store_redis import BATCH, open_redis_store
from stellate.store.ownership import units_of

from .redis_server import RedisServer
from .report import grid

TTL = 15.0


async def _measure(
    server: RedisServer, devices: list[str], way: str, rounds: int
) -> dict[str, Any]:
    units = sorted(units_of(devices)) if way == "slots" else devices
    async with open_redis_store(server.url, prefix=f"bench-{way}-{len(devices)}") as store:
        await store.join("bench", TTL)
        claimed = await store.claim("bench", units, TTL)
        leases = claimed.granted
        assert len(leases) == len(units)
        await store.renew("bench", leases, TTL)  # warm: scripts loaded, connection open
        cpu, wall = [], []
        server_before = server.cpu()
        for _ in range(rounds):
            began_cpu, began = time.process_time(), time.perf_counter()
            renewal = await store.renew("bench", leases, TTL)
            cpu.append(time.process_time() - began_cpu)
            wall.append(time.perf_counter() - began)
            assert len(renewal.renewed) == len(units)
        server_cpu = (server.cpu() - server_before) / rounds
        await store.release(leases)
    cpu.sort()
    wall.sort()
    median_cpu = cpu[len(cpu) // 2]
    return {
        "devices": len(devices),
        "way": way,
        "leases per round": len(units),
        "script calls per round": 1 + math.ceil(len(units) / BATCH),
        "round trips per round": 1,
        "manager CPU ms per round": round(median_cpu * 1000, 2),
        "manager CPU us per device": round(median_cpu * 1e6 / len(devices), 2),
        "wall ms per round": round(wall[len(wall) // 2] * 1000, 2),
        "redis CPU ms per round": round(server_cpu * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store_renewal", description=__doc__)
    parser.add_argument("--sizes", default="1000,20000")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    with RedisServer() as server:
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            devices = [f"device-{i}" for i in range(size)]
            for way in ("keys", "slots"):
                rows.append(trio.run(_measure, server, devices, way, args.rounds))
    headers = list(rows[0])
    print(grid(headers, [[str(row[h]) for h in headers] for row in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
