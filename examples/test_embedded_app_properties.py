"""Property-testing your own trio app that embeds the manager, with ``stellate.testing``.

The app here is small but real: ``ReadyBoard`` runs a ``ConstellationDeviceManager`` as a
service of its own nursery, keeps a live set of task-ready devices from the manager's event
stream, gives every device that ends FAILED exactly one second chance after ``retry_after``
seconds (``manager.retry_device``), and puts every device that becomes ready to work: busy with
a task (``device_registry.set_device_busy``) for ``work_time`` seconds, then idle again, unless
a lost connection ended the task first (the ``connection_lost`` event names it). The
properties below hold whatever the servers do; hypothesis draws the fleet (configs and
per-attempt fault schedules from ``stellate.testing.fault_strategies``), the fake agent server
plays the servers, and
``run_under_mock_clock`` runs everything in virtual time: an hour of backoffs, timeouts and
heartbeats takes milliseconds.

Run it: ``.venv/bin/pytest examples/test_embedded_app_properties.py``.
"""

from __future__ import annotations

import itertools
import random

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stellate import AgentProfile, DeviceStatus, Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import Meaning
from stellate.manager import ConstellationDeviceManager, EventKind
from stellate.testing import (
    HARNESS_TIMING,
    DropAfterIdle,
    FakeAgentServer,
    FleetDevice,
    Healthy,
    Refuse,
    Reject,
    fleet_devices,
    run_under_mock_clock,
)

# -- the app under test ---------------------------------------------------------------------------


class ReadyBoard:
    """Keeps ``ready`` = the devices that are task-ready now; retries each FAILED device once.

    Every device that becomes ready works on one task for ``work_time`` seconds (busy, then
    idle again); ``started`` lists the tasks, ``ended`` says how each ended.

    Args:
        manager: a manager that is not running yet (the board runs it).
        retry_after: seconds to wait before the one retry of a FAILED device.
        work_time: seconds a task keeps its device busy.
    """

    def __init__(
        self,
        manager: ConstellationDeviceManager,
        retry_after: float = 60.0,
        work_time: float = 90.0,
    ) -> None:
        self.manager = manager
        self.retry_after = retry_after
        self.work_time = work_time
        self.ready: set[str] = set()
        self.retried: dict[str, int] = {}
        self.started: list[str] = []  # task ids, from task_started events
        self.ended: dict[str, list[str]] = {}  # task id -> how it ended (once, if all is well)
        self._task_ids = (f"task-{n}" for n in itertools.count(1))

    async def run(
        self,
        devices: list[AgentProfile],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            manager = await nursery.start(self.manager.run)
            async with manager.events() as events:  # subscribe before adding: miss nothing
                for profile in devices:
                    manager.add_device(profile)
                task_status.started()
                async for event in events:
                    if event.kind is EventKind.READY:
                        self.ready.add(event.device_id)
                        self._start_work(event.device_id, nursery)
                    elif event.kind is EventKind.TASK_STARTED and event.task_id:
                        self.started.append(event.task_id)
                    elif event.kind is EventKind.TASK_FINISHED and event.task_id:
                        self.ended.setdefault(event.task_id, []).append("finished")
                    elif event.kind in (EventKind.CONNECTION_LOST, EventKind.FAILED):
                        self.ready.discard(event.device_id)
                        if Meaning.TASK_INTERRUPTED in event.meanings and event.task_id:
                            self.ended.setdefault(event.task_id, []).append("interrupted")
                    if event.kind is EventKind.FAILED and event.device_id not in self.retried:
                        self.retried[event.device_id] = 0
                        nursery.start_soon(self._retry_later, event.device_id)

    def _start_work(self, device_id: str, nursery: trio.Nursery) -> None:
        # The event may be old news: work only on a device that is idle now.
        profile = self.manager.get_device_info(device_id)
        if profile is None or profile.status is not DeviceStatus.IDLE:
            return
        task_id = next(self._task_ids)
        self.manager.device_registry.set_device_busy(device_id, task_id)
        nursery.start_soon(self._work, device_id, task_id)

    async def _work(self, device_id: str, task_id: str) -> None:
        await trio.sleep(self.work_time)  # the app's real work with the device
        registry = self.manager.device_registry
        if registry.is_device_busy(device_id) and registry.get_current_task(device_id) == task_id:
            registry.set_device_idle(device_id)

    async def _retry_later(self, device_id: str) -> None:
        await trio.sleep(self.retry_after)
        self.retried[device_id] += 1
        await self.manager.retry_device(device_id)


# -- the harness ----------------------------------------------------------------------------------

HORIZON = 3600.0  # virtual seconds: long enough for every drawn schedule to play out


async def scenario(devices: list[FleetDevice], timing: Timing, seed: int) -> ReadyBoard:
    async with MemoryNetwork() as network:
        fake = FakeAgentServer(network)
        profiles = [d.profile(fake.script(d.device_id, d.schedule, then=d.then)) for d in devices]
        manager = ConstellationDeviceManager(
            timing=timing, connector=fake.connector, rng=random.Random(seed), strict=True
        )
        board = ReadyBoard(manager)
        baseline = trio.lowlevel.current_statistics().tasks_living
        async with trio.open_nursery() as nursery:
            await nursery.start(board.run, profiles)
            await trio.sleep(HORIZON)
            await trio.testing.wait_all_tasks_blocked()  # let the board read every event

            registry = manager.get_all_devices()
            # 1. The board's view is the registry's.
            idle = {d for d, p in registry.items() if p.status is DeviceStatus.IDLE}
            assert board.ready == idle, (board.ready, idle)
            # 2. Everything settled: IDLE, or FAILED after its one retry.
            for device_id, profile in registry.items():
                assert profile.status in (DeviceStatus.IDLE, DeviceStatus.FAILED), profile
                if profile.status is DeviceStatus.FAILED:
                    assert board.retried.get(device_id) == 1, device_id
            # 3. Never more than one retry, and only for devices that failed.
            assert set(board.retried.values()) <= {1}
            # 4. The manager spoke correct AIP to every server.
            assert fake.violations == []
            # 5. Every task the board started ended exactly once, by an event naming it, and
            #    nobody is left busy.
            assert sorted(board.started) == sorted(board.ended), (board.started, board.ended)
            assert all(len(ends) == 1 for ends in board.ended.values()), board.ended
            assert all(p.current_task_id is None for p in registry.values())
            nursery.cancel_scope.cancel()
        # 6. Cancelling the app leaves no task and no socket behind.
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().tasks_living == baseline
        assert fake.connector.open_connections == 0
    return board


TIMING = HARNESS_TIMING.evolve(heartbeat_interval=60.0, reconnect_delay=2.0, backoff_cap=30.0)


@st.composite
def small_fleets(draw: st.DrawFn) -> list[FleetDevice]:
    size = draw(st.integers(min_value=1, max_value=8))
    return [draw(fleet_devices(f"dev{i}", TIMING, max_schedule=4)) for i in range(size)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(devices=small_fleets(), seed=st.integers(0, 1000))
def test_the_board_tracks_the_fleet_whatever_the_servers_do(
    devices: list[FleetDevice], seed: int
) -> None:
    run_under_mock_clock(scenario, devices, TIMING, seed, seed=seed)


def test_a_rejected_device_gets_one_second_chance() -> None:
    devices = [
        FleetDevice("flaky", [Reject.target_not_connected()], max_retries=2),  # then Healthy
        FleetDevice("banned", [Reject(), Reject(), Reject()], max_retries=2),
        FleetDevice("down", [Refuse(), Refuse(), Refuse()], max_retries=2),
        FleetDevice("fine", [Healthy()]),
    ]
    board = run_under_mock_clock(scenario, devices, TIMING, 0)
    assert board.retried == {"banned": 1, "down": 1, "flaky": 1}


def test_a_connection_lost_mid_task_ends_the_task() -> None:
    # The server drops the device at its first heartbeat (60 s), while its first task (90 s)
    # runs: the loss names the task; after reconnecting the device does a second task.
    devices = [FleetDevice("worker", [Healthy(idle=DropAfterIdle(after_heartbeats=1))])]
    board = run_under_mock_clock(scenario, devices, TIMING, 0)
    assert board.ended == {"task-1": ["interrupted"], "task-2": ["finished"]}
