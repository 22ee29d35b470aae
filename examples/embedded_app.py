"""A trio program that embeds stellate's ConstellationDeviceManager in its own nursery.

Run it from the repository root (it needs nothing else running)::

    .venv/bin/python examples/embedded_app.py

What it shows, in order:

1. The app owns the nursery. It starts, as stand-ins for real machines, an AIP agent server on
   127.0.0.1 (ephemeral port) and a device agent for two of its three devices.
2. The manager is a service in that nursery: ``manager = await nursery.start(manager.run)``.
3. The app reacts to the manager's event stream: it prints each device's progress, and when a
   device FAILS because its agent is not there ("Target device ... is not connected" is a
   final rejection, no automatic retry), it starts that agent and retries the device
   explicitly.
4. Galaxy's API works too: ``await manager.register_device(...)`` returns True once IDLE.
5. The app uses its devices: while it works on one it marks it busy
   (``manager.device_registry.set_device_busy(device_id, task_id)``: IDLE → BUSY, a
   ``task_started`` event), and idle again when done (``set_device_idle``: a ``task_finished``
   event). ``is_device_busy`` and ``get_current_task`` answer in between. A connection lost
   mid-task ends the task by itself (its ``connection_lost`` event names the task).
6. It prints the final AgentProfiles, then stops: ``await manager.aclose()`` disconnects every
   device with a clean close handshake, then the server and agents are shut down. Nothing is
   left running when ``main`` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import trio

from stellate import AgentProfile, DeviceStatus, Timing
from stellate.agent import DeviceAgent
from stellate.fsm import SETTLED, Meaning
from stellate.manager import ConstellationDeviceManager, EventKind, ManagerEvent
from stellate.server import AgentServer


class Outcome(NamedTuple):
    """What the demo ends with: the final profiles and every event the app saw, in order."""

    profiles: dict[str, AgentProfile]
    events: list[ManagerEvent]


async def main(print_: Callable[..., Any] = print) -> Outcome:
    """Run the demo; return the final profiles and the events seen (tests call this)."""
    seen: list[ManagerEvent] = []
    async with trio.open_nursery() as nursery:
        # -- 1. stand-ins for the real world: a server and two of the three device agents --
        server = AgentServer()
        port = await nursery.start(server.serve, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/ws"
        for device_id in ("printer", "scanner"):
            await nursery.start(DeviceAgent(url, device_id).run)  # returns once registered

        # -- 2. the manager, as a service of this nursery --
        manager: ConstellationDeviceManager = await nursery.start(
            ConstellationDeviceManager(
                task_name="embedded_app", timing=Timing(heartbeat_interval=5.0, reconnect_delay=0.5)
            ).run
        )

        # -- 3. react to the event stream --
        retried: set[str] = set()  # devices we retried once (a second failure is final)
        retrying: set[str] = set()  # retried, but the retry has not started yet
        async with manager.events() as events:  # subscribe first: no event is missed
            manager.add_device(AgentProfile("printer", url, capabilities=["print"]))
            manager.add_device(AgentProfile("scanner", url, capabilities=["scan"]))
            manager.add_device(AgentProfile("plotter", url, capabilities=["plot"]))
            async for event in events:
                seen.append(event)
                print_(describe(event))
                device_id = event.device_id
                if event.kind is EventKind.FAILED and device_id not in retried:
                    # Its agent is missing: bring it up, then retry explicitly.
                    retried.add(device_id)
                    retrying.add(device_id)
                    await nursery.start(DeviceAgent(url, device_id).run)
                    nursery.start_soon(manager.retry_device, device_id)
                elif Meaning.RUN_STARTED in event.meanings:  # the retry left FAILED
                    retrying.discard(device_id)
                # TELEMETRY_MERGED is followed by READY for the same step: stop after READY.
                last_of_step = event.kind is not EventKind.TELEMETRY_MERGED
                if last_of_step and not retrying and settled(manager):
                    break

        # -- 4. Galaxy's call: register and wait for IDLE in one await --
        await nursery.start(DeviceAgent(url, "camera").run)
        ok = await manager.register_device(
            "camera", url, os="linux", capabilities=["capture"], metadata={"room": "lab"}
        )
        print_(f"register_device('camera') -> {ok}")

        # -- 5. use the devices: busy while the app works on one, idle afterwards --
        ready = sorted(
            d for d, p in manager.get_all_devices().items() if p.status is DeviceStatus.IDLE
        )
        async with manager.events() as events:
            async with trio.open_nursery() as work:
                for n, device_id in enumerate(ready, start=1):
                    work.start_soon(work_on, manager, device_id, f"job-{n}", print_)
            while True:  # the work is done: show the events it caused
                try:
                    event = events.receive_nowait()
                except trio.WouldBlock:
                    break
                seen.append(event)
                print_(describe(event))

        # -- 6. results, then a clean stop --
        profiles = manager.get_all_devices()
        for profile in profiles.values():
            system_info = profile.metadata.get("system_info", {})
            print_(
                f"{profile.device_id}: {profile.status.value}, os={profile.os}, "
                f"capabilities={list(profile.capabilities)}, "
                f"cpu_count={system_info.get('cpu_count')}, hostname={system_info.get('hostname')}"
            )
        await manager.aclose()  # every device disconnects (close code 1000), then run() returns
        await server.shutdown()  # the agents are told 1001 and go quiet
        nursery.cancel_scope.cancel()
    return Outcome(profiles, seen)


async def work_on(
    manager: ConstellationDeviceManager, device_id: str, task_id: str, print_: Callable[..., Any]
) -> None:
    """Mark the device busy with ``task_id`` while working on it, idle again afterwards."""
    registry = manager.device_registry
    registry.set_device_busy(device_id, task_id)  # IDLE -> BUSY: a task_started event
    print_(
        f"{device_id}: busy={registry.is_device_busy(device_id)}, "
        f"task={registry.get_current_task(device_id)}"
    )
    try:
        await trio.sleep(0.1)  # the app's real work with the device goes here
    finally:
        # A connection lost meanwhile already ended the task (BUSY -> backoff; the
        # connection_lost event names it): set_device_idle would then be illegal.
        if registry.is_device_busy(device_id):
            registry.set_device_idle(device_id)  # BUSY -> IDLE: a task_finished event


def describe(event: ManagerEvent) -> str:
    record = event.record
    line = f"[{event.kind.value:>16}] {event.device_id}: {record.source} -> {record.dest}"
    if event.kind is EventKind.FAILED and event.reason:
        line += f" ({event.reason})"
    if event.task_id is not None:
        line += f" (task {event.task_id})"
    if event.kind is EventKind.TELEMETRY_MERGED:
        line += f" (os={event.profile.os}, {len(event.profile.capabilities)} capabilities)"
    return line


def settled(manager: ConstellationDeviceManager) -> bool:
    return all(p.status in SETTLED for p in manager.get_all_devices().values())


if __name__ == "__main__":
    final = trio.run(main).profiles
    raise SystemExit(0 if all(p.status is DeviceStatus.IDLE for p in final.values()) else 1)
