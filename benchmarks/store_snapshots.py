"""``python -m benchmarks.store_snapshots [--sizes 20000,100000]``: what snapshots cost the store.

Against a real ``redis-server`` started on a free loopback port, through the real Redis adapter:
N devices' snapshots as an IDLE device of the example fleet leaves them (its merged system info
included), written in the batches a manager writes them in (``write_snapshots``: one script
call per ``BATCH`` devices, pipelined), then the fleet's view read once (what ``stellate
status`` and a manager's fleet page read). For each size: the encoded snapshot's size, Redis's
memory per device (``INFO memory`` before and after), Redis's CPU and the writer's CPU per
snapshot written, and the view's read time, the reader's CPU and Redis's. These are the
per-device costs docs/scaling.md's sizing model is built from.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import trio

from stellate.adapters.store_redis import open_redis_store
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.fsm.resume import LifecycleMemory
from stellate.store.ownership import units_of
from stellate.store.port import SnapshotWrite
from stellate.store.report import fleet_report
from stellate.store.snapshot import encode, snapshot_of

from .redis_server import RedisServer
from .report import grid

TTL = 60.0
#: What the example fleet's agents report (stellate agent on this machine), merged.
SYSTEM_INFO = {
    "platform": "linux",
    "os_version": "#1 SMP PREEMPT_DYNAMIC @0",
    "cpu_count": 2,
    "memory_total_gb": 23.54,
    "hostname": "vm",
    "ip_address": "192.0.2.2",
    "platform_type": "computer",
    "schema_version": "1.0",
}
CAPABILITIES = ("gui", "cli", "browser", "file_system", "office", "linux_apps")


def snapshot_text(device_id: str, now: datetime) -> str:
    profile = AgentProfile(
        device_id=device_id,
        server_url="ws://127.0.0.1:5005/ws",
        os="linux",
        capabilities=CAPABILITIES,
        metadata={"system_info": SYSTEM_INFO, "custom_metadata": {}},
        status=DeviceStatus.IDLE,
        last_heartbeat=now,
    )
    return encode(snapshot_of(profile, LifecycleMemory(active_for=30.0), now=now, since=now))


async def _measure(server: RedisServer, n: int) -> dict[str, Any]:
    devices = [f"device-{i}" for i in range(n)]
    now = datetime.now(UTC)
    texts = {d: snapshot_text(d, now) for d in devices}
    async with open_redis_store(
        server.url, prefix=f"bench-snapshots-{n}", io_timeout=120.0
    ) as store:
        await store.join("bench", TTL)
        units = units_of(devices)
        claimed = await store.claim("bench", list(units), TTL)
        lease = {lease.unit: lease for lease in claimed.granted}
        writes = [
            SnapshotWrite(lease[unit], device, texts[device])
            for unit, members in units.items()
            for device in members
        ]
        memory0, redis_cpu0 = server.memory(), server.cpu()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        written = await store.write_snapshots(writes)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        memory1, redis_cpu1 = server.memory(), server.cpu()
        assert len(written.accepted) == n
        cpu2, wall2, redis_cpu2 = time.process_time(), time.perf_counter(), server.cpu()
        report = fleet_report(await store.view())
        cpu3, wall3, redis_cpu3 = time.process_time(), time.perf_counter(), server.cpu()
        assert len(report.devices) == n
        await store.release(claimed.granted)
    redis_cpu = redis_cpu1 - redis_cpu0
    encode_cpu0 = time.process_time()
    for device in devices[:2000]:
        snapshot_text(device, now)
    encode_us = (time.process_time() - encode_cpu0) * 1e6 / min(n, 2000)
    return {
        "devices": n,
        "snapshot bytes": round(sum(len(t) for t in texts.values()) / n),
        "redis bytes per device": round((memory1 - memory0) / n),
        "redis CPU us per write": round(redis_cpu * 1e6 / n, 2),
        "writer CPU us per write (adapter)": round((cpu1 - cpu0) * 1e6 / n, 2),
        "encode CPU us per snapshot": round(encode_us, 2),
        "write wall ms (all)": round((wall1 - wall0) * 1e3, 1),
        "view read wall s": round(wall3 - wall2, 3),
        "view reader CPU s": round(cpu3 - cpu2, 3),
        "view Redis CPU s": round(redis_cpu3 - redis_cpu2, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.store_snapshots", description=__doc__
    )
    parser.add_argument("--sizes", default="20000,100000")
    args = parser.parse_args(argv)
    with RedisServer() as server:
        rows = [trio.run(_measure, server, int(size)) for size in args.sizes.split(",")]
    headers = list(rows[0])
    print(grid(headers, [[str(row[h]) for h in headers] for row in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
