"""The manager side of every network benchmark, run in its own process.

``python -m benchmarks.worker '<json job>'`` runs one job and reports on stdout with lines
``@@ {json}``: progress (``{"event": "idle"}``) and, last, ``{"result": {...}}``. Running the
manager alone in a fresh process keeps its CPU time (``time.process_time``) and its RSS free of
the benchmark driver, the servers and the agents.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import psutil
import trio

from stellate import Timing
from stellate.adapters.websocket import WebSocketConnector
from stellate.fsm import SETTLED, AgentProfile, DeviceStatus, Meaning, TransitionRecord
from stellate.fsm.lifecycle import DeviceLifecycle
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import Connection, Connector

from .driver import emit
from .marks import mark


def profiles(spec: list[dict[str, Any]], max_retries: int | None = 5) -> list[AgentProfile]:
    return [
        AgentProfile(f"{shard['prefix']}{i}", shard["url"], max_retries=max_retries)
        for shard in spec
        for i in range(shard["count"])
    ]


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


class LimitedConnector:
    """Experiment (``connect_limit`` in a job): at most ``limit`` handshakes in flight.

    Stands for the admission control proposed for the runner: a device waits for a slot before
    its TCP connect + WebSocket upgrade and frees it once connected, so a burst of N devices
    never puts N handshakes (and N connect deadlines) on the server at once.
    """

    def __init__(self, inner: Connector, limit: int) -> None:
        self._inner = inner
        self._limiter = trio.CapacityLimiter(limit)

    def open(self, url: str) -> AbstractAsyncContextManager[Connection]:
        return _LimitedOpen(self._inner.open(url), self._limiter)


class _LimitedOpen(AbstractAsyncContextManager[Connection]):
    def __init__(
        self, inner: AbstractAsyncContextManager[Connection], limiter: trio.CapacityLimiter
    ) -> None:
        self._inner = inner
        self._limiter = limiter

    async def __aenter__(self) -> Connection:
        async with self._limiter:
            return await self._inner.__aenter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        return await self._inner.__aexit__(*exc)


def _manager(job: dict[str, Any]) -> ConstellationDeviceManager:
    connector: Connector = WebSocketConnector()
    if job.get("connect_limit"):
        connector = LimitedConnector(connector, job["connect_limit"])
    timing = Timing(
        heartbeat_interval=job.get("heartbeat_interval", 30.0),
        reconnect_delay=job.get("reconnect_delay", 5.0),
    ).evolve(
        # Seconds for connect_timeout, registration_timeout, telemetry_timeout (default: the
        # manager's): a worker slowed down by callgrind must not time its devices out.
        **{k: float(v) for k, v in job.get("timeouts", {}).items()},
    )
    return ConstellationDeviceManager("bench", timing=timing, connector=connector)


Sink = Callable[[TransitionRecord, DeviceLifecycle, float], None]


def stamp_transitions(manager: ConstellationDeviceManager, sink: Sink) -> None:
    """Call ``sink(record, lifecycle, trio.current_time())`` synchronously at every transition.

    The public event stream is read by another task, so under load a reader would stamp a whole
    backlog with one time; wrapping the manager's observer stamps each transition when it fires.
    Call before ``add_device`` (a lifecycle keeps the observer it was created with).
    """
    original = manager._observe

    def observe(record: TransitionRecord, lifecycle: DeviceLifecycle) -> None:
        sink(record, lifecycle, trio.current_time())
        original(record, lifecycle)

    manager._observe = observe  # type: ignore[method-assign]


def _statuses(manager: ConstellationDeviceManager) -> dict[str, int]:
    return dict(Counter(p.status.value for p in manager.get_all_devices().values()))


async def _settle(manager: ConstellationDeviceManager, limit: float) -> bool:
    with trio.move_on_after(limit):
        await manager.wait_settled()
        return True
    return False


# -- 1. latency ---------------------------------------------------------------------------------
async def latency(job: dict[str, Any]) -> dict[str, Any]:
    """One device, ``runs`` times: add → IDLE, each transition stamped as it fires; then removed."""
    (device,) = profiles(job["spec"])
    runs, warmup = job["runs"], job.get("warmup", 5)
    samples: list[dict[str, float]] = []
    seen: dict[str, float] = {}
    async with _manager(job) as manager:

        def stamp(record: TransitionRecord, _lc: DeviceLifecycle, at: float) -> None:
            seen.setdefault(record.dest.value, at)

        stamp_transitions(manager, stamp)
        for run in range(warmup + runs):
            seen.clear()
            t0 = trio.current_time()
            manager.add_device(device)
            await manager.wait_for(device.device_id, *SETTLED)
            if DeviceStatus.IDLE.value not in seen:
                raise RuntimeError(f"run {run}: device ended {list(seen)}")
            if run >= warmup:
                samples.append(
                    {
                        "total": seen["idle"] - t0,
                        "1 configuration": seen["connecting"] - t0,
                        "2 connection": seen["connected"] - seen["connecting"],
                        "3 registration": seen["telemetry"] - seen["connected"],
                        "4 telemetry+5 activation": seen["idle"] - seen["telemetry"],
                    }
                )
            await manager.disconnect_device(device.device_id)
            await manager.remove_device(device.device_id)
            await trio.sleep(0.005)  # let the closing handshake finish before the next run
    return {"samples": samples}


# -- 2/3/4/6. a fleet: bring-up, then memory split, steady window, reconnect storm --------------
async def fleet(job: dict[str, Any]) -> dict[str, Any]:
    """Manager start → every device IDLE (wall, CPU, RSS); then the optional stages.

    Job keys: ``spec``; ``tracemalloc`` (split the memory by owner); ``window`` (seconds of
    steady-state CPU after bring-up); ``storm`` (have the driver restart the servers, and stamp
    the reconnection); ``stagger`` (seconds between two ``add_device`` calls: devices brought
    up together send their heartbeats together, and trio then wakes once for many of them);
    ``shutdown`` (end with the graceful stop, every device closed with a closing handshake, and
    measure it; without it the job ends by cancellation, which nobody waits for).
    """
    devices = profiles(job["spec"], max_retries=job.get("max_retries", 5))
    n = len(devices)
    trace = job.get("tracemalloc", False)
    gc.collect()
    rss_before = rss()
    if trace:  # only what is allocated from here on is traced: no baseline snapshot needed
        tracemalloc.start(job.get("frames", 8))
    cpu0, t0 = time.process_time(), time.perf_counter()
    stop = trio.CancelScope()  # leaving by cancellation: no graceful disconnect of N devices
    with stop:
        async with _manager(job) as manager:
            storm = _Storm()
            stamp_transitions(manager, storm.see)
            with profiled("bring_up"):
                stagger = job.get("stagger", 0.0)
                for profile in devices:
                    manager.add_device(profile)
                    if stagger:  # spread the devices' heartbeats over the interval
                        await trio.sleep(stagger)
                settled = await _settle(manager, job.get("timeout", 600.0))
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            mark("bring_up")
            result: dict[str, Any] = {
                "n": n,
                "wall_s": wall,
                "cpu_s": cpu,
                "settled": settled,
                "statuses": _statuses(manager),
            }
            result["attempts"] = storm.bring_up_attempts
            result["idle_at"] = _quantiles(sorted(storm.ready))
            await trio.sleep(job.get("linger", 0.5))  # let closing handshakes and readers settle
            gc.collect()
            result["rss_before"] = rss_before
            result["rss_after"] = rss()
            if trace:
                snap = tracemalloc.take_snapshot()
                tracemalloc.stop()
                result["split"] = split(snap)
                if job.get("snapshot"):  # kept for a closer look (``benchmarks.memory``)
                    snap.dump(job["snapshot"])
            emit({"event": "up", "wall_s": wall})
            if job.get("window"):
                result["steady"] = await _steady(manager, job["window"])
            if job.get("storm"):
                result["storm"] = await _storm(manager, storm, n, job.get("storm_timeout", 180.0))
            if job.get("shutdown"):
                mark("idle")
                result["shutdown"] = await _shutdown(manager)
                mark("shutdown")
            stop.cancel()
            await trio.lowlevel.checkpoint()
    return result


#: Owners in priority order: an allocation belongs to the first owner named by any frame of its
#: traceback (so a reader task trio starts for trio-websocket counts as "sockets").
_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "sockets",
        (
            "trio_websocket",
            "wsproto",
            "h11",
            "/ssl.py",
            "/socket.py",
            "trio/_socket",
            "trio/_highlevel",
            "stellate/adapters/ws_",
        ),
    ),
    ("profiles", ("stellate/fsm/profile", "<attrs generated")),
    ("machine", ("transitions/", "stellate/fsm/")),
    ("runner+manager", ("stellate/runner", "stellate/manager", "stellate/protocol")),
    ("trio tasks", ("trio/",)),
]


def _category(frames: tracemalloc.Traceback) -> str:
    names = [frame.filename.replace("\\", "/") for frame in frames]
    for category, needles in _CATEGORIES:
        if any(needle in name for name in names for needle in needles):
            return category
    return "other"


def split(snap: tracemalloc.Snapshot) -> dict[str, int]:
    """Bytes traced (allocated since ``tracemalloc.start``) and still alive, by owner."""
    out: Counter[str] = Counter()
    for stat in snap.statistics("traceback"):
        out[_category(stat.traceback)] += stat.size
    return dict(out)


async def _steady(manager: ConstellationDeviceManager, window: float) -> dict[str, Any]:
    """Manager CPU over ``window`` seconds of heartbeating (nothing else happening)."""
    return await _timed(manager, "window", "steady", partial(trio.sleep, window))


async def _shutdown(manager: ConstellationDeviceManager) -> dict[str, Any]:
    """The graceful stop of the whole fleet (``aclose``: a closing handshake per device)."""
    return await _timed(manager, "shutdown", "shutdown", manager.aclose)


async def _timed(
    manager: ConstellationDeviceManager,
    event: str,
    stage: str,
    work: Callable[[], Awaitable[object]],
) -> dict[str, Any]:
    """CPU and wall time of ``work``, announced to the driver as ``event`` and ``event_end``
    (it reads the servers' CPU then), profiled as ``stage``; the statuses after it.

    User and system time are kept apart: the kernel's share (socket sends and receives, waking
    the peer process) is the same whatever the Python above it does.
    """
    times0, cpu0, t0 = os.times(), time.process_time(), time.perf_counter()
    emit({"event": event})
    with profiled(stage):
        await work()
    emit({"event": f"{event}_end"})
    times1 = os.times()
    return {
        "cpu_s": time.process_time() - cpu0,
        "user_s": times1.user - times0.user,
        "system_s": times1.system - times0.system,
        "wall_s": time.perf_counter() - t0,
        "statuses": _statuses(manager),
    }


_DIGITS = re.compile(r"\d+")


def _quantiles(ordered: list[float]) -> dict[str, float]:
    if not ordered:
        return {}
    out = {f"p{q}": ordered[min(len(ordered) - 1, len(ordered) * q // 100)] for q in (10, 50, 90)}
    return out | {"max": ordered[-1]}


class _Storm:
    """Transition stamps: bring-up attempts and arrivals, then losses and reconnections."""

    def __init__(self) -> None:
        self.t0 = trio.current_time()
        self.bring_up_attempts = 0
        self.ready: list[float] = []
        self.attempts: list[float] = []
        self.lost: dict[str, float] = {}
        self.back: dict[str, float] = {}
        self.failed: set[str] = set()
        self.reasons: Counter[str] = Counter()
        self.done = trio.Event()
        self.expected = 0

    def see(self, record: TransitionRecord, lifecycle: DeviceLifecycle, at: float) -> None:
        device, meanings = record.device_id, record.meanings
        if Meaning.LOST in meanings:
            self.lost.setdefault(device, at)
            self.back.pop(device, None)
        elif device in self.lost:
            if Meaning.ATTEMPT in meanings:
                self.attempts.append(at)
            elif Meaning.READY in meanings:
                self.back.setdefault(device, at)
            elif Meaning.GAVE_UP in meanings:
                self.failed.add(device)
            elif Meaning.BACKS_OFF in meanings:
                self.reasons[_DIGITS.sub("N", lifecycle.last_error or "?")[:90]] += 1
            if self.expected and len(self.back) + len(self.failed) >= self.expected:
                self.done.set()
        elif Meaning.ATTEMPT in meanings:
            self.bring_up_attempts += 1
        elif Meaning.READY in meanings:
            self.ready.append(at - self.t0)


async def _storm(
    manager: ConstellationDeviceManager, storm: _Storm, n: int, limit: float
) -> dict[str, Any]:
    """Tell the driver to restart the servers; stamp every reconnect attempt until all IDLE."""
    storm.expected = n
    # Trio's clock against the wall clock: the driver places the servers' log lines (wall
    # clock) on the same time line as the transitions (trio clock).
    clock = {"trio": trio.current_time(), "wall": time.time()}
    emit({"event": "restart"})
    cpu0 = time.process_time()
    with profiled("storm"), trio.move_on_after(limit):
        await storm.done.wait()
    cpu = time.process_time() - cpu0
    origin = min(storm.lost.values()) if storm.lost else math.nan
    return {
        "origin": origin,
        "clock": clock,
        "lost": len(storm.lost),
        "recovered": len(storm.back),
        "failed": len(storm.failed),
        "attempts": [round(t - origin, 4) for t in storm.attempts],
        "recovered_at": sorted(round(t - origin, 4) for t in storm.back.values()),
        "cpu_s": cpu,
        "statuses": _statuses(manager),
        "why_attempts_failed": dict(storm.reasons.most_common(6)),
    }


async def floor(job: dict[str, Any]) -> dict[str, Any]:
    from .floor import client

    return await client(job)


JOBS = {"latency": latency, "fleet": fleet, "floor": floor}


@contextlib.contextmanager
def profiled(stage: str) -> Iterator[None]:
    """Diagnostics: with ``STELLATE_BENCH_PROFILE=PREFIX`` (and optionally
    ``STELLATE_BENCH_STAGE=bring_up|steady|storm|shutdown``), cProfile a stage into
    ``PREFIX.STAGE.prof``.
    """
    prefix = os.environ.get("STELLATE_BENCH_PROFILE")
    wanted = os.environ.get("STELLATE_BENCH_STAGE", stage)
    if not prefix or wanted != stage:
        yield
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(f"{prefix}.{stage}.prof")


def main() -> None:
    job = json.loads(sys.argv[1])
    result = trio.run(JOBS[job["kind"]], job)
    result["pid"] = os.getpid()
    emit({"result": result})


if __name__ == "__main__":
    main()
