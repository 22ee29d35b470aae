"""One door per setting: every timing setting comes in as one ``stellate.Timing``.

The manager, the agent, the server's policy, the config, the command's flags, the local
constellation and the harness each take a ``Timing`` whole. The last test reads the package's
source and fails on a new function or class that takes a timing setting as a parameter or field
of its own (a second door), outside the places listed with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attrs
import pytest
import trio

from stellate import Timing
from stellate.agent import AGENT_TIMING, DeviceAgent
from stellate.cli import agent as agent_command
from stellate.cli import build_parser
from stellate.cli import serve as serve_command
from stellate.cli.timing_flags import timing_from_flags
from stellate.config import loads_config
from stellate.local import start_local_agents
from stellate.protocol import ServerPolicy
from stellate.protocol.lease import HeartbeatLease
from stellate.testing import HARNESS_TIMING, FleetDevice, FleetTiming, run_fleet
from stellate.timing import DEFAULT_TIMING

PACKAGE = Path(__file__).resolve().parents[2] / "stellate"
TIMING_FIELDS = frozenset(field.name for field in attrs.fields(Timing))


def test_the_agent_heartbeats_and_gives_up_by_its_timing() -> None:
    timing = AGENT_TIMING.evolve(heartbeat_interval=4.0, miss_limit=2)
    agent = DeviceAgent("ws://h:1/ws", "dev", timing=timing)
    assert agent.timing is timing
    assert DeviceAgent("ws://h:1/ws", "dev").timing is AGENT_TIMING
    with pytest.raises(TypeError):  # the keywords that sat beside the timing are gone
        DeviceAgent("ws://h:1/ws", "dev", heartbeat_interval=4.0)  # type: ignore[call-arg]


def test_the_lease_reads_the_timing_s_interval_and_lease() -> None:
    timing = Timing(heartbeat_interval=4.0, miss_limit=2)
    lease = HeartbeatLease(timing, now=100.0)
    assert lease.next_beat == 104.0
    lease.sent(104.0)
    assert lease.expires_at == 104.0 + timing.lease == 112.0


def test_the_server_policy_reads_its_lease_from_the_timing() -> None:
    policy = ServerPolicy(timing=Timing(heartbeat_interval=4.0, miss_limit=2))
    assert policy.timing.lease == 8.0
    assert policy.constellation_lease == 16.0  # twice the device lease, by default
    assert ServerPolicy().timing is DEFAULT_TIMING
    with pytest.raises(TypeError):
        ServerPolicy(heartbeat_interval=4.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("argv", "command", "base", "expected"),
    [
        (
            ["serve", "--heartbeat-interval", "5", "--miss-limit", "2"],
            serve_command,
            DEFAULT_TIMING,
            DEFAULT_TIMING.evolve(heartbeat_interval=5.0, miss_limit=2),
        ),
        (["serve"], serve_command, DEFAULT_TIMING, DEFAULT_TIMING),
        (
            ["serve", "--registration-timeout", "3.5"],
            serve_command,
            DEFAULT_TIMING,
            DEFAULT_TIMING.evolve(registration_timeout=3.5),
        ),
        (
            ["agent", "--server", "ws://h:1/ws", "--heartbeat-interval", "7"],
            agent_command,
            AGENT_TIMING,
            AGENT_TIMING.evolve(heartbeat_interval=7.0),
        ),
    ],
)
def test_timing_flags_are_timing_fields(
    argv: list[str], command: object, base: Timing, expected: Timing
) -> None:
    args = build_parser().parse_args(argv)
    flags = command.TIMING_FLAGS  # type: ignore[attr-defined]
    assert set(flags) <= TIMING_FIELDS
    assert timing_from_flags(args, base, flags) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--heartbeat-interval", "0"], "--heartbeat-interval: must be > 0, got 0.0"),
        (["serve", "--miss-limit", "0"], "--miss-limit: must be >= 1, got 0"),
        (["serve", "--registration-timeout", "nan"], "--registration-timeout: must be a finite"),
        (
            ["agent", "--server", "ws://h:1/ws", "--device-id", "d", "--heartbeat-interval", "-1"],
            "--heartbeat-interval: must be > 0, got -1.0",
        ),
    ],
)
def test_a_bad_timing_flag_is_a_usage_error_naming_it(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused as the flag is parsed, by its config key's rule: before anything starts."""
    with pytest.raises(SystemExit) as usage:
        build_parser().parse_args(argv)
    assert usage.value.code == 2
    assert message in capsys.readouterr().err


async def test_the_local_constellation_runs_on_the_config_s_timing() -> None:
    config = loads_config(
        "manager: {heartbeat_interval: 5, miss_limit: 2}\n"
        "devices: [{device_id: local1, server_url: 'ws://localhost:5005/ws'}]\n"
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            _local, server = await start_local_agents(nursery, config)
            # the server's device lease and constellation patience follow the config
            assert server.policy.timing is config.manager.timing
            assert server.policy.constellation_lease == 2 * 5.0 * 2
            await server.shutdown()
            nursery.cancel_scope.cancel()


def test_the_harness_takes_a_timing_and_still_runs_the_deprecated_fleet_timing() -> None:
    devices = [FleetDevice("d1")]
    timing = HARNESS_TIMING.evolve(heartbeat_interval=20.0)
    result = run_fleet(devices, timing=timing, seed=1)
    assert result.timing is timing and result.problems() == []
    with pytest.warns(DeprecationWarning, match="FleetTiming is deprecated"):
        old = FleetTiming(heartbeat_interval=20.0, task_name="office")
    assert old.policy == timing and old.manager_kwargs() == {
        "task_name": "office",
        "timing": timing,
    }
    again = run_fleet(devices, timing=old, seed=1)
    assert again.timing == timing and again.paths == result.paths


#: Where a parameter or field may carry a timing setting's name, and why.
ALLOWED = {
    "stellate/timing.py:Timing": "the definition: every setting, its default and its rule",
    "stellate/testing/fleet.py:FleetTiming": "deprecated alias of the harness's Timing",
    "stellate/manager/constellation.py:ConstellationDeviceManager.__init__": (
        "Galaxy's constructor (task_name, heartbeat_interval, reconnect_delay): deprecated door, "
        "turned into the Timing at once"
    ),
    "stellate/manager/constellation.py:_galaxy_timing": "that conversion",
    "stellate/adapters/ws_client.py:WebSocketConnector.__init__": (
        "the adapter's own handshake deadline: apps pass Timing.connect_timeout (or None when "
        "a state's deadline governs)"
    ),
    "stellate/manager/runner.py:DeviceRunner._attempt": "the CONNECTING state's deadline value",
    "stellate/testing/reference.py:backoff_bounds": "the oracle restates the rules from numbers",
    "stellate/testing/reference.py:backoff_waits": "the oracle restates the rules from numbers",
    "stellate/testing/reference.py:climbing_step": "the oracle restates the rules from numbers",
    "stellate/testing/reference.py:rejoin_bounds": "the oracle restates the rules from numbers",
    "stellate/testing/reference.py:lease_expiry": "the oracle restates the rules from numbers",
    "stellate/testing/strategies.py:_valid_policy": "builds a Timing from drawn numbers",
}


def _doors() -> dict[str, list[str]]:
    """``{"file:Qualified.name": [timing-named parameters or fields]}`` over the package."""
    found: dict[str, list[str]] = {}

    def visit(node: ast.AST, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                fields = [
                    s.target.id
                    for s in child.body
                    if isinstance(s, ast.AnnAssign)
                    and isinstance(s.target, ast.Name)
                    and s.target.id in TIMING_FIELDS
                ]
                if fields:
                    found[f"{path}:{name}"] = fields
                visit(child, path, f"{name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                a = child.args
                params = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                named = [p for p in params if p in TIMING_FIELDS]
                if named:
                    found[f"{path}:{prefix}{child.name}"] = named
                visit(child, path, f"{prefix}{child.name}.")

    for file in sorted(PACKAGE.rglob("*.py")):
        path = str(file.relative_to(PACKAGE.parent))
        visit(ast.parse(file.read_text(encoding="utf-8")), path, "")
    return found


def test_no_second_door_for_a_timing_setting() -> None:
    doors = _doors()
    assert "stellate/timing.py:Timing" in doors  # the walk sees what it is for
    assert sorted(set(doors) - set(ALLOWED)) == [], "take a Timing instead of these settings"
    assert sorted(set(ALLOWED) - set(doors)) == [], "stale entries in ALLOWED"
