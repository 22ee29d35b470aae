"""The two fleet store adapters behind one test face: a store, and a way to let time pass.

Leases are about time, and tests do not sleep: :meth:`StoreHarness.advance` moves the store's
time forward. The in-memory store reads a :class:`ManualClock`; on Redis every lease's
remaining time is shortened on the server (``PEXPIRE``/``PEXPIREAT`` on unit keys, the
membership scores moved back), which is what the same seconds passing would have done.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import attrs

from stellate.adapters.store_memory import MemoryFleetStore
from stellate.adapters.store_redis import RedisFleetStore, open_redis_store
from stellate.store.port import FleetStore


@attrs.define
class ManualClock:
    """A clock that moves only when told (seconds)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class StoreHarness(Protocol):
    store: FleetStore

    async def advance(self, seconds: float) -> None: ...


@attrs.define
class MemoryHarness:
    clock: ManualClock = attrs.field(factory=ManualClock)
    store: MemoryFleetStore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.store = MemoryFleetStore(clock=self.clock)

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds


@attrs.define
class RedisHarness:
    store: RedisFleetStore
    prefix: str

    async def advance(self, seconds: float) -> None:
        client = self.store._client
        tag = "{" + self.prefix + "}"
        ms = round(seconds * 1000)
        async for key in client.scan_iter(match=f"{tag}:unit:*"):
            left = await client.pttl(key)
            if left <= ms:
                await client.pexpireat(key, 1)  # an instant in the past: gone now
            else:
                await client.pexpire(key, left - ms)
        members = await client.zrange(f"{tag}:members", 0, -1, withscores=True)
        for member, score in members:
            await client.zadd(f"{tag}:members", {member: score - ms})
        renewed = await client.hgetall(f"{tag}:renewed")
        for member, at in renewed.items():
            await client.hset(f"{tag}:renewed", {member: int(at) - ms})


_prefixes = itertools.count()


@asynccontextmanager
async def redis_harness(url: str) -> AsyncIterator[RedisHarness]:
    """A store on the Redis at ``url`` under a prefix no other test uses."""
    prefix = f"test{next(_prefixes)}"
    async with open_redis_store(url, prefix=prefix) as store:
        yield RedisHarness(store, prefix)
