"""Galaxy's DeviceRegistry: device_id → lifecycle (which holds the AgentProfile)."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import LocalError, RemoteError
from ..fsm import AgentProfile, DeviceStatus, Trigger
from ..fsm.event_data import TaskAssigned
from ..fsm.lifecycle import DeviceLifecycle, IllegalTransition, InvalidEventData, LifecycleEngine
from ..protocol.ids import LookAlikes, look_alike_problem


class UnknownDevice(LocalError, KeyError):
    """No device with that id is registered."""


class DeviceOwnedElsewhere(LocalError):
    """A command for a device this manager does not run: another manager of a fleet shared
    through a store owns it (``owner``: its id). Send the command to that one."""

    def __init__(self, device_id: str, owner: str) -> None:
        super().__init__(f"device {device_id!r} is run by manager {owner!r}, not this one")
        self.device_id = device_id
        self.owner = owner


class DeviceFailed(RemoteError):
    """A device waited for (``wait_for``) is FAILED, which the wait did not ask for.

    FAILED is left only by a retry, a disconnect or (``Timing.retry_failed_after``, minutes
    later) a fresh run of its own, so the wait would otherwise not end with the failure.
    ``reason`` is the device's failure reason; ``profile`` its profile at that moment.
    """

    def __init__(self, profile: AgentProfile, reason: str | None) -> None:
        super().__init__(
            f"device {profile.device_id!r} failed while waited for: {reason or 'no reason'}"
        )
        self.device_id = profile.device_id
        self.profile = profile
        self.reason = reason


def _in_words(exc: IllegalTransition, call: str, why: str) -> IllegalTransition:
    """The refusal of a Galaxy task call, in the words of that call (wrong event data, e.g. a
    task id that is not a string, keeps its own words)."""
    if isinstance(exc, InvalidEventData):
        return exc
    return IllegalTransition(
        exc.device_id, exc.status, exc.trigger, message=f"{call}: the device is {exc.status}; {why}"
    )


class DeviceRegistry:
    """Galaxy's DeviceRegistry: device_id → lifecycle (which holds the AgentProfile)."""

    def __init__(self, engine: LifecycleEngine) -> None:
        self._engine = engine
        self._devices: dict[str, DeviceLifecycle] = {}
        self._look_alikes = LookAlikes()

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def lifecycle(self, device_id: str) -> DeviceLifecycle:
        try:
            return self._devices[device_id]
        except KeyError:
            raise UnknownDevice(device_id) from None

    def add(self, lifecycle: DeviceLifecycle) -> None:
        device_id = lifecycle.device_id
        if device_id in self._devices:
            raise ValueError(f"device {device_id!r} is already registered")
        held = self._look_alikes.of(device_id)
        if held is not None:
            raise ValueError(f"device id {device_id!r} {look_alike_problem(device_id, held)}")
        self._devices[device_id] = lifecycle
        self._look_alikes.add(device_id)

    def remove(self, device_id: str) -> None:
        lifecycle = self._devices.pop(device_id, None)
        if lifecycle is not None:
            self._look_alikes.discard(device_id)
            self._engine.release(lifecycle)

    def get_device(self, device_id: str) -> AgentProfile | None:
        lifecycle = self._devices.get(device_id)
        return lifecycle.profile if lifecycle is not None else None

    # -- tasks: Galaxy's names, through the machine ---------------------------------------------
    def set_device_busy(self, device_id: str, task_id: str) -> None:
        """The device is working on ``task_id`` (IDLE → BUSY).

        A loss while busy ends the task: the ``CONNECTION_LOST`` event names it.

        Raises:
            UnknownDevice: no such device.
            IllegalTransition: the device is not IDLE (not ready, or already busy), or
                ``task_id`` is not a string (``InvalidEventData``).
        """
        lifecycle = self.lifecycle(device_id)
        try:
            lifecycle.fire(TaskAssigned(task_id))
        except IllegalTransition as exc:
            current = lifecycle.profile.current_task_id
            why = (
                f"it is already busy with task {current!r}"
                if current is not None
                else "it is being disconnected once its task is over, and takes no new one"
                if lifecycle.drain_requested
                else "a device takes a task only when idle"
            )
            raise _in_words(exc, f"set_device_busy({device_id!r}, {task_id!r})", why) from None

    def set_device_idle(self, device_id: str) -> None:
        """The device's task is over (BUSY → IDLE).

        Raises:
            UnknownDevice: no such device.
            IllegalTransition: the device is not BUSY (e.g. its connection was lost meanwhile,
                which already ended the task).
        """
        try:
            self.lifecycle(device_id).fire(Trigger.TASK_FINISHED)
        except IllegalTransition as exc:
            why = (
                "it has no task to finish (a task ends once: by set_device_idle, or by a lost "
                "connection, whose connection_lost event names it)"
            )
            raise _in_words(exc, f"set_device_idle({device_id!r})", why) from None

    def is_device_busy(self, device_id: str) -> bool:
        """True while the device is BUSY (False for an unknown id)."""
        lifecycle = self._devices.get(device_id)
        return lifecycle is not None and lifecycle.state is DeviceStatus.BUSY

    def get_current_task(self, device_id: str) -> str | None:
        """The task the device is busy with (None: idle, not ready, or unknown)."""
        lifecycle = self._devices.get(device_id)
        return lifecycle.profile.current_task_id if lifecycle is not None else None

    def get_all_devices(self) -> dict[str, AgentProfile]:
        return {device_id: lc.profile for device_id, lc in self._devices.items()}

    def lifecycles(self) -> Iterable[DeviceLifecycle]:
        return self._devices.values()
