"""Run a manager-side job (``benchmarks.worker``) in its own process and collect its result."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .procs import PYTHON, Child, RigError

ROOT = Path(__file__).resolve().parent.parent
#: What starts a line a worker writes for its driver (any other line is its own output).
EVENT = "@@ "


def emit(payload: dict[str, Any]) -> None:
    """Say ``payload`` to the driver (a worker's progress event, or its result)."""
    sys.stdout.write(EVENT + json.dumps(payload) + "\n")
    sys.stdout.flush()


def parse_event(line: str) -> dict[str, Any]:
    """The payload of a line :func:`emit` wrote."""
    payload: dict[str, Any] = json.loads(line[len(EVENT) :])
    return payload


def run_worker(
    job: dict[str, Any],
    log_dir: Path,
    *,
    timeout: float,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Start the worker, relay its progress events to ``on_event``, return its result."""
    child = Child(
        f"worker-{job['kind']}",
        [PYTHON, "-m", "benchmarks.worker", json.dumps(job)],
        log_dir,
        cwd=ROOT,
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RigError(
                    f"worker {job['kind']}: no result within {timeout:g} s{child.tail()}"
                )
            message = parse_event(child.wait_line(EVENT, left))
            if "result" in message:
                result: dict[str, Any] = message["result"]
                return result
            if on_event is not None:
                on_event(message)
    finally:
        child.stop(grace=10.0)
