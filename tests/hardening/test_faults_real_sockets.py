"""Issue 7, item 5 on real sockets: 50 agents and 50 managed devices on 127.0.0.1, the agent
server killed (its task cancelled: every socket drops, the registry is gone) and restarted on
the same port, repeatedly. Every device is IDLE again each time, nothing configured is lost,
and the process holds the same number of file descriptors after the last restart as after the
first (no socket leak). Guarded by ``trio.fail_after``; nothing asserts on real-time speed.
"""

from __future__ import annotations

import random

import psutil
import trio
from hardening_support import (
    FIGURES,
    check_nothing_lost,
    configured_profile,
    system_info_for,
    until_all_idle_again,
)
from real_time import HANG_GUARD, PATIENCE

from stellate import Timing
from stellate.adapters.websocket import WebSocketConnector
from stellate.agent import DeviceAgent
from stellate.fsm import AgentProfile, DeviceStatus, RetryPolicy
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import ServerPolicy
from stellate.server import AgentServer

DEVICES = 50
KILLS = 3
GUARD = (
    HANG_GUARD  # real seconds for the whole test, only to catch a hang; a healthy run needs a few
)
#: Leases (1 s heartbeats) and registration deadlines far longer than any stall of a loaded
#: machine (``PATIENCE``): only the kills may break a socket.
MISS_LIMIT = int(PATIENCE)
POLICY = ServerPolicy(
    timing=Timing(registration_timeout=PATIENCE, heartbeat_interval=1.0, miss_limit=MISS_LIMIT)
)
FAST = RetryPolicy(reconnect_delay=0.05, backoff_cap=0.2, registration_timeout=PATIENCE)


class RealServer:
    """An AgentServer on a fixed port that can be killed (task cancelled) and restarted."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.port = 0
        self.scope = trio.CancelScope()
        self.server = AgentServer(policy=POLICY)

    async def _serve(self, task_status: trio.TaskStatus[int]) -> None:
        with self.scope:
            await self.server.serve("127.0.0.1", self.port, task_status=task_status)

    async def start(self) -> None:
        self.scope = trio.CancelScope()
        self.server = AgentServer(policy=POLICY)
        self.port = await self._nursery.start(self._serve)

    def kill(self) -> None:
        self.scope.cancel()
        FIGURES["server kills"] += 1
        FIGURES["faults injected"] += 1


def test_real_server_killed_and_restarted_50_devices() -> None:
    ids = [f"real{i:02d}" for i in range(DEVICES)]
    process = psutil.Process()
    fds: list[int] = []

    async def main() -> None:
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as server_nursery:
                host = RealServer(server_nursery)
                await host.start()
                url = f"ws://127.0.0.1:{host.port}/ws"
                connector = WebSocketConnector(connect_timeout=PATIENCE)
                configured: dict[str, AgentProfile] = {}
                async with trio.open_nursery() as nursery:
                    for i, d in enumerate(ids):
                        agent = DeviceAgent(
                            url,
                            d,
                            connector=connector,
                            system_info=system_info_for(d),
                            rng=random.Random(i),
                            timing=FAST.evolve(heartbeat_interval=1.0, miss_limit=MISS_LIMIT),
                        )
                        await nursery.start(agent.run)
                    manager = ConstellationDeviceManager(
                        task_name="real",
                        connector=connector,
                        rng=random.Random(0),
                        timing=Timing(
                            heartbeat_interval=1.0,
                            miss_limit=MISS_LIMIT,
                            reconnect_delay=0.05,
                            backoff_cap=0.2,
                        ),
                        strict=True,
                    )
                    await nursery.start(manager.run)
                    async with manager.events() as events:
                        for d in ids:
                            profile = configured_profile(d, 50)
                            configured[d] = profile = AgentProfile(
                                d,
                                url,
                                os=profile.os,
                                capabilities=profile.capabilities,
                                metadata=profile.metadata,
                                max_retries=profile.max_retries,
                            )
                            manager.add_device(profile)
                        await until_all_idle_again(events, ids)
                        for _ in range(KILLS):
                            host.kill()
                            await host.start()  # same port, fresh registry
                            await until_all_idle_again(events, ids)
                            fds.append(process.num_fds())
                            FIGURES["devices flapped"] += DEVICES
                    profiles = manager.get_all_devices()
                    assert all(p.status is DeviceStatus.IDLE for p in profiles.values())
                    check_nothing_lost(configured, profiles)
                    for d in ids:
                        assert profiles[d].metadata["system_info"]["hostname"] == f"host-{d}"
                    assert len(host.server.registry) == 2 * DEVICES
                    await host.server.shutdown()  # close first: stopping clients need not wait
                    nursery.cancel_scope.cancel()
                server_nursery.cancel_scope.cancel()

    trio.run(main)
    # The same sockets open after every restart: 2 per agent, 2 per device, plus the listener.
    assert fds[1:] == fds[:-1], fds
