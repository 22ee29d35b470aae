"""Shared machinery of the hardening suite: a killable in-memory server, a fault-injecting
connector, leak probes, the "nothing lost" check, and the figures the suite reports.

Everything here runs under ``trio.testing.MockClock`` on a ``MemoryNetwork`` unless a test
says otherwise, so a fault lands at an exact phase and every wait is virtual time.
"""

from __future__ import annotations

import gc
import random
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from passthrough import Passthrough

from stellate import Timing
from stellate.adapters.memory import MemoryConnection, MemoryNetwork
from stellate.agent import DeviceAgent
from stellate.fsm import AgentProfile, DeviceStatus, RetryPolicy
from stellate.manager import ConstellationDeviceManager, ManagerEvent
from stellate.protocol import ConnectError, ConnectionClosed, ServerPolicy
from stellate.server import AgentServer

# -- figures -----------------------------------------------------------------------------------

#: What the suite did, reported at the end of the run (``conftest.pytest_terminal_summary``).
FIGURES: Counter[str] = Counter()
#: Every loss found (a configured capability or metadata entry gone). Must stay empty.
LOSSES: list[str] = []

# -- the fleet's shape -------------------------------------------------------------------------

HOST = "ws://stellate-hardening:5005"
AGENT_PATH = "/agents"
CONSTELLATION_PATH = "/ws"
AGENT_URL = HOST + AGENT_PATH
CONSTELLATION_URL = HOST + CONSTELLATION_PATH

SERVER_POLICY = ServerPolicy(
    timing=Timing(registration_timeout=10.0, heartbeat_interval=5.0, miss_limit=3)
)
#: The manager's timing in the hardening scenarios: retries and phases short enough that a
#: scenario's faults play out in a few virtual minutes, long enough that every phase completes
#: on a healthy connection. Each scenario sets its heartbeat and miss limit from it.
MANAGER_TIMING = Timing(
    reconnect_delay=1.0,
    backoff_cap=8.0,
    connect_timeout=5.0,
    registration_timeout=5.0,
    telemetry_timeout=5.0,
)
AGENT_RETRY = RetryPolicy(reconnect_delay=1.0, backoff_cap=4.0, registration_timeout=10.0)


def system_info_for(device_id: str) -> dict[str, Any]:
    """What the device agent announces (fixed: no psutil in these tests)."""
    return {
        "device_id": device_id,
        "platform": "linux",
        "os_version": "6.1",
        "cpu_count": 4,
        "memory_total_gb": 8.0,
        "hostname": f"host-{device_id}",
        "ip_address": "10.0.0.7",
        "supported_features": ["cli", "gui", "hardening_probe"],
        "platform_type": "physical",
        "schema_version": "1.0",
        "custom_metadata": {"rack": "r7"},
        "tags": ["lab"],
    }


def configured_profile(device_id: str, max_retries: int | None) -> AgentProfile:
    """A device as devices.yaml would configure it; its URL names it (``?device=``)."""
    return AgentProfile(
        device_id=device_id,
        server_url=f"{CONSTELLATION_URL}?device={urllib.parse.quote(device_id)}",
        os="linux",
        capabilities=("web_browsing", "cli", f"cap_{device_id}"),
        metadata={"location": f"bench-{device_id}", "performance": "high", "nested": {"k": [1]}},
        max_retries=max_retries,
    )


class Herd:
    """A ``RandomSource`` with no jitter: every device waits the middle of its backoff window.

    Fleets use it on purpose: all of them retry at the same instant after a kill — the
    thundering herd a server restart meets when jitter is unlucky, the hardest case for the
    server — and, under MockClock, the whole fleet moves in a few scheduler passes instead of
    one pass per device per step (a 500-device run stays within the suite's time budget).
    """

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def device_of(url: str) -> str:
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("device", [""])
    return values[0]


# -- "nothing lost" ----------------------------------------------------------------------------


def lost_configuration(configured: AgentProfile, now: AgentProfile) -> list[str]:
    """What of ``configured``'s capabilities and metadata ``now`` no longer has."""
    lost: list[str] = []
    if tuple(now.capabilities[: len(configured.capabilities)]) != configured.capabilities:
        lost.append(f"{now.device_id}: capabilities {configured.capabilities} → {now.capabilities}")
    for key, value in configured.metadata.items():
        if now.metadata.get(key) != value:
            lost.append(f"{now.device_id}: metadata[{key!r}] {value!r} → {now.metadata.get(key)!r}")
    if now.device_id != configured.device_id or now.max_retries != configured.max_retries:
        lost.append(f"{now.device_id}: identity or max_retries changed")
    return lost


def lost_telemetry(before: AgentProfile, now: AgentProfile) -> list[str]:
    """Telemetry merged once must survive later (degraded) registrations."""
    lost = [
        f"{now.device_id}: metadata[{key!r}] dropped"
        for key in ("system_info", "custom_metadata", "tags")
        if key in before.metadata and key not in now.metadata
    ]
    missing = [c for c in before.capabilities if c not in now.capabilities]
    if missing:
        lost.append(f"{now.device_id}: capabilities {missing} dropped")
    return lost


def check_nothing_lost(
    configured: Mapping[str, AgentProfile], profiles: Mapping[str, AgentProfile]
) -> None:
    """Record and assert: every configured capability and metadata entry is still there."""
    lost = [item for d, p in configured.items() for item in lost_configuration(p, profiles[d])]
    LOSSES.extend(lost)
    assert not lost, lost


# -- a server that can be killed and restarted --------------------------------------------------


def _memory_server(policy: ServerPolicy) -> AgentServer:
    """A server for in-memory sockets: they hold no file descriptors, so its connection limits
    are set for the fleets here, not derived from this process's open-file limit (which at a
    common 1,024 would refuse a 500-device bring-up as "too many waiting to register")."""
    return AgentServer(policy=policy, max_connections=MEMORY_CONNECTIONS)


#: Connections a memory server holds (several per device: agent, constellation, restarts).
MEMORY_CONNECTIONS = 20_000


class ServerHost:
    """An ``AgentServer`` on a ``MemoryNetwork`` that can be killed (every socket dropped, no
    closing handshake, registry gone) and restarted (a fresh server, empty registry).

    Device agents reach it on ``AGENT_URL``, constellations on ``CONSTELLATION_URL``: a restart
    opens the agents' door first, so a constellation never races its device back in.
    """

    def __init__(self, network: MemoryNetwork, policy: ServerPolicy = SERVER_POLICY) -> None:
        self.network = network
        self.policy = policy
        self.server = _memory_server(policy)
        self.conns: set[MemoryConnection] = set()
        self.kills = 0
        self.up = False

    async def _handler(self, conn: Any, _info: Any) -> None:
        self.conns.add(conn)
        try:
            await self.server.handle_connection(conn)
        finally:
            self.conns.discard(conn)

    def start(self, *, agents: bool = True, constellations: bool = True) -> None:
        if agents:
            self.network.listen(AGENT_URL, self._handler)
        if constellations:
            self.network.listen(CONSTELLATION_URL, self._handler)
        self.up = True

    def open_constellation_door(self) -> None:
        self.network.listen(CONSTELLATION_URL, self._handler)

    def kill(self) -> None:
        """The server process dies: new connects are refused, every socket drops (1006)."""
        self.network.unlisten(AGENT_URL)
        self.network.unlisten(CONSTELLATION_URL)
        for conn in list(self.conns):
            conn.abort()
        self.kills += 1
        self.up = False

    def restart(self) -> None:
        """A fresh server (empty registry) accepting agents only, until the door opens."""
        self.server = _memory_server(self.policy)
        self.start(constellations=False)


# -- fault injection on the constellation's connections ----------------------------------------


@attrs.define
class Fault:
    """Strike ``device_id`` once, the moment it is in ``phase``.

    ``kind="socket"``: that device's socket dies (its connect is refused, or its link is
    aborted); with ``permanent`` its server stays dead for it. ``kind="server"``: the whole
    server is killed (``FaultConnector.kill_server``); the test restarts it, or does not.
    """

    phase: DeviceStatus
    kind: str = "socket"
    permanent: bool = False
    fired: bool = False
    #: Armed in this one's place once it fired (a fault chain on one device).
    then: Fault | None = None


class FaultConnector:
    """A connector around ``MemoryNetwork.open`` that strikes a device at an exact phase.

    The phase is read from the manager at the moment of each open/send/receive, so a fault
    lands exactly where it is meant to: CONNECTING at the connect, CONNECTED at the REGISTER
    send, REGISTERING at the confirmation, TELEMETRY at the device_info_request, IDLE at the
    first heartbeat. A killed socket is aborted: both ends see 1006 and the server deregisters
    at once, as when a process dies.
    """

    def __init__(self, network: MemoryNetwork) -> None:
        self.network = network
        self.status_of: Callable[[str], DeviceStatus] = lambda _d: DeviceStatus.DISCONNECTED
        self.kill_server: Callable[[], None] = lambda: None
        self.faults: dict[str, Fault] = {}
        self.opens: Counter[str] = Counter()
        self.opens_after_fault: Counter[str] = Counter()
        self.injected = 0
        self.open_now = 0
        self.live: set[FaultConnection] = set()

    def _strike(self, device_id: str) -> Fault | None:
        fault = self.faults.get(device_id)
        if fault is None or fault.fired or self.status_of(device_id) is not fault.phase:
            return None
        fault.fired = True
        if fault.then is not None:
            self.faults[device_id] = fault.then
        self.injected += 1
        FIGURES["faults injected"] += 1
        if fault.kind == "server":
            self.kill_server()
        return fault

    def _dead(self, device_id: str) -> bool:
        fault = self.faults.get(device_id)
        return fault is not None and fault.fired and fault.permanent and fault.kind == "socket"

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[FaultConnection]:
        device_id = device_of(url)
        self.opens[device_id] += 1
        fault = self.faults.get(device_id)
        if fault is not None and fault.fired:
            self.opens_after_fault[device_id] += 1
        struck = self._strike(device_id)
        if (struck is not None and struck.kind == "socket") or self._dead(device_id):
            await trio.lowlevel.checkpoint()
            raise ConnectError(f"cannot connect to {HOST}: connection refused (injected)")
        async with self.network.open(url) as inner:
            conn = FaultConnection(self, device_id, inner)
            self.open_now += 1
            self.live.add(conn)
            try:
                yield conn
            finally:
                self.open_now -= 1
                self.live.discard(conn)

    def drop_all(self) -> int:
        """Every open constellation socket dies at once (a network flap); how many."""
        conns = list(self.live)
        for conn in conns:
            conn.inner.abort()
        return len(conns)


class FaultConnection(Passthrough[MemoryConnection]):
    def __init__(self, owner: FaultConnector, device_id: str, inner: MemoryConnection) -> None:
        super().__init__(inner)
        self._owner = owner
        self.device_id = device_id

    async def send(self, message: str | bytes) -> None:
        if self._owner._strike(self.device_id) is not None:
            self.inner.abort()
        await self.inner.send(message)

    async def receive(self) -> str | bytes:
        frame = await self.inner.receive()
        if self._owner._strike(self.device_id) is not None:
            self.inner.abort()
            raise ConnectionClosed(1006, None)
        return frame


# -- a fleet: agents on the server, a manager registering each device on it --------------------


class Fleet:
    """``n`` device agents and one manager with ``n`` devices, on one ``ServerHost``."""

    def __init__(
        self,
        network: MemoryNetwork,
        ids: Iterable[str],
        *,
        max_retries: Callable[[str], int | None] = lambda _d: 3,
        seed: int = 7,
        herd: bool = False,
        heartbeat_interval: float = 5.0,
        miss_limit: int = 3,
    ) -> None:
        self.network = network
        self.ids = list(ids)
        self.host = ServerHost(network)
        self.connector = FaultConnector(network)
        self.configured = {d: configured_profile(d, max_retries(d)) for d in self.ids}
        self.agents_ready = trio.Event()
        self.agents = [
            DeviceAgent(
                AGENT_URL,
                d,
                connector=network,
                system_info=system_info_for(d),
                rng=Herd() if herd else random.Random(seed + i),
                on_registered=self._agent_registered,
                timing=AGENT_RETRY.evolve(heartbeat_interval=heartbeat_interval),
            )
            for i, d in enumerate(self.ids)
        ]
        self.manager = ConstellationDeviceManager(
            task_name="hardening",
            timing=MANAGER_TIMING.evolve(
                heartbeat_interval=heartbeat_interval,
                miss_limit=miss_limit,
                # These scenarios count attempts against max_retries after a loss too: the
                # reference's rule, which a recovery window of 0 keeps.
                recovery_window=0.0,
            ),
            connector=self.connector,
            rng=Herd() if herd else random.Random(seed),
            # Every device in flight at once, as these scenarios intend (kill the server while
            # the whole fleet is mid-phase); the default slot limit would queue most of them.
            max_connecting=len(self.ids),
            strict=True,
        )
        self.connector.status_of = lambda d: self.manager.device_registry.lifecycle(d).state
        self.connector.kill_server = self.kill_server
        self.server_killed = trio.Event()

    def kill_server(self) -> None:
        self.host.kill()
        FIGURES["server kills"] += 1
        self.server_killed.set()

    def _agent_registered(self, _agent: DeviceAgent) -> None:
        self.agents_ready.set()

    async def wait_agents(self) -> None:
        """Until every agent is registered on the *current* server (an agent's own flag may
        still say "registered" about a server that was just killed)."""
        registry = self.host.server.registry
        while True:
            missing = [d for d in self.ids if registry.live_device(d, trio.current_time()) is None]
            if not missing:
                return
            self.agents_ready = trio.Event()
            await self.agents_ready.wait()

    async def start(self, nursery: trio.Nursery, *, connect: bool = True) -> None:
        """Server up, every agent registered, manager running with every device added."""
        self.host.start(constellations=False)
        for agent in self.agents:
            nursery.start_soon(agent.run)
        await self.wait_agents()
        self.host.open_constellation_door()
        await nursery.start(self.manager.run)
        for profile in self.configured.values():
            self.manager.add_device(profile, auto_connect=connect)

    async def restart_server(self) -> None:
        """A fresh server; constellations are let in once every agent is back."""
        self.host.restart()
        await self.wait_agents()
        self.host.open_constellation_door()

    def profiles(self) -> dict[str, AgentProfile]:
        return self.manager.get_all_devices()

    def check_nothing_lost(self) -> None:
        check_nothing_lost(self.configured, self.profiles())


async def until_all_idle_again(
    events: trio.MemoryReceiveChannel[ManagerEvent], ids: Iterable[str]
) -> None:
    """Consume events until every device has moved since now and its last move reached IDLE."""
    not_idle = set(ids)  # a device leaves this set when its latest move reached IDLE
    moved: set[str] = set()
    async for event in events:
        d, dest = event.device_id, event.record.dest
        assert dest is not DeviceStatus.FAILED, (d, event.reason)
        moved.add(d)
        if dest is DeviceStatus.IDLE:
            not_idle.discard(d)
        else:
            not_idle.add(d)
        if not not_idle and len(moved) == len(set(ids)):
            return


# -- leak probes -------------------------------------------------------------------------------


def count_tasks() -> int:
    """Every task alive under the root task (all nurseries, recursively)."""
    todo = [trio.lowlevel.current_root_task()]
    count = 0
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def live_memory_connections() -> int:
    """MemoryConnection objects still reachable (after a full collection)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is MemoryConnection)


@asynccontextmanager
async def live_server(url: str) -> AsyncIterator[tuple[MemoryNetwork, AgentServer]]:
    """A fresh ``AgentServer`` listening on ``url`` of a new memory network (a handler's
    error fails the test)."""
    server = AgentServer()
    async with MemoryNetwork(raise_handler_errors=True) as network:

        async def handler(conn: Any, _info: Any) -> None:
            await server.handle_connection(conn)

        network.listen(url, handler)
        yield network, server
