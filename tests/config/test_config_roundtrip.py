"""Any valid config, dumped to YAML by PyYAML, loads back to the same values."""

from __future__ import annotations

import string
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate import Timing
from stellate.config import DeviceConfig, ManagerSettings, StellateConfig, loads_config
from stellate.protocol.ids import skeleton

_WORD = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12)
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
_SECONDS = st.floats(min_value=0.001, max_value=3600, allow_nan=False) | st.integers(1, 3600)
#: 0 is meaningful for a window (no recovery window; no flap memory).
_WINDOWS = st.floats(min_value=0, max_value=3600, allow_nan=False) | st.integers(0, 3600)

_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=8,
)

_URL = st.builds(
    "{}://{}{}{}{}".format,
    st.sampled_from(["ws", "wss"]),
    st.sampled_from(["localhost", "127.0.0.1", "galaxy.example.com", "[::1]"]),
    st.sampled_from(["", ":5005", ":443"]),
    st.sampled_from(["", "/", "/ws", "/aip/v1"]),
    st.sampled_from(["", "?token=abc123"]),
)


@st.composite
def device_dicts(draw: st.DrawFn, device_id: str) -> dict[str, Any]:
    """A device as it would be written in YAML: required keys, any subset of the optional ones."""
    device: dict[str, Any] = {"device_id": device_id, "server_url": draw(_URL)}
    optional = {
        "os": st.none() | _WORD,
        "capabilities": st.lists(_WORD, unique=True, max_size=4),
        "metadata": st.dictionaries(_TEXT, _JSON, max_size=4),
        "max_retries": st.none() | st.integers(1, 1000),
        "auto_connect": st.booleans(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            device[key] = draw(strategy)
    return device


@st.composite
def manager_dicts(draw: st.DrawFn) -> dict[str, Any]:
    manager: dict[str, Any] = {}
    # Waits are > 0 (a wait of 0 would reconnect in a loop that never yields).
    delay = draw(st.none() | st.floats(0, 100, exclude_min=True, allow_nan=False))
    if delay is not None:
        manager["reconnect_delay"] = delay
    cap_floor = 5.0 if delay is None else delay
    if draw(st.booleans()):
        manager["backoff_cap"] = draw(st.floats(cap_floor, cap_floor + 600, allow_nan=False))
    elif delay is not None and delay > 60.0:
        manager["backoff_cap"] = delay  # the default cap (60) would be below the delay
    for key in (
        "heartbeat_interval",
        "connect_timeout",
        "registration_timeout",
        "telemetry_timeout",
        "rejoin_delay",
    ):
        if draw(st.booleans()):
            manager[key] = draw(_SECONDS)
    for window in ("recovery_window", "stability_window"):
        if draw(st.booleans()):
            manager[window] = draw(_WINDOWS)
    if draw(st.booleans()):
        manager["task_name"] = draw(_WORD)
    if draw(st.booleans()):
        manager["miss_limit"] = draw(st.integers(1, 20))
    if draw(st.booleans()):
        manager["api_key"] = draw(st.none() | _WORD)
    return manager


@st.composite
def config_dicts(draw: st.DrawFn) -> dict[str, Any]:
    # Distinct to a reader: look-alikes (one skeleton) are refused like duplicates.
    ids = draw(st.lists(_WORD, min_size=1, max_size=5, unique_by=skeleton))
    document: dict[str, Any] = {"devices": [draw(device_dicts(i)) for i in ids]}
    if draw(st.booleans()):
        document["manager"] = draw(manager_dicts())
    return document


def expected(document: dict[str, Any]) -> StellateConfig:
    """The config the document describes, built directly in code."""
    devices = []
    for raw in document["devices"]:
        fields = dict(raw)
        if "capabilities" in fields:
            fields["capabilities"] = tuple(fields["capabilities"])
        devices.append(DeviceConfig(**fields))
    written = dict(document.get("manager", {}))
    own = {key: written.pop(key) for key in ("task_name", "api_key") if key in written}
    manager = ManagerSettings(**own, timing=Timing(**written))
    return StellateConfig(devices=tuple(devices), manager=manager, source="gen.yaml")


@settings(max_examples=examples(150), deadline=None)
@given(config_dicts(), st.booleans())
def test_valid_config_round_trips_through_yaml(document: dict[str, Any], flow: bool) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, sort_keys=False, allow_unicode=True)
    assert loads_config(text, "gen.yaml") == expected(document)
