"""Shared helpers for protocol tests: the golden frames captured from the reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FRAMES = Path(__file__).resolve().parent.parent / "frames"

#: Keys whose values legitimately differ between the reference's frames and ours.
VOLATILE_KEYS = frozenset({"timestamp", "response_id", "request_id", "registration_time"})


def frame_text(name: str) -> str:
    return (FRAMES / f"{name}.json").read_text()


def frame(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(frame_text(name))
    return data
