"""Every legal path, end to end: the real manager (runner + protocol + machine) is forced down
each path the machine enumerates, by a fault schedule on the fake agent server.

``schedule_for_path`` turns a path into faults (hypothesis picks among the faults that force
each attempt: refused or 403, unanswered or late, garbage or dropped, ...); the device's actual
path, read from the manager's event stream, must equal the enumerated one, and the final
profile must be the configured one with exactly the telemetry it was answered merged in.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.fsm.paths import paths
from stellate.testing.fault_strategies import fleet_timings, schedule_for_path
from stellate.testing.faults import expected_path
from stellate.testing.fleet import FleetDevice, FleetTiming, run_fleet
from stellate.testing.strategies import legal_paths

#: (max_retries, losses after IDLE): 501 paths in all, each run as one device of one fleet.
EXHAUSTIVE = [(1, 0), (1, 1), (1, 2), (2, 0), (3, 0)]


def _fmt(path: object) -> str:
    return " → ".join(f"{s.trigger}:{s.dest}" for s in path)  # type: ignore[attr-defined]


@settings(max_examples=1, phases=[Phase.generate], database=None)
@given(data=st.data())
def test_every_enumerated_path_is_taken_by_the_real_manager(data: st.DataObject) -> None:
    timing = FleetTiming()
    devices: list[FleetDevice] = []
    wanted = {}
    for max_retries, losses in EXHAUSTIVE:
        for path in paths(max_retries, losses):
            device_id = f"r{max_retries}l{losses}-{len(wanted)}"
            schedule = data.draw(schedule_for_path(path, timing.policy))
            devices.append(FleetDevice(device_id, schedule, max_retries=max_retries))
            wanted[device_id] = path
    result = run_fleet(devices, timing=timing, seed=1)
    wrong = [
        f"{result.devices[d].device!r}\n  enumerated {_fmt(p)}"
        f"\n  actual     {_fmt(result.paths[d])}"
        for d, p in wanted.items()
        if result.paths[d] != p
    ]
    assert not wrong, f"{len(wrong)} path(s) not taken:\n" + "\n".join(wrong[:5])
    result.check()
    assert {s for p in result.paths.values() for s in p} >= {s for p in wanted.values() for s in p}


@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), timing=fleet_timings())
def test_a_drawn_legal_path_is_taken_exactly(data: st.DataObject, timing: FleetTiming) -> None:
    """Hypothesis draws max_retries, the path, the timing, system_info and metadata; a failure
    shrinks to the shortest path and the simplest faults that still go wrong."""
    max_retries = data.draw(st.integers(min_value=1, max_value=5), label="max_retries")
    path = data.draw(legal_paths(max_retries, losses=3), label="path")
    schedule = data.draw(schedule_for_path(path, timing.policy), label="schedule")
    device = FleetDevice(
        "dev",
        schedule,
        max_retries=max_retries,
        os=data.draw(st.sampled_from([None, "windows", "linux"]), label="os"),
        capabilities=data.draw(st.lists(st.sampled_from(["gui", "cli", "office"]), unique=True)),
        metadata=data.draw(st.dictionaries(st.sampled_from(["location", "tier"]), st.text())),
    )
    # The oracle agrees with the machine's enumeration before anything runs...
    assert expected_path(schedule, max_retries=max_retries, policy=timing.policy) == path
    result = run_fleet([device], timing=timing, seed=0)
    # ... and the real manager takes exactly that path.
    assert _fmt(result.paths["dev"]) == _fmt(path)
    result.check()
