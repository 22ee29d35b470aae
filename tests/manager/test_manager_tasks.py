"""Galaxy's task API on the registry: busy and idle through the machine, with events."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel
from manager_support import URL, Agent, Recorder, manager_on, memory_network, site

from stellate.fsm import AgentProfile, DeviceStatus, IllegalTransition, Trigger
from stellate.fsm.lifecycle import InvalidEventData
from stellate.manager import EventKind, UnknownDevice

S = DeviceStatus


async def test_busy_and_idle_through_the_machine(autojump_clock: Any) -> None:
    recorder = Recorder()
    async with site("dev") as (net, nursery, _), manager_on(net) as manager:
        await nursery.start(recorder.run, manager)
        registry = manager.device_registry
        assert await manager.register_device("dev", URL)
        assert not registry.is_device_busy("dev") and registry.get_current_task("dev") is None
        registry.set_device_busy("dev", "task-42")
        assert registry.is_device_busy("dev")
        assert registry.get_current_task("dev") == "task-42"
        assert manager.get_device_info("dev").status is S.BUSY  # type: ignore[union-attr]
        with pytest.raises(IllegalTransition) as busy:  # one task at a time
            registry.set_device_busy("dev", "task-43")
        assert str(busy.value) == (
            "set_device_busy('dev', 'task-43'): the device is busy; it is already busy with "
            "task 'task-42'"
        )
        await trio.sleep(100)  # heartbeats go on while busy
        assert registry.is_device_busy("dev")
        registry.set_device_idle("dev")
        assert not registry.is_device_busy("dev") and registry.get_current_task("dev") is None
        with pytest.raises(IllegalTransition) as idle:  # not busy any more
            registry.set_device_idle("dev")
        # In the words of the call, not "event <Trigger.TASK_FINISHED: ...> is illegal".
        assert str(idle.value) == (
            "set_device_idle('dev'): the device is idle; it has no task to finish (a task "
            "ends once: by set_device_idle, or by a lost connection, whose connection_lost "
            "event names it)"
        )
        assert idle.value.status is S.IDLE and idle.value.trigger is Trigger.TASK_FINISHED
        await trio.lowlevel.checkpoint()
    started = [e for _, e in recorder.events if e.kind is EventKind.TASK_STARTED]
    finished = [e for _, e in recorder.events if e.kind is EventKind.TASK_FINISHED]
    assert [(e.task_id, e.record.step) for e in started] == [
        ("task-42", (Trigger.TASK_ASSIGNED, "idle", "busy"))
    ]
    assert [(e.task_id, e.record.step) for e in finished] == [
        ("task-42", (Trigger.TASK_FINISHED, "busy", "idle"))
    ]
    assert started[0].profile.current_task_id == "task-42"
    assert finished[0].profile.current_task_id is None


async def test_illegal_outside_idle_and_busy(autojump_clock: Any) -> None:
    async with memory_network() as net, manager_on(net) as manager:
        net.hang(URL)
        registry = manager.device_registry
        await manager.register_device("dev", URL, auto_connect=False)
        with pytest.raises(IllegalTransition):
            registry.set_device_busy("dev", "t")  # DISCONNECTED
        manager.add_device(AgentProfile("dev2", URL))
        await manager.wait_for("dev2", S.CONNECTING)
        with pytest.raises(IllegalTransition, match=r"device is connecting; a device takes a"):
            registry.set_device_busy("dev2", "t")
        with pytest.raises(IllegalTransition):
            registry.set_device_idle("dev2")
        assert registry.get_device("dev2").status is S.CONNECTING  # type: ignore[union-attr]
        with pytest.raises(InvalidEventData):  # wrong data keeps its own words
            registry.set_device_busy("dev2", 42)  # type: ignore[arg-type]
        with pytest.raises(UnknownDevice):
            registry.set_device_busy("nope", "t")
        assert not registry.is_device_busy("nope") and registry.get_current_task("nope") is None


async def test_a_loss_while_busy_names_the_interrupted_task(autojump_clock: Any) -> None:
    recorder = Recorder()
    async with site() as (net, nursery, _):
        agent = Agent(nursery, net, "dev")
        await agent.start()
        async with manager_on(net) as manager:
            await nursery.start(recorder.run, manager)
            assert await manager.register_device("dev", URL)
            manager.device_registry.set_device_busy("dev", "render-7")
            agent.stop()  # the device goes away mid-task
            await manager.wait_for("dev", S.BACKOFF)
            assert manager.device_registry.get_current_task("dev") is None
            with pytest.raises(IllegalTransition):  # the task already ended with the loss
                manager.device_registry.set_device_idle("dev")
    (lost,) = [e for _, e in recorder.events if e.kind is EventKind.CONNECTION_LOST]
    assert lost.task_id == "render-7"
    assert lost.record.source is S.BUSY and lost.profile.current_task_id is None
