"""What metrics cost: agent server and manager CPU with metrics on vs off, in alternating pairs.

``python -m benchmarks.metrics_cost [--pairs 10] [--devices 500] [server|manager|micro ...]``

* ``server``: an agent server in its own process (``AgentServer(metrics=True/False)``; with
  metrics on, ``/metrics`` is scraped every second); a load process registers ``--devices``
  devices and a constellation for each (with telemetry), then every device sends 30
  heartbeats. The server's CPU (psutil) for the bring-up and for the heartbeats.
* ``manager``: the manager in its own process brings ``--devices`` devices up (server and
  agents in two other processes), then keeps them with 1 s heartbeats for 10 s; it times its
  own CPU. On: its ``FleetObserver`` counts every event and the fleet port is open, with
  ``/metrics`` scraped every 5 s. Off: no observer, no port.
* ``micro``: the code metrics add, alone: a server session answering heartbeats and
  registrations with and without its counts, and the manager's observer per event.

Each pair runs on then off, or off then on (alternating), so the machine's load drifts over
both alike; the pair ratios' median and the ratio of the sums are printed. On a shared machine a
single pair moves by ±25 %: read the medians, and the micro figures for the code itself.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

_SERVER = """
import sys, trio
from stellate.server import AgentServer
async def main():
    server = AgentServer(metrics=sys.argv[1] == "on", max_connections=6000, max_unregistered=6000)
    async with trio.open_nursery() as nursery:
        print(await nursery.start(server.serve, "127.0.0.1", 0), flush=True)
        await trio.sleep_forever()
trio.run(main)
"""

_SERVER_LOAD = """
import json, sys, psutil, trio
from stellate.adapters.websocket import WebSocketConnector
port, pid, n, beats = (int(a) for a in sys.argv[1:5])
url = f"ws://127.0.0.1:{port}/ws"
server = psutil.Process(pid)
def cpu():
    t = server.cpu_times()
    return t.user + t.system
def frame(**fields):
    return json.dumps({"status": "ok", **fields})
async def main():
    connector = WebSocketConnector(connect_timeout=60)
    registered, go, done = trio.Event(), trio.Event(), trio.Semaphore(0)
    count = [0]
    async def device(i):
        d = f"d{i}"
        async with connector.open(url) as dev, connector.open(url) as con:
            await dev.send(frame(type="register", client_type="device", client_id=d,
                                 metadata={"system_info": {"device_id": d, "platform": "linux"}}))
            await dev.receive()
            await con.send(frame(type="register", client_type="constellation",
                                 client_id=f"t@{d}", target_id=d))
            await con.receive()
            await con.send(frame(type="device_info_request", client_type="constellation",
                                 client_id=f"t@{d}", target_id=d, request_id="r"))
            await con.receive()
            count[0] += 1
            if count[0] == n:
                registered.set()
            await go.wait()
            beat = frame(type="heartbeat", client_type="device", client_id=d)
            for _ in range(beats):
                await dev.send(beat)
                await dev.receive()
            done.release()
            await trio.sleep_forever()
    async with trio.open_nursery() as nursery:
        c0 = cpu()
        for i in range(n):
            nursery.start_soon(device, i)
        await registered.wait()
        c1 = cpu()
        go.set()
        for _ in range(n):
            await done.acquire()
        c2 = cpu()
        print(json.dumps({"bring_up": c1 - c0, "steady": c2 - c1}), flush=True)
        nursery.cancel_scope.cancel()
trio.run(main)
"""

_AGENTS = """
import sys, trio
from stellate.agent import DeviceAgent, run_fleet
url, n = sys.argv[1], int(sys.argv[2])
agents = [DeviceAgent(url, f"d{i}", system_info={"platform": "linux"}) for i in range(n)]
trio.run(lambda: run_fleet(agents, on_all_registered=lambda: print("ready", flush=True)))
"""

_MANAGER = """
import json, sys, time, trio
from stellate import Timing
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import ConstellationDeviceManager
from stellate.manager.metrics import serve_fleet
url, n, window, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
async def main():
    manager = ConstellationDeviceManager(timing=Timing(heartbeat_interval=1.0))
    if mode == "off":
        manager._observers.clear()  # no FleetObserver: the manager without its figures
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        if mode == "on":
            print("port", await nursery.start(serve_fleet, manager, "127.0.0.1", 0), flush=True)
        c0 = time.process_time()
        for i in range(n):
            manager.add_device(AgentProfile(f"d{i}", url))
        await manager.wait_settled()
        c1 = time.process_time()
        idle = sum(p.status is DeviceStatus.IDLE for p in manager.get_all_devices().values())
        await trio.sleep(window)
        c2 = time.process_time()
        print("result", json.dumps({"bring_up": c1 - c0, "steady": c2 - c1, "idle": idle}),
              flush=True)
        manager.stop()
        nursery.cancel_scope.cancel()
trio.run(main)
"""

Result = dict[str, float]


def _line(process: subprocess.Popen[str], prefix: str = "") -> str:
    assert process.stdout is not None
    while line := process.stdout.readline():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise RuntimeError(f"the child ended before printing {prefix!r}")


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)


class _Scraper:
    """GET ``path`` on 127.0.0.1:``port`` every ``every`` seconds, in a thread, until stopped."""

    def __init__(self, port: int, path: str, every: float) -> None:
        self._stop = threading.Event()

        def scrape() -> None:
            while not self._stop.is_set():
                with contextlib.suppress(OSError):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", path)
                    conn.getresponse().read()
                    conn.close()
                self._stop.wait(every)

        self._thread = threading.Thread(target=scrape, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def server_run(mode: str, devices: int) -> Result:
    server = _python(_SERVER, mode)
    port = int(_line(server))
    scraper = _Scraper(port, "/metrics", 1.0) if mode == "on" else None
    try:
        load = _python(_SERVER_LOAD, str(port), str(server.pid), str(devices), "30")
        result: Result = json.loads(_line(load))
        load.wait()
    finally:
        if scraper is not None:
            scraper.stop()
        server.terminate()
        server.wait()
    return result


class ManagerRig:
    """A server and its agents, kept for every manager run (each run is a fresh manager)."""

    def __init__(self, devices: int) -> None:
        self.devices = devices
        self._server = subprocess.Popen(
            [
                *(sys.executable, "-m", "stellate", "serve", "--port", "0", "--no-metrics"),
                *("--max-connections", "6000", "--max-unregistered", "6000"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = "ws://127.0.0.1:" + _line(self._server).split(":")[-1].split("/")[0] + "/ws"
        self._agents = _python(_AGENTS, self.url, str(devices))
        _line(self._agents, "ready")

    def run(self, mode: str) -> Result:
        manager = _python(_MANAGER, self.url, str(self.devices), "10", mode)
        scraper = None
        if mode == "on":
            scraper = _Scraper(int(_line(manager, "port ")), "/metrics", 5.0)
        try:
            result: Result = json.loads(_line(manager, "result "))
        finally:
            if scraper is not None:
                scraper.stop()
            manager.wait()
        assert result["idle"] == self.devices, result
        return result

    def close(self) -> None:
        for child in (self._agents, self._server):
            child.terminate()
            child.wait()


def pairs(name: str, run: Callable[[str], Result], count: int) -> None:
    results: dict[str, list[Result]] = {"on": [], "off": []}
    for i in range(count):
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            results[mode].append(run(mode))
        on, off = results["on"][-1], results["off"][-1]
        print(
            f"{name} pair {i}: "
            + "; ".join(f"{k} on/off {on[k]:.3f}/{off[k]:.3f} s" for k in ("bring_up", "steady")),
            flush=True,
        )
    for key in ("bring_up", "steady"):
        ratios = [a[key] / b[key] for a, b in zip(results["on"], results["off"], strict=True)]
        on_sum = sum(r[key] for r in results["on"])
        off_sum = sum(r[key] for r in results["off"])
        print(
            f"{name} {key}: median of pair ratios on/off {statistics.median(ratios):.3f}, "
            f"ratio of sums {on_sum / off_sum:.3f} ({on_sum:.2f} s / {off_sum:.2f} s CPU)"
        )


def micro(rounds: int = 12) -> None:
    """The code metrics add on each path, alone (medians over alternating rounds)."""
    import trio

    from stellate.fsm import AgentProfile, TransitionRecord, Trigger
    from stellate.fsm import DeviceStatus as S
    from stellate.manager import EventKind, ManagerEvent
    from stellate.manager.stats import FleetObserver
    from stellate.protocol.registry import ClientRegistry
    from stellate.protocol.server_counts import ServerCounts
    from stellate.protocol.session_server import ServerSession

    register = json.dumps(
        {"type": "register", "status": "ok", "client_type": "device", "client_id": "d0"}
    )
    beat = json.dumps({"type": "heartbeat", "status": "ok", "client_type": "device"})

    def heartbeats(counts: ServerCounts | None, n: int = 20_000) -> float:
        session = ServerSession(ClientRegistry(), 0.0, counts=counts)
        session.receive(register, 0.0)
        began = time.process_time()
        for i in range(n):
            session.receive(beat, float(i))
        return (time.process_time() - began) / n * 1e6

    def registrations(counts: ServerCounts | None, n: int = 3_000) -> float:
        registry, began = ClientRegistry(), time.process_time()
        for i in range(n):
            session = ServerSession(registry, 0.0, counts=counts)
            session.receive(register.replace('"d0"', f'"d{i}"'), 0.0)
        return (time.process_time() - began) / n * 1e6

    for name, measure in (("heartbeat", heartbeats), ("registration", registrations)):
        on: list[float] = []
        off: list[float] = []
        for i in range(rounds):
            for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
                (on if mode == "on" else off).append(
                    measure(ServerCounts() if mode == "on" else None)
                )
        a, b = statistics.median(on), statistics.median(off)
        print(f"micro server session per {name}: on {a:.2f} µs, off {b:.2f} µs, {a / b:.3f}")

    path = [
        (Trigger.CONNECT, S.DISCONNECTED, S.CONNECTING, EventKind.PHASE),
        (Trigger.CONNECTION_OPENED, S.CONNECTING, S.CONNECTED, EventKind.PHASE),
        (Trigger.REGISTER_SENT, S.CONNECTED, S.REGISTERING, EventKind.PHASE),
        (Trigger.REGISTRATION_ANSWERED, S.REGISTERING, S.TELEMETRY, EventKind.PHASE),
        (Trigger.TELEMETRY_RECEIVED, S.TELEMETRY, S.IDLE, EventKind.READY),
    ]

    async def observe(n: int = 10_000) -> float:
        observer, profile = FleetObserver(), AgentProfile("d", "ws://x/ws")
        events = [
            ManagerEvent(kind, f"d{i}", TransitionRecord(f"d{i}", t, a, b), profile)
            for i in range(n)
            for t, a, b, kind in path
        ]
        began = time.process_time()
        for event in events:
            observer.observe(event)
        return (time.process_time() - began) / n * 1e6

    per_device = statistics.median(trio.run(observe) for _ in range(5))
    print(f"micro manager observer per device bring-up ({len(path)} events): {per_device:.1f} µs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost", description=__doc__)
    parser.add_argument("what", nargs="*", default=["micro", "server", "manager"])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--devices", type=int, default=500)
    args = parser.parse_args(argv)
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))  # children inherit it
    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    if "micro" in args.what:
        micro()
    if "server" in args.what:
        pairs("server", lambda mode: server_run(mode, args.devices), args.pairs)
    if "manager" in args.what:
        rig = ManagerRig(args.devices)
        try:
            pairs("manager", rig.run, args.pairs)
        finally:
            rig.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
