"""Golden frames captured from the reference (tests/frames), and how to compare ours."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FRAMES = Path(__file__).resolve().parent / "frames"

#: Keys whose values legitimately differ between the reference's frames and ours.
VOLATILE_KEYS = frozenset({"timestamp", "response_id", "request_id", "registration_time"})


def frame_text(name: str) -> str:
    return (FRAMES / f"{name}.json").read_text()


def frame(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(frame_text(name))
    return data


def stable(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the keys that carry time stamps or fresh ids."""
    return {k: v for k, v in data.items() if k not in VOLATILE_KEYS}


def assert_like(sent: str, golden: str, **overrides: Any) -> dict[str, Any]:
    """``sent`` has the golden frame's keys in its order and its values (ids/times aside)."""
    ours = json.loads(sent)
    theirs = {**frame(golden), **overrides}
    assert list(ours) == list(theirs)
    assert stable(ours) == stable(theirs)
    return dict(ours)


def client_frame(name: str, **overrides: Any) -> str:
    return json.dumps({**frame(name), **overrides})
