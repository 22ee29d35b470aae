"""The floor: what trio-websocket alone costs for the same traffic, with nothing of stellate.

``python -m benchmarks.floor`` serves: it answers every message with a heartbeat-ack-sized
frame. The client (the worker's ``floor`` job, in its own process) opens N connections, makes
three round trips on each (connect + three round trips: a device's bring-up on the wire), then
one round trip per connection every ``interval`` seconds at random phases (heartbeats), for
``window`` seconds. The client reports its own CPU per connection and per round trip: the
manager's figures have these under them, so the difference is what stellate adds.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import trio
import trio_websocket

from .driver import emit, run_worker
from .marks import mark
from .procs import PYTHON, Child, Rig
from .report import Row, ms

#: Sizes of the frames a device's bring-up and heartbeats exchange (bytes, as encoded).
REGISTER, ANSWER, HEARTBEAT, ACK = 520, 330, 330, 330


async def _serve() -> None:
    answer = "x" * ACK

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.get_message()
                await ws.send_message(answer)
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        print(f"floor server on ws://127.0.0.1:{server.port}/", flush=True)


async def _client(job: dict[str, Any]) -> dict[str, Any]:
    """Connect ``n``, three round trips each; beats for ``window`` seconds (none when
    ``interval`` is 0); then, with ``close``, every connection closed at once (the closing
    handshake trio-websocket does when its ``async with`` ends)."""
    n, url, interval, window = job["n"], job["url"], job["interval"], job["window"]
    rng = random.Random(1)
    connected, stop, all_closed = trio.Event(), trio.Event(), trio.Event()
    ready = closed = 0
    cpu0 = time.process_time()
    marks: dict[str, float] = {}

    limiter = trio.CapacityLimiter(100)  # as the manager's max_connecting

    async def beats(ws: trio_websocket.WebSocketConnection) -> None:
        await trio.sleep(rng.uniform(0, interval))
        beat = "h" * HEARTBEAT
        while True:
            await ws.send_message(beat)
            await ws.get_message()
            await trio.sleep(interval)

    async def one() -> None:
        nonlocal ready, closed
        await limiter.acquire()
        async with trio_websocket.open_websocket_url(url) as ws:
            for size in (REGISTER, ANSWER, ANSWER):
                await ws.send_message("r" * size)
                await ws.get_message()
            limiter.release()
            ready += 1
            if ready == n:
                marks["connected"] = time.process_time()
                mark("connect")
                connected.set()
            async with trio.open_nursery() as inner:
                if interval:
                    await connected.wait()
                    inner.start_soon(beats, ws)
                await stop.wait()
                inner.cancel_scope.cancel()
        closed += 1
        if closed == n:
            all_closed.set()

    out: dict[str, Any] = {"n": n}
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        await connected.wait()
        out["connect_cpu_s"] = marks["connected"] - cpu0
        emit({"event": "up"})
        if interval and window:
            await trio.sleep(interval)  # every connection has made its first beat or is about to
            t0, c0, times0 = time.perf_counter(), time.process_time(), os.times()
            emit({"event": "window"})
            await trio.sleep(window)
            emit({"event": "window_end"})
            beat_wall = time.perf_counter() - t0
            times1 = os.times()
            out["beat_cpu_s"] = time.process_time() - c0
            out["beat_user_s"] = times1.user - times0.user
            out["beat_system_s"] = times1.system - times0.system
            out["beats"] = n * beat_wall / interval
            mark("beats")
        if job.get("close"):
            c0, t0 = time.process_time(), time.perf_counter()
            emit({"event": "shutdown"})
            stop.set()
            await all_closed.wait()
            out["close_cpu_s"] = time.process_time() - c0
            out["close_wall_s"] = time.perf_counter() - t0
            emit({"event": "shutdown_end"})
            mark("close")
        nursery.cancel_scope.cancel()
    return out


def measure(rig: Rig, *, interval: float, window: float) -> dict[str, Any]:
    """The floor for ``rig.n`` connections (the rig supplies only the log directory)."""
    server = Child("floor-server", [PYTHON, "-m", "benchmarks.floor"], rig.log_dir)
    try:
        line = server.wait_line("floor server on", 30.0)
        url = line.rsplit(" ", 1)[1]
        job = {"kind": "floor", "n": rig.n, "url": url, "interval": interval, "window": window}
        job["close"] = True
        marks = {"start": server.cpu_seconds()}

        def on_event(message: dict[str, Any]) -> None:
            marks[str(message.get("event"))] = server.cpu_seconds()

        result = run_worker(job, rig.log_dir, timeout=120.0 + window, on_event=on_event)
        # The floor server's own CPU: answering the same traffic with trio-websocket alone.
        result["server_connect_cpu_s"] = marks["up"] - marks["start"]
        if "window" in marks and "window_end" in marks:
            result["server_beat_cpu_s"] = marks["window_end"] - marks["window"]
        return result
    finally:
        server.stop()


def rows(result: dict[str, Any], beat: dict[str, Any] | None, fleet: dict[str, Any]) -> list[Row]:
    """The floors measured in this run (client and server side), each beside stellate's."""
    n = result["n"]
    per_conn = result["connect_cpu_s"] / n
    bring_up = fleet["cpu_s"] / fleet["n"]
    out = [
        Row(
            "floor",
            f"trio-websocket alone, N={n:,}: connect + 3 round trips",
            f"{ms(per_conn)}/connection",
            value=per_conn,
            note=f"stellate's bring-up ({ms(bring_up)}/device) adds {ms(bring_up - per_conn)}",
        )
    ]
    if "close_cpu_s" in result:
        per_close = result["close_cpu_s"] / n
        note = ""
        if "shutdown" in fleet:
            ours = fleet["shutdown"]["cpu_s"] / fleet["n"]
            note = f"stellate's clean shutdown ({ms(ours)}/device) adds {ms(ours - per_close)}"
        out.append(
            Row(
                "floor",
                f"trio-websocket alone, N={n:,}: closing handshake, all at once",
                f"{ms(per_close)}/connection",
                value=per_close,
                note=note,
            )
        )
    if "beat_cpu_s" in result:
        per_beat = result["beat_cpu_s"] / result["beats"]
        split = ""
        if "beat_user_s" in result:
            user, system = result["beat_user_s"], result["beat_system_s"]
            split = f" (user {user / result['beats'] * 1e6:.0f} + system "
            split += f"{system / result['beats'] * 1e6:.0f} µs)"
        note = ""
        if beat is not None:
            note = f"stellate's heartbeat ({beat['manager_s'] * 1e6:.0f} µs) adds "
            note += f"{(beat['manager_s'] - per_beat) * 1e6:.0f} µs"
        out.append(
            Row(
                "floor",
                f"trio-websocket alone, N={n:,}: one round trip at the heartbeat rate",
                f"{per_beat * 1e6:.0f} µs{split}",
                value=per_beat,
                note=note,
            )
        )
    if "server_connect_cpu_s" in result:
        per = result["server_connect_cpu_s"] / n
        out.append(
            Row(
                "floor",
                f"trio-websocket's server alone, N={n:,}: accept + 3 round trips",
                f"{ms(per)}/connection",
                value=per,
            )
        )
    if "server_beat_cpu_s" in result:
        per = result["server_beat_cpu_s"] / result["beats"]
        out.append(
            Row(
                "floor",
                f"trio-websocket's server alone, N={n:,}: one round trip answered",
                f"{per * 1e6:.0f} µs",
                value=per,
            )
        )
    return out


async def client(job: dict[str, Any]) -> dict[str, Any]:
    """The worker's ``floor`` job (run by ``benchmarks.worker``, like the manager's jobs)."""
    return await _client(job)


if __name__ == "__main__":  # the server
    trio.run(_serve)
