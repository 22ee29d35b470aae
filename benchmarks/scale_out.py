"""Scale-out: one fleet shared by several ``stellate up --store`` manager processes.

Everything in its own process on 127.0.0.1: a ``redis-server``, the agent servers and the
simulated agents (``procs.Rig``: sharded by the open-file limit), and the managers (each
``stellate up CONFIG --store URL --manager-id mK --metrics-port P``). Measured:

* **bring-up**: from starting 3 managers to every device IDLE: every device's constellation
  registered at its agent server (the servers' logs, followed every 0.5 s: ``Registrations``),
  then confirmed by the sum of the managers' ``stellate_manager_devices{status="idle"}``;
* **steady state**: Redis's CPU and script calls over a window of renewal rounds, per device
  per round; the managers' whole-process CPU over the same window (heartbeats included);
* **kill -9 one of 3**: until each of its devices is IDLE again under the survivors, the FAILED
  count, and each device's time off the air: from its constellation leaving its agent server to
  its next registration there (the servers log both, ``-v``);
* **a 4th manager joins**: until it runs ≥ 20 % of the fleet, then until every device is IDLE
  again; FAILED; each handed-over device's time off the air, measured the same way;
* **a renewal round's cost** in one process: the real ownership loop (``keep_ownership``) of
  one of 3 managers sharing the fleet's device ids through the same Redis, its CPU per round
  and per device, and the store calls (each one pipelined round trip) per round.

The agents start one process (2,500 agents) at a time: all at once, tens of thousands of
them time out against a loaded machine's servers and never get through. The machine is shared:
the figures move with its load (the report gives the load average). Every process started is
stopped on the way out, on failure too (SIGTERM to the managers, which hand their devices over,
then the rig's and Redis's own clean-up).
"""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from .procs import STELLATE, Child, Rig
from .redis_server import RedisServer, free_port
from .report import Row, percentile

LEASE = 15.0
JOIN_SHARE = 0.20
JOIN_WITHIN = 60.0
OFF_AIR_LIMIT = 2.0
TAKEOVER_SLACK = 15.0
CPU_PER_DEVICE_TARGET_US = 20.0
POLL = 0.5

_LOG = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \S+: "
    r"(?:registered constellation (\S+)|constellation (\S+) left)$"
)
_IDLE = re.compile(r'^stellate_manager_devices\{status="(\w+)"\} (\S+)$', re.MULTILINE)
#: An agent server refusing a registration because the id is held by a live client (a second
#: manager registering a device another one still holds), or replacing a stale one.
_REFUSED = "is already registered"
_REPLACED = "replacing stale registration of"


class Managers:
    """The manager processes of the shared fleet, and their metrics ports."""

    def __init__(self, rig: Rig, config: Path) -> None:
        self.rig = rig
        self.config = config
        self.children: dict[str, Child] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> None:
        port = free_port()
        argv = [STELLATE, "up", str(self.config), "--manager-id", name]
        argv += ["--metrics-port", str(port)]
        self.children[name] = Child(name, argv, self.rig.log_dir)
        self.ports[name] = port

    def counts(self, names: Collection[str] | None = None) -> dict[str, Counter[str]]:
        """Devices per status of each (live) manager, from its ``/metrics``."""
        out: dict[str, Counter[str]] = {}
        for name in names or list(self.children):
            if self.children[name].proc.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=10
                ) as answer:
                    text = answer.read().decode()
            except OSError:
                out[name] = Counter()
                continue
            out[name] = Counter({s: int(float(v)) for s, v in _IDLE.findall(text)})
        return out

    def kill(self, name: str) -> None:
        self.children[name].proc.send_signal(signal.SIGKILL)
        self.children[name].proc.wait()

    def cpu(self) -> dict[str, float]:
        return {name: c.cpu_seconds() for name, c in self.children.items()}

    def close(self) -> None:
        for child in self.children.values():
            child.stop(signal.SIGTERM, grace=30.0)


def _config(rig: Rig, path: Path, store: str) -> list[str]:
    lines = ["manager:", '  task_name: "bench-share"', "store:", f"  url: {store}"]
    lines += [f"  lease: {LEASE:g}", "devices:"]
    devices = [(f"{s['prefix']}{i}", s["url"]) for s in rig.spec() for i in range(s["count"])]
    for device_id, url in devices:
        lines.append(f'  - device_id: "{device_id}"')
        lines.append(f'    server_url: "{url}"')
    path.write_text("\n".join(lines) + "\n")
    return [device_id for device_id, _url in devices]


def _wait(what: str, done: Callable[[], bool], timeout: float, poll: float = POLL) -> float | None:
    """Seconds until ``done()``; None if ``timeout`` passed first."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if done():
            return time.monotonic() - began
        time.sleep(poll)
    print(f"[scale-out] {what}: not within {timeout:g} s", flush=True)
    return None


class Registrations:
    """The agent servers' logs (``-v``) read as they grow: every constellation registration and
    departure (wall time, "up" or "down", device id) and the devices registered now.

    The benchmark follows the fleet here rather than on the managers' ``/metrics``: a shared
    manager reads the whole fleet's view from the store for each scrape (at most every 2 s),
    and polling that every half second would load the managers and Redis it measures. The
    managers' own counts are read only to confirm (all IDLE, the FAILED count).
    """

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.events: list[tuple[float, str, str]] = []
        self.live: set[str] = set()
        #: Device → when its constellation last registered.
        self.since: dict[str, float] = {}
        self._offsets: dict[Path, int] = {}

    def poll(self) -> None:
        for path in self.rig.server_log_paths():
            offset = self._offsets.get(path, 0)
            try:
                with open(path, "rb") as log:
                    log.seek(offset)
                    data = log.read()
            except OSError:
                continue
            whole = data.rfind(b"\n") + 1  # a line still being written is read next time
            self._offsets[path] = offset + whole
            for line in data[:whole].decode(errors="replace").splitlines():
                match = _LOG.match(line)
                if not match:
                    continue
                stamp = _stamp(line)
                device = (match.group(1) or match.group(2)).partition("@")[2]
                if match.group(1):
                    self.live.add(device)
                    self.since[device] = stamp
                    self.events.append((stamp, "up", device))
                else:
                    self.live.discard(device)
                    self.events.append((stamp, "down", device))

    def registered_since(self, when: float) -> int:
        """Devices registered now whose registration came at ``when`` or later."""
        return sum(1 for device in self.live if self.since[device] >= when)

    def ordered(self) -> list[tuple[float, str, str]]:
        """Every event so far in time order (stable: a server's own order within a ms)."""
        self.poll()
        return sorted(self.events, key=lambda event: event[0])


def _off_air(
    events: Sequence[tuple[float, str, str]], since: float, devices: Collection[str] | None
) -> tuple[list[float], int]:
    """Each device's gaps between its constellation leaving and registering again after
    ``since``, and how many registrations came while one was still live (overlaps)."""
    live: dict[str, bool] = {}
    left: dict[str, float] = {}
    gaps: list[float] = []
    overlaps = 0
    wanted = set(devices) if devices is not None else None
    for stamp, kind, device in events:
        if kind == "up":
            if live.get(device):
                overlaps += 1
            live[device] = True
            if device in left and (wanted is None or device in wanted):
                gaps.append(stamp - left.pop(device))
        else:
            live[device] = False
            if stamp >= since:
                left[device] = stamp
    return gaps, overlaps


def _server_lines(rig: Rig, since: float, text: str) -> int:
    """Lines of the agent servers' logs containing ``text``, logged at ``since`` or later."""
    count = 0
    for path in rig.server_log_paths():
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if text in line and _stamp(line) >= since:
                count += 1
    return count


def _stamp(line: str) -> float:
    """The wall time a log line starts with (0.0 if it starts with none)."""
    try:
        stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return 0.0
    return stamp + int(line[20:23]) / 1000 if line[20:23].isdigit() else stamp


def _distribution(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "count": len(values),
        "min": min(values),
        "p50": percentile(list(values), 50),
        "p90": percentile(list(values), 90),
        "p99": percentile(list(values), 99),
        "max": max(values),
    }


async def _owners(url: str) -> dict[str, str | None]:
    from stellate.adapters.store_redis import open_redis_store
    from stellate.store.report import fleet_report

    async with open_redis_store(url) as store:
        report = fleet_report(await store.view())
    return {device.device_id: device.owner for device in report.devices}


def measure(n: int, *, steady_window: float = 30.0, renewal_rounds: int = 10) -> dict[str, Any]:
    """The whole scenario over ``n`` devices; a dict of figures (see the module docstring)."""
    result: dict[str, Any] = {"n": n, "lease": LEASE}
    with RedisServer() as redis:
        with Rig(n, tag="scale-out", verbose_servers=True, stagger=True) as rig:
            print(f"[scale-out] {n:,} agents registered in {rig.agent_registration_s:.1f} s")
            result["agent_registration_s"] = rig.agent_registration_s
            devices = _config(rig, rig.log_dir / "shared.yaml", redis.url)
            managers = Managers(rig, rig.log_dir / "shared.yaml")
            try:
                _scenario(rig, redis, managers, devices, result, steady_window)
            finally:
                result["manager_cpu_s"] = managers.cpu()
                managers.close()  # SIGTERM (each hands its devices over), SIGKILL after 30 s
        # Alone on the machine's share of this run: servers, agents and managers are gone.
        result["renewal"] = trio.run(_renewal_cost, redis.url, devices, renewal_rounds)
    return result


def _all_idle(
    managers: Managers, registrations: Registrations, n: int, names: Collection[str]
) -> Callable[[], bool]:
    """Every device registered at its agent server (the logs), then IDLE by the managers."""

    def done() -> bool:
        registrations.poll()
        if len(registrations.live) < n:
            return False
        counts = managers.counts(names)
        return sum(c["idle"] for c in counts.values()) == n

    return done


def _failed(managers: Managers, names: Collection[str]) -> int:
    return sum(c["failed"] for c in managers.counts(names).values())


def _scenario(
    rig: Rig,
    redis: RedisServer,
    managers: Managers,
    devices: list[str],
    result: dict[str, Any],
    steady_window: float,
) -> None:
    n = len(devices)
    registrations = Registrations(rig)
    three = ["m1", "m2", "m3"]
    began = time.monotonic()
    for name in three:
        managers.start(name)
    result["bring_up_s"] = _wait(
        "bring-up", _all_idle(managers, registrations, n, three), max(300.0, n / 20)
    )
    result["bring_up_failed"] = _failed(managers, three)
    result["bring_up_per_manager"] = {k: v["idle"] for k, v in managers.counts(three).items()}
    print(f"[scale-out] all IDLE in {result['bring_up_s']} s ({time.monotonic() - began:.0f})")

    # Steady state: renewal rounds only (no transitions: no snapshot writes).
    time.sleep(LEASE)  # let the last snapshot writes of the bring-up finish
    cpu0, calls0, mcpu0, t0 = redis.cpu(), redis.script_calls(), managers.cpu(), time.monotonic()
    commands0 = redis.commands()
    time.sleep(steady_window)
    cpu1, calls1, mcpu1, t1 = redis.cpu(), redis.script_calls(), managers.cpu(), time.monotonic()
    commands1 = redis.commands()
    rounds = (t1 - t0) / (LEASE / 3) * len(three)  # renewal rounds of all managers
    memory = redis.memory()
    result["steady"] = {
        "redis_used_memory_bytes": memory,
        "redis_bytes_per_device": memory / n,
        "window_s": t1 - t0,
        "redis_cpu_s": cpu1 - cpu0,
        "redis_commands_per_s": (commands1 - commands0) / (t1 - t0),
        "script_calls": calls1 - calls0,
        "rounds": rounds,
        "redis_cpu_us_per_device_round": (cpu1 - cpu0) * 1e6 / rounds / (n / len(three)),
        "script_calls_per_round": (calls1 - calls0) / rounds,
        "manager_cpu_s": {k: mcpu1[k] - mcpu0[k] for k in three},
    }

    # kill -9 one of three.
    owners = trio.run(_owners, redis.url)
    victims = {d for d, owner in owners.items() if owner == "m1"}
    killed_at = time.time()
    managers.kill("m1")
    survivors = ["m2", "m3"]
    result["failover_s"] = _wait(
        "failover", _all_idle(managers, registrations, n, survivors), LEASE + 120.0
    )
    result["failover_failed"] = _failed(managers, survivors)
    gaps, overlaps = _off_air(registrations.ordered(), killed_at - 1.0, victims)
    result["failover_off_air"] = _distribution(gaps)
    result["failover_devices"] = len(victims)
    result["failover_overlaps"] = overlaps
    result["failover_refused"] = _server_lines(rig, killed_at, _REFUSED)
    result["failover_replaced"] = _server_lines(rig, killed_at, _REPLACED)
    print(f"[scale-out] failover: all IDLE in {result['failover_s']} s")

    # A 4th manager joins.
    joined_at = time.time()
    managers.start("m4")
    four = ["m2", "m3", "m4"]

    def joiner_has_its_share() -> bool:
        # Only the joiner gains devices: those registered since it started are its own.
        registrations.poll()
        if registrations.registered_since(joined_at) < JOIN_SHARE * n:
            return False
        return managers.counts(["m4"]).get("m4", Counter())["idle"] >= JOIN_SHARE * n

    result["join_share_s"] = _wait("join share", joiner_has_its_share, JOIN_WITHIN + 60.0)
    result["join_settled_s"] = _wait(
        "join settled", _all_idle(managers, registrations, n, four), 300.0
    )
    result["join_failed"] = _failed(managers, four)
    result["join_per_manager"] = {k: v["idle"] for k, v in managers.counts(four).items()}
    gaps, overlaps = _off_air(registrations.ordered(), joined_at, None)
    result["join_off_air"] = _distribution(gaps)
    result["join_overlaps"] = overlaps
    result["join_refused"] = _server_lines(rig, joined_at, _REFUSED)
    result["join_replaced"] = _server_lines(rig, joined_at, _REPLACED)
    print(f"[scale-out] join: 20 % in {result['join_share_s']} s")


async def _renewal_cost(url: str, devices: list[str], rounds: int) -> dict[str, Any]:
    """3 managers' ownership loops sharing the fleet's device ids through the real Redis, in
    this process (nothing else runs in it): the CPU of one manager's round, and its store calls
    (each one pipelined round trip) per round."""
    from stellate.adapters.store_redis import open_redis_store
    from stellate.manager.ownership import keep_ownership
    from stellate.store.keeper import Change, OwnershipKeeper
    from stellate.store.ownership import LeasePolicy, RateLimit

    policy = LeasePolicy(LEASE)
    fast = RateLimit(1e9, 1e9)  # the split settles at once; the rate is not what is measured
    calls: list[Counter[str]] = [Counter(), Counter(), Counter()]

    async def nothing(change: Change) -> None:
        pass

    async with open_redis_store(url, prefix="bench-renewal") as store:
        keepers = [
            OwnershipKeeper(f"r{i}", devices, policy, claims=fast, handoffs=fast) for i in range(3)
        ]
        async with trio.open_nursery() as nursery:
            for keeper, counter in zip(keepers, calls, strict=True):
                nursery.start_soon(keep_ownership, _Counting(store, counter), keeper, nothing)
            await trio.sleep(policy.renew_every * 3)  # joined, split, settled
            one = keepers[0]
            held = len(one.leases())
            mine = sum(len(one.units[u]) for u in one.acting_units(trio.current_time()))
            for counter in calls:
                counter.clear()
            cpu0, t0 = time.process_time(), time.monotonic()
            await trio.sleep(policy.renew_every * rounds)
            cpu1, t1 = time.process_time(), time.monotonic()
            nursery.cancel_scope.cancel()
    made = sum(counter["renew"] for counter in calls)
    per_round = (cpu1 - cpu0) / max(1, made)
    return {
        "devices_of_one_manager": mine,
        "units_of_one_manager": held,
        "rounds": made,
        "cpu_ms_per_round": per_round * 1e3,
        "cpu_us_per_device_round": per_round * 1e6 / max(1, mine),
        "store_calls_per_round": sum(calls[0].values()) / max(1, calls[0]["renew"]),
        "store_round_trips_per_device_round": sum(calls[0].values())
        / max(1, calls[0]["renew"])
        / max(1, mine),
        "calls": dict(calls[0]),
        "wall_s": t1 - t0,
    }


class _Counting:
    """A store that counts the calls made through it (each one pipelined round trip)."""

    def __init__(self, store: Any, calls: Counter[str]) -> None:
        self._store = store
        self._calls = calls

    @property
    def name(self) -> str:
        return str(self._store.name)

    def __getattr__(self, method: str) -> Any:
        inner = getattr(self._store, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls[method] += 1
            return await inner(*args, **kwargs)

        return call


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _dist(d: Mapping[str, Any]) -> str:
    if not d.get("count"):
        return "none measured"
    return (
        f"min {d.get('min', float('nan')):.2f} s, p50 {d['p50']:.2f} s, "
        f"p90 {d['p90']:.2f} s, p99 {d['p99']:.2f} s, "
        f"max {d['max']:.2f} s ({d['count']:,} devices)"
    )


def rows(r: dict[str, Any] | None) -> list[Row]:
    """The scale-out targets and details (``make bench``); each row's ``value`` in SI units
    (seconds, or seconds of CPU per device per round)."""
    if r is None:
        return [
            Row("target", "scale-out (3 managers, one store)", "not measured: no run", "", None)
        ]
    n = r["n"]
    steady, renewal = r.get("steady", {}), r.get("renewal", {})
    failover_s, join_s = r.get("failover_s"), r.get("join_share_s")
    join_off = r.get("join_off_air", {})
    cpu = renewal.get("cpu_us_per_device_round")
    redis_cpu = steady.get("redis_cpu_us_per_device_round")
    return [
        Row(
            "target",
            f"scale-out: {n:,} devices over 3 managers, start → all IDLE",
            f"{_s(r.get('bring_up_s'))}, {r.get('bring_up_failed', '?')} FAILED",
            "all IDLE, 0 FAILED",
            r.get("bring_up_s") is not None and r.get("bring_up_failed") == 0,
            r.get("bring_up_s"),
            f"per manager {r.get('bring_up_per_manager')}; agents registered in "
            f"{r.get('agent_registration_s', 0):.0f} s before the managers started",
        ),
        Row(
            "target",
            "  kill -9 one of 3: its devices IDLE under the survivors",
            f"{_s(failover_s)} ({r.get('failover_devices', 0):,} devices), "
            f"{r.get('failover_failed', '?')} FAILED",
            f"≤ lease + 15 s = {LEASE + TAKEOVER_SLACK:g} s, 0 FAILED",
            failover_s is not None
            and failover_s <= LEASE + TAKEOVER_SLACK
            and r.get("failover_failed") == 0,
            failover_s,
            f"off the air: {_dist(r.get('failover_off_air', {}))}; second registrations "
            f"refused by the agent servers: {r.get('failover_refused')}, stale ones replaced: "
            f"{r.get('failover_replaced')}",
        ),
        Row(
            "target",
            "  a 4th manager joins: owns ≥ 20 % of the fleet",
            f"{_s(join_s)}, {r.get('join_failed', '?')} FAILED",
            f"≤ {JOIN_WITHIN:g} s, 0 FAILED",
            join_s is not None and join_s <= JOIN_WITHIN and r.get("join_failed") == 0,
            join_s,
            f"all IDLE again {_s(r.get('join_settled_s'))} after that; per manager "
            f"{r.get('join_per_manager')}; second registrations refused: "
            f"{r.get('join_refused')}, stale ones replaced: {r.get('join_replaced')}",
        ),
        Row(
            "target",
            "  each handed-over device off the air",
            _dist(join_off),
            f"≤ {OFF_AIR_LIMIT:g} s",
            bool(join_off.get("count")) and join_off["max"] <= OFF_AIR_LIMIT,
            join_off.get("max"),
            "from its constellation leaving its agent server (old owner) to registering there "
            "again (new owner), from the servers' logs",
        ),
        Row(
            "target",
            "  manager CPU per device per renewal round",
            "not measured"
            if cpu is None
            else f"{cpu:.2f} µs ({renewal['cpu_ms_per_round']:.2f} ms per round)",
            f"≤ {CPU_PER_DEVICE_TARGET_US:g} µs",
            cpu is not None and cpu <= CPU_PER_DEVICE_TARGET_US,
            None if cpu is None else cpu * 1e-6,
            f"{renewal.get('devices_of_one_manager', 0):,} devices in "
            f"{renewal.get('units_of_one_manager', 0)} slots; "
            f"{renewal.get('store_calls_per_round', float('nan')):.2f} store round trips per "
            f"round ({renewal.get('store_round_trips_per_device_round', float('nan')):.2g} per "
            "device)",
        ),
        Row(
            "detail",
            "  Redis CPU per device per renewal round (3 managers, steady)",
            "not measured" if redis_cpu is None else f"{redis_cpu:.3f} µs",
            value=None if redis_cpu is None else redis_cpu * 1e-6,
            note=f"{steady.get('script_calls_per_round', float('nan')):.2f} script calls per "
            f"manager round; {steady.get('redis_commands_per_s', float('nan')):.1f} commands/s; "
            f"Redis holds {steady.get('redis_used_memory_bytes', 0) / 2**20:.1f} MiB, "
            f"{steady.get('redis_bytes_per_device', 0):.0f} bytes per device; "
            f"{steady.get('window_s', 0):.0f} s window, Redis "
            f"{steady.get('redis_cpu_s', 0) * 1e3:.0f} ms CPU; managers' whole CPU "
            f"(heartbeats included) {steady.get('manager_cpu_s')}",
        ),
    ]
