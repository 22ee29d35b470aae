"""Hypothesis strategies for hostile frames: what a broken or malicious peer may send.

Kinds: random JSON (any top-level type), valid-looking AIP frames with one key's value
replaced by a value of an arbitrary type, arbitrary text, huge strings, deep nesting, binary,
and well-formed frames in the wrong order (register twice, heartbeat before register, a
duplicate of a live client id, a device asking for device info, ...).

Two inputs are kept out of the general strategies because they are known bugs with their own
strict-xfail tests: nesting deeper than the interpreter's recursion limit (``DEEP_BEYOND``)
and JSON escapes of lone surrogates (``LONE_SURROGATE_FRAME``).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: Deep enough to blow CPython's json recursion guard (limit 1000) from any call depth.
DEEP_BEYOND = 100_000
#: Stays well below the recursion limit whatever the caller's stack depth.
DEEP_SAFE = 300
#: A valid JSON text whose decoded string holds a lone surrogate (not encodable as UTF-8).
LONE_SURROGATE_FRAME = '{"type": "\\ud800", "status": "ok"}'

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)

json_values: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

CLIENT_KEYS = (
    "type",
    "status",
    "client_type",
    "client_id",
    "target_id",
    "session_id",
    "task_name",
    "request",
    "action_results",
    "timestamp",
    "request_id",
    "prev_response_id",
    "error",
    "metadata",
)


def templates(
    own_id: str, good_devices: list[str], good_constellations: list[str]
) -> list[dict[str, Any]]:
    """Well-formed client frames, any of which is "wrong" in some order or phase."""
    target = good_devices[0]
    return [
        {"type": "register", "status": "ok", "client_type": "device", "client_id": own_id,
         "metadata": {"system_info": {"platform": "evil"}, "platform": "evil"}},
        {"type": "register", "status": "ok", "client_type": "constellation",
         "client_id": f"{own_id}@{target}", "target_id": target},
        {"type": "register", "status": "ok", "client_type": "constellation",
         "client_id": f"{own_id}@nobody", "target_id": "nobody"},
        {"type": "register", "status": "ok", "client_type": "device", "client_id": target},
        {"type": "register", "status": "ok", "client_type": "constellation",
         "client_id": good_constellations[0], "target_id": target},
        {"type": "heartbeat", "status": "ok"},
        {"type": "heartbeat", "status": "ok", "client_id": target},
        {"type": "heartbeat", "status": "ok", "client_type": "constellation"},
        {"type": "device_info_request", "status": "ok", "client_type": "constellation",
         "target_id": target, "request_id": "r-1"},
        {"type": "device_info_request", "status": "ok", "target_id": "nobody", "request_id": "r-2"},
        {"type": "device_info_response", "status": "ok", "request_id": "r-3",
         "metadata": {"system_info": {}}},
        {"type": "error", "status": "error", "error": "hostile says hi"},
        {"type": "task", "status": "continue", "request": "rm -rf /"},
        {"type": "task_end", "status": "completed"},
        {"type": "command_results", "status": "ok", "action_results": [{"x": 1}]},
    ]  # fmt: skip


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@st.composite
def hostile_frames(
    draw: st.DrawFn,
    own_id: str,
    good_devices: list[str],
    good_constellations: list[str],
    *,
    max_huge: int = 1_200_000,
) -> str | bytes:
    """One hostile frame for a socket whose own (would-be) client id is ``own_id``."""
    base = templates(own_id, good_devices, good_constellations)
    kind = draw(
        st.sampled_from(
            ["json", "wrong_type", "text", "huge", "deep", "binary", "valid", "valid", "valid"]
        )
    )
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "wrong_type":
        frame = dict(draw(st.sampled_from(base)))
        frame[draw(st.sampled_from(CLIENT_KEYS))] = draw(json_values)
        return json.dumps(frame)
    if kind == "text":
        return draw(st.text(max_size=64))
    if kind == "huge":
        size = draw(st.integers(min_value=50_000, max_value=max_huge))
        where = draw(st.sampled_from(["client_id", "metadata", "bare", "error"]))
        if where == "bare":
            return "x" * size
        frame = dict(draw(st.sampled_from(base)))
        frame[where] = {"blob": "x" * size} if where == "metadata" else "x" * size
        return json.dumps(frame)
    if kind == "deep":
        depth = draw(st.integers(min_value=2, max_value=DEEP_SAFE))
        nested = _nested(depth, draw(st.sampled_from(["array", "object"])))
        if draw(st.booleans()):
            return nested
        return json.dumps(draw(st.sampled_from(base)))[:-1] + f', "metadata": {nested}}}'
    if kind == "binary":
        return draw(st.binary(max_size=64))
    return json.dumps(draw(st.sampled_from(base)))
