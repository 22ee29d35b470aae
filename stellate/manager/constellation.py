"""ConstellationDeviceManager: a fleet of devices, one trio task each, in one nursery.

Galaxy's API is kept for people who know it (``register_device``, ``connect_device``,
``get_device_info``, ``get_all_devices``), but the manager is trio-native: it is an async context
manager (``async with ConstellationDeviceManager(...) as manager``) or a service started with
``await nursery.start(manager.run)``, so an app embeds it in its own nursery and cancelling that
nursery stops every device task and closes every socket.

Stopping. Leaving ``async with`` normally, or ``await manager.aclose()``, is the graceful way:
every device is sent ``disconnect`` and closes its socket with a full closing handshake (1000)
while the rest of the fleet is still running, then the device tasks end (bounded by
``shutdown_timeout``). Cancelling the manager from outside (a cancelled nursery, an exception
in the ``async with`` body) is the hard way: the device tasks are cancelled at once; each still
sends its close frame, but nobody waits for the peers' replies.

The manager never sets a status. Each device's ``DeviceRunner`` fires events into its
``DeviceLifecycle``; the manager only observes the transitions (event stream, waiters) and
sends commands to the runners.
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import attrs
import trio

from ..fsm import (
    AT_REST,
    DEFAULT_MAX_RETRIES,
    OUTCOMES,
    SETTLED,
    AgentProfile,
    DeviceStatus,
    OwnerCommand,
    RandomSource,
    Timing,
    TransitionRecord,
)
from ..fsm.lifecycle import DeviceLifecycle, LifecycleEngine
from ..fsm.meaning import TASK_OVER
from ..fsm.resume import memory_of, resume, resume_fresh
from ..protocol import ClientType, Connector
from ..protocol.ids import id_refusal
from ..store.snapshot import DeviceSnapshot, snapshot_of
from ..text.redact import redact_url
from ..text.urls import token_of, with_token
from .alarms import Alarms
from .events import EventKind, ManagerEvent, _kinds
from .registry import DeviceFailed, DeviceOwnedElsewhere, DeviceRegistry, UnknownDevice
from .reload import ReloadRefused, ReloadReport, plan_reload
from .runner import Command, DeviceRunner, RunnerSettings
from .sharing import ConfiguredDevice, SharedFleet
from .stats import FleetObserver, FleetStats

if TYPE_CHECKING:
    from ..config import StellateConfig

logger = logging.getLogger(__name__)


def _galaxy_timing(
    heartbeat_interval: float | None, reconnect_delay: float | None, timing: Timing | None
) -> Timing:
    """Galaxy's two timing arguments, turned into the ``Timing`` once (deprecated door).

    Raises:
        TypeError: they were given together with ``timing`` (say each setting once).
    """
    galaxy = {"heartbeat_interval": heartbeat_interval, "reconnect_delay": reconnect_delay}
    given = {name: value for name, value in galaxy.items() if value is not None}
    if not given:
        return timing or Timing()
    if timing is not None:
        raise TypeError(f"give {', '.join(given)} inside timing=Timing(...), not beside it")
    warnings.warn(
        f"ConstellationDeviceManager({', '.join(given)}=...) is Galaxy's constructor, kept "
        "for compatibility: pass timing=stellate.Timing(...) instead",
        DeprecationWarning,
        stacklevel=3,
    )
    return Timing().evolve(**given)


@attrs.define
class _DeviceHandle:
    runner: DeviceRunner
    scope: trio.CancelScope
    done: trio.Event = attrs.field(factory=trio.Event)


class ConstellationDeviceManager:
    """Registers devices on their agent servers and keeps them task-ready.

    Args:
        task_name: names this constellation; its client id on a server is ``task_name@device``.
        heartbeat_interval, reconnect_delay: deprecated, Galaxy's constructor
            (``ConstellationDeviceManager(task_name, heartbeat_interval, reconnect_delay)``),
            kept so code written for Galaxy runs: turned into ``timing`` once, here, with a
            ``DeprecationWarning``. Give ``timing=Timing(heartbeat_interval=...)`` instead.
        timing: every device's deadlines, backoff, heartbeat and windows: the one place they
            are given (``stellate.Timing``, whose fields document their defaults).
        connector: how to open connections (default: real WebSockets).
        api_key: the servers' shared key, added as ``?token=`` to URLs that carry none.
        api_key_source: where ``api_key`` came from, in words (``the key from
            $STELLATE_API_KEY``): a device whose key a server refuses names it in its failure
            reason (never the key). A device whose URL carries its own ``token=`` names that.
        rng: the jitter's random source (seed it for reproducible runs).
        shutdown_timeout: how long a graceful stop waits for every device to disconnect
            before it cancels the stragglers.
        max_connecting: how many connection attempts may be in their handshake at once.
            A fleet brought up all at once would otherwise start thousands of handshakes
            together; starved, they time out and retry, and the load feeds itself. A device
            waiting for a slot is still CONNECTING, and its connect timeout starts only once
            it holds one.
        strict: re-raise a bug in a device's task once it is logged, failing the whole run,
            instead of failing only that device while the fleet runs on. For tests: the
            ``stellate.testing`` harness and stellate's own suite pass True.

    The constructor changes nothing outside the object: no environment read, no logging
    filter. An app that wants its key masked in every log line says so where it starts, as the
    ``stellate`` command does (``stellate.text.redact.install_log_redaction``, ``add_log_secret``).
    """

    def __init__(
        self,
        task_name: str = "stellate",
        heartbeat_interval: float | None = None,
        reconnect_delay: float | None = None,
        *,
        timing: Timing | None = None,
        connector: Connector | None = None,
        api_key: str | None = None,
        api_key_source: str | None = None,
        rng: RandomSource | None = None,
        shutdown_timeout: float = 5.0,
        max_connecting: int = 100,
        strict: bool = False,
    ) -> None:
        if max_connecting < 1:
            raise ValueError("max_connecting must be >= 1")
        self.task_name = task_name
        #: Every device's timing, as given (default ``Timing()``).
        self.timing = _galaxy_timing(heartbeat_interval, reconnect_delay, timing)
        # One timer for every device's deadlines and heartbeats (runs in ``run``'s nursery).
        self._alarms = Alarms()
        self._runner_settings = RunnerSettings(
            task_name=task_name,
            connect_slots=trio.CapacityLimiter(max_connecting),
            strict=strict,
            alarms=self._alarms,
        )
        if connector is None:
            from ..adapters.websocket import WebSocketConnector

            # No deadline of its own: the connect timeout is the CONNECTING state's deadline
            # (``timing.connect_timeout``), armed by the runner once a connect slot is held.
            connector = WebSocketConnector(connect_timeout=None)
        self._connector = connector
        self._api_key = api_key
        self._api_key_source = api_key_source or (
            "the manager's api_key" if api_key else "no key was given"
        )
        self._rng: RandomSource = rng if rng is not None else random.Random()
        self._engine = LifecycleEngine()
        self.device_registry = DeviceRegistry(self._engine)
        self._handles: dict[str, _DeviceHandle] = {}
        self._waiters: dict[str, trio.Event] = {}
        self._subscribers: list[trio.MemorySendChannel[ManagerEvent]] = []
        self._observers: list[Callable[[ManagerEvent], None]] = []

        #: Counts and times every event: read it with ``stats()`` (and the metrics module).
        self.fleet = FleetObserver()
        self.add_observer(self.fleet.observe)
        # Transitions seen per device: lets a caller wait for "a transition after this one"
        # without caring whether it was woken in time to see the intermediate states.
        self._transitions: dict[str, int] = {}
        #: The manager's part of a fleet shared with other managers through a fleet store,
        #: while one runs (``stellate.manager.fleet_share``); None: this manager runs every
        #: device it is given.
        self.fleet_share: SharedFleet | None = None
        # The devices given by a file (``add_config``, ``reload``), as the file gave them.
        self._configured: dict[str, ConfiguredDevice] = {}
        self._reload_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self.shutdown_timeout = shutdown_timeout
        self._context: tuple[AsyncExitStack, trio.CancelScope]

    @classmethod
    def from_config(cls, config: StellateConfig, **overrides: Any) -> Self:
        """A manager with the settings of a loaded devices.yaml (devices not yet added)."""
        settings = config.manager
        kwargs: dict[str, Any] = {
            "task_name": settings.task_name,
            "timing": settings.timing,
            "api_key": settings.api_key,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- running ------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve device tasks: ``manager = await nursery.start(manager.run)``.

        Returns after ``aclose()`` (or ``stop()``) once every device has disconnected; being
        cancelled stops every device task at once instead.
        """
        if self._nursery is not None or self._stopped.is_set():
            raise RuntimeError("a manager runs once")
        try:
            async with trio.open_nursery() as nursery:
                alarms = trio.CancelScope()
                nursery.start_soon(self._run_alarms, alarms, name="stellate alarms")
                self._nursery = nursery
                task_status.started(self)
                await self._stop_requested.wait()
                with trio.move_on_after(self.shutdown_timeout):
                    await self._disconnect_all()
                self._finish_all()
                alarms.cancel()
        finally:
            self._nursery = None
            self._close_subscribers()
            self._stopped.set()

    async def _run_alarms(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._alarms.run()

    def _finish_all(self) -> None:
        """End every device task: those without a socket return by themselves (no
        cancellation raised through each of them), the others are cancelled."""
        for handle in self._handles.values():
            runner = handle.runner
            runner.finish()
            if not runner.released:
                handle.scope.cancel()

    def stop(self) -> None:
        """Ask ``run`` to disconnect every device and return (does not wait; see ``aclose``)."""
        self._stop_requested.set()

    async def aclose(self) -> None:
        """Disconnect every device cleanly and wait until the manager has stopped."""
        self.stop()
        if self._nursery is not None:
            await self._stopped.wait()

    async def _disconnect_all(self) -> None:
        """Every device is told to disconnect at once, then each is waited for in turn.

        No task per device: the commands go out in one pass (each device's own task closes
        its socket, all of them concurrently), and the waits that follow mostly find their
        device already done.
        """
        waiting = []
        for device_id, handle in list(self._handles.items()):
            if not handle.done.is_set():
                handle.runner.command(Command(OwnerCommand.DISCONNECT))
                waiting.append((device_id, handle))
        for device_id, handle in waiting:
            await self._until_disconnected(device_id, handle)

    async def _disconnect_quietly(self, device_id: str) -> None:
        handle = self._handles.get(device_id)
        if handle is None or handle.done.is_set():
            return
        handle.runner.command(Command(OwnerCommand.DISCONNECT))
        await self._until_disconnected(device_id, handle)

    async def _until_disconnected(self, device_id: str, handle: _DeviceHandle) -> None:
        """Until the device is DISCONNECTED and its closing handshake is over, or it is gone
        (removed, or its task ended: it will never get there)."""
        while not handle.done.is_set():
            try:
                status = self.device_registry.lifecycle(device_id).state
            except UnknownDevice:
                return
            if status is DeviceStatus.DISCONNECTED:
                if not handle.runner.released:  # bounded: the close has its own deadline
                    await handle.runner.wait_released()
                return
            await self._waiter(device_id).wait()  # set by every transition, and at the end

    async def __aenter__(self) -> Self:
        if self._nursery is not None or self._stopped.is_set():
            raise RuntimeError("a manager runs once")
        # Entered under an exit stack that is kept only once started: cancelled (or failing)
        # while starting, the nursery is exited here, in this task, before the error goes on.
        async with AsyncExitStack() as stack:
            nursery = await stack.enter_async_context(trio.open_nursery())
            await nursery.start(self.run)
            self._context = (stack.pop_all(), nursery.cancel_scope)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, scope = self._context
        if exc is None:
            self.stop()  # graceful: run() disconnects every device, then returns
        else:
            scope.cancel()  # the body failed or was cancelled: stop every device task now
        return await stack.__aexit__(exc_type, exc, tb)

    @property
    def running(self) -> bool:
        return self._nursery is not None

    # -- phase 1: configuration ---------------------------------------------------------------
    def add_device(self, profile: AgentProfile, *, auto_connect: bool = True) -> None:
        """Register a device (phase 1) and start its task; connect it now if ``auto_connect``.

        Raises:
            RuntimeError: the manager is not running.
            ValueError: a device with that id is already registered, or the id breaks the id
                rule (``stellate.protocol.ids``: no server would take it).
        """
        self._start(profile, self._engine.create, connect=auto_connect)

    def resume_device(
        self, profile: AgentProfile, snapshot: DeviceSnapshot | None, *, now: datetime
    ) -> None:
        """Add a device another manager (or an earlier run) left as ``snapshot``, and start
        its task where the FSM's rule resumes it (``stellate.fsm.resume``): a FAILED device
        stays FAILED with its reason, a backoff waits what is left of it at ``now`` (wall
        time), a device that held or was attempting a socket reconnects at once. Without a
        snapshot, it connects at once as a device moved here mid-attempt (``resume_fresh``).

        Args:
            profile: the device as configured (its URL and ``max_retries`` are the config's).
            snapshot: what the old owner left (``stellate.store.snapshot.decode``), or None.
            now: the wall time the snapshot's absolute times are measured against.

        Raises:
            RuntimeError: the manager is not running.
            ValueError: as ``add_device``.
        """

        def make(configured: AgentProfile, **create: Any) -> DeviceLifecycle:
            if snapshot is None:
                return resume_fresh(self._engine, configured, **create)
            memory = snapshot.memory(now)
            left_in = snapshot.status
            return resume(self._engine, snapshot.profile(configured), left_in, memory, **create)

        self._start(profile, make, connect=False)

    def _start(
        self, profile: AgentProfile, make: Callable[..., DeviceLifecycle], *, connect: bool
    ) -> None:
        """Check ``profile``, make its lifecycle (``make(profile, **create)``) and start
        its task; connect it now if ``connect``."""
        if self._nursery is None or self._stop_requested.is_set():
            raise RuntimeError("the manager is not running (async with / nursery.start(run))")
        refusal = id_refusal(profile.device_id, ClientType.DEVICE)
        if refusal is not None:
            raise ValueError(refusal)
        own_token = token_of(profile.server_url) is not None
        key_source = "the token= in its server_url" if own_token else self._api_key_source
        profile = attrs.evolve(profile, server_url=with_token(profile.server_url, self._api_key))
        create: dict[str, Any] = {
            "timing": self.timing,
            "rng": self._rng,
            "observer": self._observe,
            "monotonic": trio.current_time,
        }
        lifecycle = make(profile, **create)
        try:
            self.device_registry.add(lifecycle)
        except ValueError:
            self._engine.release(lifecycle)
            raise
        runner = DeviceRunner(
            lifecycle, self._connector, self._runner_settings, key_source=key_source
        )
        handle = _DeviceHandle(runner, trio.CancelScope())
        self._handles[profile.device_id] = handle
        self._transitions[profile.device_id] = 0
        self._nursery.start_soon(
            self._device_task, runner, handle, name=f"device:{profile.device_id}"
        )
        if connect:
            runner.command(Command(OwnerCommand.CONNECT))

    async def _device_task(self, runner: DeviceRunner, handle: _DeviceHandle) -> None:
        try:
            with handle.scope:
                await runner.run()
        finally:
            handle.done.set()
            waiter = self._waiters.pop(runner.lc.device_id, None)
            if waiter is not None:  # whoever waits on this device learns its task is over
                waiter.set()

    async def register_device(
        self,
        device_id: str,
        server_url: str,
        os: str | None = None,
        capabilities: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        max_retries: int | None = DEFAULT_MAX_RETRIES,
        auto_connect: bool = True,
    ) -> bool:
        """Galaxy's call: add the device; with ``auto_connect``, run all five phases.

        Returns True once the device is IDLE (or at once without auto_connect), False if it
        ended FAILED.
        """
        profile = AgentProfile(
            device_id=device_id,
            server_url=server_url,
            os=os,
            capabilities=tuple(capabilities),
            metadata=dict(metadata or {}),
            max_retries=max_retries,
        )
        self.add_device(profile, auto_connect=auto_connect)
        if not auto_connect:
            return True
        final = await self.wait_for(device_id, *SETTLED)
        return final.status is DeviceStatus.IDLE

    def add_config(self, config: StellateConfig) -> None:
        """Add every device of a loaded devices.yaml (remembered for ``reload``)."""
        for device in config.devices:
            configured = ConfiguredDevice(device.to_profile(), device.auto_connect)
            self.add_device(configured.profile, auto_connect=configured.auto_connect)
            self._configured[device.device_id] = configured

    async def reload(self, config: StellateConfig) -> ReloadReport:
        """Apply a re-read devices.yaml to the devices ``add_config`` (or an earlier reload)
        gave: a device only in ``config`` is added, one no longer in it is disconnected
        cleanly and forgotten, one whose entry changed is restarted (disconnected, then added
        anew), and one whose entry is the same is not touched (its connection stays). Devices
        added in code (``add_device``) are left alone. One reload at a time: a second waits.

        Removals are concurrent, each bounded by ``shutdown_timeout``.

        Raises:
            ReloadRefused: ``config``'s ``manager:`` block differs from the running manager's
                (task name, timing, key): that takes a restart. Nothing was changed.
            RuntimeError: the manager is not running.
        """
        changed_settings = [
            name
            for name, now, wanted in (
                ("task_name", self.task_name, config.manager.task_name),
                ("timing", self.timing, config.manager.timing),
                ("api_key", self._api_key, config.manager.api_key),
            )
            if now != wanted
        ]
        if changed_settings:
            raise ReloadRefused(
                f"{config.source}: manager: {', '.join(changed_settings)} changed; a reload "
                "applies the devices only, and these take a restart: nothing was changed"
            )
        if self._nursery is None or self._stop_requested.is_set():
            raise RuntimeError("the manager is not running (async with / nursery.start(run))")
        async with self._reload_lock:
            new = {
                d.device_id: ConfiguredDevice(d.to_profile(), d.auto_connect)
                for d in config.devices
            }
            plan = plan_reload(self._configured, new)
            async with trio.open_nursery() as nursery:
                for device_id in (*plan.removed, *plan.changed):
                    self._configured.pop(device_id, None)
                    if device_id in self._handles:
                        nursery.start_soon(self.remove_device, device_id)
            not_started: dict[str, str] = {}
            for device_id in new:
                if device_id not in plan.added and device_id not in plan.changed:
                    continue
                configured = new[device_id]
                try:
                    self.add_device(configured.profile, auto_connect=configured.auto_connect)
                except ValueError as exc:  # e.g. a look-alike of a device added in code
                    not_started[device_id] = str(exc)
                    continue
                self._configured[device_id] = configured
            return ReloadReport(
                added=plan.added,
                removed=plan.removed,
                changed=plan.changed,
                unchanged=len(plan.unchanged),
                not_started=not_started,
            )

    async def remove_device(self, device_id: str) -> None:
        """Disconnect the device cleanly, stop its task and forget it.

        Anyone waiting on it (``wait_for``) gets ``UnknownDevice``.
        """
        handle = self._handles.get(device_id)
        if handle is None:
            raise UnknownDevice(device_id)
        try:
            with trio.move_on_after(self.shutdown_timeout):
                await self._disconnect_quietly(device_id)
        finally:
            handle.scope.cancel()
            with trio.CancelScope(shield=True):
                await handle.done.wait()  # bounded: the runner's close has its own deadline
            self._handles.pop(device_id, None)
            self._configured.pop(device_id, None)
            self._transitions.pop(device_id, None)
            self.device_registry.remove(device_id)
            waiter = self._waiters.pop(device_id, None)
            if waiter is not None:
                waiter.set()

    # -- commands -----------------------------------------------------------------------------
    async def _command(self, device_id: str, name: OwnerCommand) -> None:
        handle = self._handles.get(device_id)
        if handle is None:
            raise UnknownDevice(device_id)
        handle.runner.command(Command(name))
        await trio.lowlevel.checkpoint()

    async def connect_device(self, device_id: str) -> bool:
        """Connect a DISCONNECTED device (or retry a FAILED one); True once IDLE.

        A device already on its way (connecting, backing off: the wait is cut short) or IDLE
        is simply waited for. Returns False if it ends FAILED, or is disconnected meanwhile.
        """
        lifecycle = self.device_registry.lifecycle(device_id)
        if lifecycle.state in AT_REST:
            # Wait for a transition *after* the command, not for "not in FAILED": a retry that
            # fails again at once could be back in FAILED before this task looks.
            seen = self._transitions[device_id]
            await self._command(device_id, OwnerCommand.CONNECT)
            await self._wait_transition_after(device_id, seen)
        else:
            await self._command(device_id, OwnerCommand.CONNECT)
        final = await self.wait_for(device_id, *OUTCOMES)
        return final.status is DeviceStatus.IDLE

    async def retry_device(self, device_id: str) -> bool:
        """Explicitly retry a FAILED device (the only way out of FAILED but disconnect)."""
        return await self.connect_device(device_id)

    async def disconnect_device(self, device_id: str, *, after_task: bool = False) -> None:
        """Disconnect the device and wait until it is DISCONNECTED (it stays so until
        connected or retried). ``after_task``: a BUSY device finishes its task first (and
        takes no new one meanwhile); without it, its task is interrupted."""
        self.disconnect(device_id, after_task=after_task)
        await trio.lowlevel.checkpoint()
        await self._wait_status(device_id, DeviceStatus.DISCONNECTED)

    # -- the operator's commands: at once, without waiting for their outcome -----------------
    def _lifecycle_here(self, device_id: str) -> DeviceLifecycle:
        owner = self.owner_elsewhere(device_id)
        if owner is not None:
            raise DeviceOwnedElsewhere(device_id, owner)
        return self.device_registry.lifecycle(device_id)

    def retry(self, device_id: str) -> bool:
        """The operator's retry, without waiting for its outcome (``retry_device`` waits): a
        FAILED or DISCONNECTED device starts a fresh run, one backing off tries at once.

        Returns False when there is nothing to retry (the device is connecting or active).

        Raises:
            UnknownDevice: no such device here.
            DeviceOwnedElsewhere: another manager of the shared fleet runs it.
        """
        lifecycle = self._lifecycle_here(device_id)
        if lifecycle.serving(OwnerCommand.CONNECT) is None:
            return False
        self._handles[device_id].runner.command(Command(OwnerCommand.CONNECT))
        return True

    def disconnect(self, device_id: str, *, after_task: bool = True) -> str | None:
        """The operator's disconnect, without waiting (``disconnect_device`` waits): the
        device closes its connection and stays DISCONNECTED until retried. ``after_task``
        (the default here): a device working on a task finishes it first and takes no new
        one meanwhile (it is drained), then disconnects.

        Returns the task the device finishes first (None: it disconnects now).

        Raises:
            UnknownDevice: no such device here.
            DeviceOwnedElsewhere: another manager of the shared fleet runs it.
        """
        lifecycle = self._lifecycle_here(device_id)
        task = lifecycle.profile.current_task_id if after_task else None
        if task is not None:
            lifecycle.drain()  # disconnected by _observe once the task is over
            return task
        self._handles[device_id].runner.command(Command(OwnerCommand.DISCONNECT))
        return None

    def next_attempt_in(self, device_id: str) -> float | None:
        """Seconds until the device's next connection attempt while it waits for one by
        itself (backing off; FAILED with ``retry_failed_after``); None otherwise.

        Raises:
            UnknownDevice: no such device.
        """
        handle = self._handles.get(device_id)
        if handle is None:
            raise UnknownDevice(device_id)
        if handle.runner.lc.next_attempt_in is None:
            return None
        return handle.runner.deadline_in(trio.current_time())

    # -- queries ------------------------------------------------------------------------------
    def get_device_info(self, device_id: str) -> AgentProfile | None:
        return self.device_registry.get_device(device_id)

    def get_all_devices(self) -> dict[str, AgentProfile]:
        return self.device_registry.get_all_devices()

    def failure_reason(self, device_id: str) -> str | None:
        return self.device_registry.lifecycle(device_id).failure_reason

    def owner_elsewhere(self, device_id: str) -> str | None:
        """The id of the manager that owns ``device_id`` when another one does (a fleet shared
        through a store: ``fleet_share.owner_of``); None when this manager runs the device,
        when no other owner is known, and always without a fleet store.

        For commands on one device: run them here if the registry has it; otherwise this
        names the manager to send them to.
        """
        share = self.fleet_share
        if share is None or device_id in self.device_registry:
            return None
        owner = share.owner_of(device_id)
        return owner if owner != share.manager_id else None

    def device_snapshot(self, device_id: str, now: datetime) -> DeviceSnapshot:
        """What a new owner needs to resume the device (``resume_device``), at wall time
        ``now``: its profile, its lifecycle's memory, and its deadline as the runner armed it.

        Raises:
            UnknownDevice: no such device.
        """
        handle = self._handles.get(device_id)
        if handle is None:
            raise UnknownDevice(device_id)
        runner = handle.runner
        memory = memory_of(runner.lc, deadline_in=runner.deadline_in(trio.current_time()))
        in_state = self.fleet.time_in_current_state(device_id)
        since = None if in_state is None else now - timedelta(seconds=in_state)
        return snapshot_of(runner.lc.profile, memory, now=now, since=since)

    async def wait_for(self, device_id: str, *statuses: DeviceStatus) -> AgentProfile:
        """Wait until the device is in one of ``statuses`` (default: settled); return that
        profile.

        A FAILED device stays FAILED until someone retries or disconnects it (or, with
        ``Timing.retry_failed_after``, until its own fresh run minutes later), so a wait that
        does not include FAILED ends there with :class:`DeviceFailed` (its reason) instead of
        blocking on. To take either outcome, wait for the settled states (the default,
        ``*SETTLED``) or use ``wait_settled``.

        Raises:
            DeviceFailed: the device is, or becomes, FAILED and FAILED is not in ``statuses``.
            UnknownDevice: no such device, or it was removed while waited for.
        """
        wanted = statuses or SETTLED
        failed = DeviceStatus.FAILED
        while True:
            lifecycle = self.device_registry.lifecycle(device_id)
            profile = lifecycle.profile
            if profile.status in wanted:
                return profile
            if profile.status is failed and failed not in wanted:
                raise DeviceFailed(profile, lifecycle.failure_reason)
            await self._waiter(device_id).wait()

    async def _wait_status(self, device_id: str, status: DeviceStatus) -> None:
        """Until the device is in ``status``, whatever it passes through (a command's own
        wait: a FAILED device told to disconnect is still FAILED when this starts)."""
        while self.device_registry.lifecycle(device_id).state is not status:
            await self._waiter(device_id).wait()

    async def _wait_transition_after(self, device_id: str, seen: int) -> None:
        while self._transitions.get(device_id, seen) <= seen:
            await self._waiter(device_id).wait()
            self.device_registry.lifecycle(device_id)  # raises UnknownDevice once removed

    def _waiter(self, device_id: str) -> trio.Event:
        event = self._waiters.get(device_id)
        if event is None:
            event = self._waiters[device_id] = trio.Event()
        return event

    async def wait_settled(
        self, device_ids: Iterable[str] | None = None
    ) -> dict[str, AgentProfile]:
        """Wait until every (given) device is IDLE or FAILED."""
        ids = list(device_ids) if device_ids is not None else list(self._handles)
        for device_id in ids:
            await self.wait_for(device_id, *SETTLED)
        return {device_id: self.device_registry.lifecycle(device_id).profile for device_id in ids}

    # -- the event stream ---------------------------------------------------------------------
    def subscribe(self) -> trio.MemoryReceiveChannel[ManagerEvent]:
        """Every transition from now on, in order. Close the channel to unsubscribe.

        The buffer is unbounded so no event is ever dropped: read it, or close it.
        """
        send, receive = trio.open_memory_channel[ManagerEvent](math.inf)
        self._subscribers.append(send)
        return receive

    @asynccontextmanager
    async def events(self) -> AsyncIterator[trio.MemoryReceiveChannel[ManagerEvent]]:
        receive = self.subscribe()
        async with receive:
            yield receive

    def add_observer(self, observer: Callable[[ManagerEvent], None]) -> None:
        """Call ``observer(event)`` for every event, synchronously, as its transition fires.

        For figures that need the exact moment (durations); the observer must be quick and
        must not raise. To react to events with I/O, read ``subscribe()`` instead.
        """
        self._observers.append(observer)

    def stats(self) -> FleetStats:
        """Devices by status, attempts, losses, recoveries and failures by reason, now."""
        return self.fleet.snapshot(self.device_registry.lifecycles())

    def _observe(self, record: TransitionRecord, lifecycle: DeviceLifecycle) -> None:
        device_id = record.device_id
        profile = lifecycle.profile
        self._transitions[device_id] = self._transitions.get(device_id, 0) + 1
        waiter = self._waiters.pop(device_id, None)
        if waiter is not None:
            waiter.set()
        retry_in = lifecycle.next_attempt_in
        if lifecycle.drain_requested and record.meanings & TASK_OVER:
            handle = self._handles.get(device_id)
            if handle is not None:  # drained: its task is over, now it disconnects
                handle.runner.command(Command(OwnerCommand.DISCONNECT))
        for kind in _kinds(record):
            reason = lifecycle.failure_reason if kind is EventKind.FAILED else lifecycle.last_error
            event = ManagerEvent(kind, device_id, record, profile, reason, retry_in, record.task_id)
            for observer in self._observers:
                observer(event)
            for subscriber in list(self._subscribers):
                try:
                    subscriber.send_nowait(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.remove(subscriber)

    def _close_subscribers(self) -> None:
        for subscriber in self._subscribers:
            subscriber.close()
        self._subscribers.clear()

    def describe(self, device_id: str) -> str:
        """A one-line summary for logs and displays (URL secrets redacted)."""
        profile = self.device_registry.lifecycle(device_id).profile
        return f"{device_id} {profile.status} {redact_url(profile.server_url)}"


@asynccontextmanager
async def open_constellation(
    config: StellateConfig, **overrides: Any
) -> AsyncIterator[ConstellationDeviceManager]:
    """A running manager with every device of ``config`` added (auto_connect ones connecting)."""
    manager = ConstellationDeviceManager.from_config(config, **overrides)
    async with manager:
        manager.add_config(config)
        yield manager
