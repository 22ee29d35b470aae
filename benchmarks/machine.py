"""5. The machine alone: models added per second, triggers per second (no I/O, no trio)."""

from __future__ import annotations

import gc
import time
from typing import Any

from stellate.fsm import AgentProfile, RetryPolicy, Trigger
from stellate.fsm.event_data import EventData, RegistrationAnswer, TelemetryAnswer
from stellate.fsm.lifecycle import LifecycleEngine

from .report import Row

#: One lap: the five phases, then a shutdown (6 triggers, every one a legal transition).
LAP: list[Trigger | EventData] = [
    Trigger.CONNECT,
    Trigger.CONNECTION_OPENED,
    Trigger.REGISTER_SENT,
    RegistrationAnswer(accepted=True),
    TelemetryAnswer({"platform": "linux", "supported_features": ["x"]}),
    Trigger.DISCONNECT,
]


def measure(n: int, laps: int = 2) -> dict[str, Any]:
    engine = LifecycleEngine()
    policy = RetryPolicy()
    profiles = [AgentProfile(f"m{i}", "ws://127.0.0.1:1/ws") for i in range(n)]
    block = max(1, n // 10)
    gc.collect()
    lifecycles = []
    blocks: list[float] = []
    t0 = time.perf_counter()
    started = t0
    for i, profile in enumerate(profiles, start=1):
        lifecycles.append(engine.create(profile, timing=policy, observer=_observer))
        if i % block == 0:
            now = time.perf_counter()
            blocks.append((now - started) / block)
            started = now
    create_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    triggers = 0
    for _ in range(laps):
        for lifecycle in lifecycles:
            for event in LAP:
                lifecycle.fire(event)
            triggers += len(LAP)
    fire_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for lifecycle in lifecycles:
        engine.release(lifecycle)
    release_s = time.perf_counter() - t0
    return {
        "n": n,
        "create_s": create_s,
        "models_per_s": n / create_s,
        "create_us_first_block": blocks[0] * 1e6,
        "create_us_last_block": blocks[-1] * 1e6,
        "triggers": triggers,
        "fire_s": fire_s,
        "triggers_per_s": triggers / fire_s,
        "releases_per_s": n / release_s,
    }


def _observer(record: object, lifecycle: object) -> None:
    """Stands in for the manager's observer (the machine builds a TransitionRecord for it)."""


def rows(result: dict[str, Any]) -> list[Row]:
    n = result["n"]
    return [
        Row(
            "machine",
            f"models added/s (to {n:,})",
            f"{result['models_per_s']:,.0f}/s",
            note=(
                f"create {result['create_us_first_block']:.0f} µs each in the first tenth, "
                f"{result['create_us_last_block']:.0f} µs in the last (flat = no linear scan); "
                f"release {result['releases_per_s']:,.0f}/s"
            ),
            value=result["models_per_s"],
        ),
        Row(
            "machine",
            "triggers/s",
            f"{result['triggers_per_s']:,.0f}/s",
            value=result["triggers_per_s"],
            note=f"{1e6 / result['triggers_per_s']:.1f} µs per trigger, observer attached",
        ),
    ]
