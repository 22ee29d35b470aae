"""Every legal path, with every fault that can force each of its steps, through the real manager.

``paths(max_retries, losses)`` enumerates the legal paths from the transition table. Each path
is replayed once per *variant* (``stellate.testing.forcing``): in variant ``j`` the ``i``-th
attempt of a kind meets alternative ``(i + j) mod n`` of that kind, so every alternative of
every attempt kind (refused or 403; no answer or a late one; a dropped socket or a transient
rejection while recovering; telemetry answered, not found, unanswered, garbage or
late; staying, falling silent, dropping with or without notice after IDLE) appears at every
attempt of every path. The device's actual path, read from the manager's event stream, must be
the enumerated one, and ``FleetResult`` checks the rest (profile, backoffs, lease, AIP, leaks).

* ``max_retries`` 1–3 with 0–2 losses: exhaustive where the count stays in the thousands
  ((1, 0–2), (2, 0–1), (3, 0)); for (2, 2), (3, 1) and (3, 2) (12,027 / 30,015 / 2,581,635
  paths) a covering design over runs (``covering_paths``): every first run and every run after
  a loss at every position.
* ``max_retries`` 4, 5 and ``None``: sampled by hypothesis (counts printed).

The run prints ``paths: N replayed, M fault variants, every alternative used: yes`` and fails
if an alternative was never applied by the fake server.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples, random_profile

from stellate import Timing
from stellate.fsm.paths import Path, paths
from stellate.testing.fault_strategies import fleet_timings, schedule_for_path
from stellate.testing.faults import AttemptFault, expected_path
from stellate.testing.fleet import HARNESS_TIMING, FleetDevice, run_fleet
from stellate.testing.forcing import (
    ALTERNATIVES,
    alternatives_used,
    attempt_kinds,
    covering_paths,
    schedules_for_path,
)
from stellate.testing.strategies import legal_paths

#: (max_retries, losses after IDLE) enumerated in full, and those covered by design.
EXHAUSTIVE = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0)]
COVERED = [(2, 2), (3, 1), (3, 2)]
#: Sets whose every path meets every variant in the default profile; the others meet one
#: variant per path there (rotating, so every alternative still appears at every attempt
#: kind), and every variant under the random profiles (``make test-slice``, ``test-thorough``).
EVERY_VARIANT_BY_DEFAULT = {(1, 0), (1, 1), (1, 2), (2, 0)}
#: Devices per fleet run (a fleet this size settles in a few seconds).
CHUNK = 500

#: Configured profiles the replayed devices rotate through, so merges have something to keep.
CONFIGS: list[tuple[str | None, tuple[str, ...], dict[str, str]]] = [
    (None, (), {}),
    ("windows", ("web_browsing", "gui"), {"location": "office"}),
    ("linux", ("cli", "office"), {"tier": "gold", "location": "lab"}),
]


def _fmt(path: Iterable[object]) -> str:
    return " → ".join(f"{s.trigger}:{s.dest}" for s in path)  # type: ignore[attr-defined]


def _jobs(timing: Timing) -> list[tuple[int, FleetDevice, Path]]:
    """``(max_retries, device, path)`` for each (path, variant) replayed."""
    flavours = itertools.count()
    jobs: list[tuple[int, FleetDevice, Path]] = []
    sets = [(r, n, paths(r, n)) for r, n in EXHAUSTIVE]
    sets += [(r, n, covering_paths(r, n)) for r, n in COVERED]
    seen: set[tuple[int, Path]] = set()  # paths(r, n) holds the paths with fewer losses too
    for max_retries, losses, found in sets:
        every = random_profile() or (max_retries, losses) in EVERY_VARIANT_BY_DEFAULT
        for number, path in enumerate(found):
            if (max_retries, path) in seen:
                continue
            seen.add((max_retries, path))
            schedules = schedules_for_path(path, timing, flavours=flavours)
            chosen = range(len(schedules)) if every else [number % len(schedules)]
            for variant in chosen:
                os, capabilities, metadata = CONFIGS[len(jobs) % len(CONFIGS)]
                device = FleetDevice(
                    f"r{max_retries}l{losses}-p{number}-v{variant}",
                    schedules[variant],
                    max_retries=max_retries,
                    os=os,
                    capabilities=capabilities,
                    metadata=metadata,
                )
                jobs.append((max_retries, device, path))
    return jobs


def test_every_path_with_every_fault_alternative(capsys: pytest.CaptureFixture[str]) -> None:
    timing = HARNESS_TIMING
    policy = timing
    jobs = _jobs(timing)
    # The oracle (written from the documented rules) agrees with the enumeration first.
    disagree = [
        f"{device!r}: the enumeration says {_fmt(path)}"
        for _r, device, path in jobs
        if expected_path(device.schedule, max_retries=device.max_retries, policy=policy) != path
    ]
    assert not disagree, "\n".join(disagree[:5])
    wrong: list[str] = []
    used: set[tuple[str, str]] = set()
    for start in range(0, len(jobs), CHUNK):
        chunk = jobs[start : start + CHUNK]
        result = run_fleet([device for _r, device, _p in chunk], timing=timing, seed=start)
        broken = result.device_problems()
        for _r, device, path in chunk:
            outcome = result.devices[device.device_id]
            used |= alternatives_used(path, [a.fault for a in outcome.attempts], policy)
            if outcome.path != path:
                wrong.append(
                    f"{device!r}\n  enumerated {_fmt(path)}\n  actual     {_fmt(outcome.path)}"
                )
            wrong += broken.get(device.device_id, [])
        wrong += [p for p in result.problems() if not any(p in b for b in broken.values())]
    kinds = {part for _r, _d, path in jobs for kind in attempt_kinds(path) for part in kind}
    wanted = {(kind, name) for kind in kinds for name in ALTERNATIVES[kind]}
    unused = sorted(wanted - used)
    with capsys.disabled():
        print(
            f"\npaths: {len({(r, path) for r, _d, path in jobs})} replayed, {len(jobs)} fault "
            f"variants, every alternative used: {'no' if unused else 'yes'} "
            f"({len(used & wanted)} (attempt kind, alternative) pairs over {len(kinds)} kinds)"
        )
    assert not wrong, f"{len(wrong)} problem(s):\n" + "\n".join(wrong[:8])
    assert kinds == set(ALTERNATIVES), sorted(set(ALTERNATIVES) - kinds)
    assert not unused, f"alternatives never applied: {unused}"


def test_every_alternative_forces_its_attempt_kind() -> None:
    """The catalogue itself: each alternative, alone in a one-attempt schedule (or after an
    attempt that makes the device recover), yields the attempt kind it is listed under."""
    timing = HARNESS_TIMING
    for path in paths(2, 1):
        for schedule in schedules_for_path(path, timing):
            got = expected_path(schedule, max_retries=2, policy=timing)
            assert attempt_kinds(got) == attempt_kinds(path), (schedule, _fmt(path))


def _sampled_device(
    data: st.DataObject, timing: Timing, max_retries: int | None
) -> tuple[FleetDevice, Path]:
    losses = data.draw(st.integers(min_value=0, max_value=2), label="losses")
    path = data.draw(legal_paths(max_retries, losses=losses), label="path")
    schedule: list[AttemptFault] = data.draw(schedule_for_path(path, timing), label="schedule")
    os, capabilities, metadata = data.draw(st.sampled_from(CONFIGS), label="config")
    device = FleetDevice(
        "dev",
        schedule,
        max_retries=max_retries,
        os=os,
        capabilities=capabilities,
        metadata=metadata,
    )
    return device, path


def test_sampled_paths_for_larger_retry_limits(capsys: pytest.CaptureFixture[str]) -> None:
    """max_retries 4, 5 and None (unbounded: each run cut at 8 attempts), 0–2 losses, any
    timing: hypothesis draws the path and its faults; a failure shrinks to the shortest path
    and the simplest faults that still go wrong."""
    drawn: Counter[object] = Counter()

    def sample(max_retries: int | None) -> None:
        # Each limit gets its own examples: drawn from one sampled_from, which of the three
        # came up in 40 examples moved with any constant added anywhere in the code (hypothesis
        # seeds its draws with the code's literals), and a change of the ownership rules' made
        # max_retries=None never come up.
        @settings(max_examples=examples(14), suppress_health_check=[HealthCheck.too_slow])
        @given(data=st.data(), timing=fleet_timings())
        def check(data: st.DataObject, timing: Timing) -> None:
            # The enumerated paths are those without a recovery window (reconnects after a loss
            # spend max_retries); windows are the random fleets' to draw.
            timing = attrs.evolve(timing, recovery_window=0.0)
            device, path = _sampled_device(data, timing, max_retries)
            drawn[device.max_retries] += 1
            drawn["with a loss" if any(s.source == "idle" for s in path) else path[-1].dest] += 1
            # The oracle agrees with the machine's enumeration before anything runs...
            assert (
                expected_path(device.schedule, max_retries=device.max_retries, policy=timing)
                == path
            )
            result = run_fleet([device], timing=timing, seed=0)
            # ... and the real manager takes exactly that path.
            assert _fmt(result.paths["dev"]) == _fmt(path)
            result.check()

        check()

    for max_retries in (4, 5, None):
        sample(max_retries)
    with capsys.disabled():
        print(
            "\nsampled paths: "
            + ", ".join(f"max_retries={r}: {drawn[r]}" for r in (4, 5, None))
            + "; "
            + ", ".join(f"{e}: {drawn[e]}" for e in ("idle", "failed", "with a loss"))
        )
    assert all(drawn[r] for r in (4, 5, None)), drawn
    assert all(drawn[e] for e in ("idle", "failed", "with a loss")), drawn
