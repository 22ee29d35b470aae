"""The fleet's connection-attempt slots: bounded handshakes, timeouts that start with a slot."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from stellate import AgentProfile, DeviceStatus, Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import Connection

URL = "ws://slots.test:5005/ws"


class CountingConnector:
    """Delegates to the network, recording how many opens are in their handshake at once."""

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        self.in_flight = 0
        self.peak = 0
        self.started_at: list[float] = []

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[Connection]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.started_at.append(trio.current_time())
        try:
            async with self.network.open(url) as conn:
                self.in_flight -= 1
                yield conn
                return
        except BaseException:
            self.in_flight -= 1
            raise


async def test_handshakes_in_flight_never_exceed_the_slots(autojump_clock: Any) -> None:
    async with MemoryNetwork() as network:
        network.hang(URL)  # every handshake hangs until its connect timeout
        connector = CountingConnector(network)
        async with ConstellationDeviceManager(
            "slots",
            connector=connector,
            rng=random.Random(0),
            max_connecting=2,
            timing=Timing(connect_timeout=10.0, reconnect_delay=1.0),
            strict=True,
        ) as manager:
            for i in range(5):
                manager.add_device(AgentProfile(f"d{i}", URL, max_retries=1))
            final = await manager.wait_settled()
            reasons = {i: manager.failure_reason(f"d{i}") for i in range(5)}
    assert all(p.status is DeviceStatus.FAILED for p in final.values())
    assert connector.peak == 2
    # Each attempt got its full 10 s once it held a slot: waiting in the queue did not
    # eat into it (otherwise the queued devices would have timed out at t=10 with the first).
    assert sorted(connector.started_at) == [0.0, 0.0, 10.0, 10.0, 20.0]
    assert all(r is not None and "timed out" in r for r in reasons.values()), reasons
