"""The shipped example loads as docs/registration-flow.md describes it; typed values behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellate.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    DeviceConfig,
    InvalidFields,
    ManagerSettings,
    StellateConfig,
    load_config,
    loads_config,
)
from stellate.fsm import DeviceStatus, RetryPolicy, Timing

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / DEFAULT_CONFIG_PATH


def test_example_file_loads_with_three_devices() -> None:
    config = load_config(EXAMPLE)
    assert [d.device_id for d in config.devices] == ["windowsagent", "linuxagent", "macagent"]
    assert [d.os for d in config.devices] == ["windows", "linux", "macos"]
    assert {d.server_url for d in config.devices} == {"ws://localhost:5005/ws"}
    assert config.source == str(EXAMPLE)


def test_example_windowsagent_is_the_seeds() -> None:
    device = load_config(EXAMPLE).device("windowsagent")
    assert device == DeviceConfig(
        device_id="windowsagent",
        server_url="ws://localhost:5005/ws",
        os="windows",
        capabilities=("web_browsing", "office_applications", "file_management"),
        metadata={
            "location": "office_desktop",
            "performance": "high",
            "description": "Primary Windows workstation",
            "operation_engineer_email": "admin@example.com",
        },
        max_retries=5,
        auto_connect=True,
    )


def test_example_manager_settings_are_the_defaults() -> None:
    manager = load_config(EXAMPLE).manager
    assert manager == ManagerSettings()
    assert manager.task_name == "stellate"
    assert manager.timing.heartbeat_interval == 30.0
    assert manager.timing.miss_limit == 3
    assert manager.api_key is None


def test_timing_carries_the_timings() -> None:
    settings = loads_config(
        "manager: {reconnect_delay: 1.5, backoff_cap: 20, connect_timeout: 3,"
        " registration_timeout: 4, telemetry_timeout: 5}\n"
        "devices: [{device_id: d, server_url: ws://h}]\n"
    ).manager
    assert settings.timing == RetryPolicy(
        reconnect_delay=1.5,
        backoff_cap=20,
        connect_timeout=3,
        registration_timeout=4,
        telemetry_timeout=5,
    )


def test_to_profile_is_disconnected_with_no_attempts() -> None:
    device = load_config(EXAMPLE).devices[0]
    profile = device.to_profile()
    assert profile.status is DeviceStatus.DISCONNECTED
    assert profile.connection_attempts == 0
    assert profile.last_heartbeat is None
    assert (profile.device_id, profile.server_url, profile.os) == (
        "windowsagent",
        "ws://localhost:5005/ws",
        "windows",
    )
    assert profile.capabilities == device.capabilities
    assert profile.metadata == device.metadata
    assert profile.max_retries == 5


def test_to_profile_does_not_share_metadata() -> None:
    device = DeviceConfig(device_id="d", server_url="ws://h", metadata={"tags": ["a"]})
    profile = device.to_profile()
    profile.metadata["tags"].append("b")
    assert device.metadata == {"tags": ["a"]}


def test_null_max_retries_means_forever_and_reaches_the_profile() -> None:
    config = loads_config("devices:\n  - {device_id: d, server_url: 'wss://h:8443/ws?token=t'}\n")
    assert config.devices[0].max_retries == 5
    config = loads_config("devices:\n  - {device_id: d, server_url: ws://h, max_retries: null}\n")
    assert config.devices[0].to_profile().max_retries is None


def test_integers_are_accepted_for_seconds() -> None:
    config = loads_config(
        "manager: {heartbeat_interval: 12, backoff_cap: 90}\n"
        "devices: [{device_id: d, server_url: ws://h}]\n"
    )
    assert config.manager.timing.heartbeat_interval == 12.0
    assert isinstance(config.manager.timing.heartbeat_interval, float)


def test_yaml_anchors_and_merge_keys_share_defaults() -> None:
    text = (
        "devices:\n"
        "  - &first\n"
        "    device_id: a\n"
        "    server_url: ws://h/ws\n"
        "    max_retries: 2\n"
        "  - <<: *first\n"
        "    device_id: b\n"
        "    max_retries: 7\n"
    )
    config = loads_config(text)
    assert [(d.device_id, d.server_url, d.max_retries) for d in config.devices] == [
        ("a", "ws://h/ws", 2),
        ("b", "ws://h/ws", 7),
    ]


def test_api_key_never_shows() -> None:
    settings = ManagerSettings(api_key="s3cret-token")
    assert "s3cret" not in repr(settings)
    assert "api_key='***'" in repr(settings)
    with pytest.raises(ConfigError) as info:
        loads_config("manager: {api_key: 424242}\ndevices: [{device_id: d, server_url: ws://h}]\n")
    assert "424242" not in str(info.value)
    assert [str(p) for p in info.value.problems] == [
        "<string>:1: manager.api_key: expected a string or null, got integer"
    ]


def test_building_in_code_obeys_the_same_rules() -> None:
    with pytest.raises(InvalidFields) as info:
        DeviceConfig(device_id="a b", server_url="http://h", max_retries=0)
    assert [path for path, _ in info.value.violations] == [
        ("device_id",),
        ("server_url",),
        ("max_retries",),
    ]
    device = DeviceConfig(device_id="a", server_url="ws://h")
    with pytest.raises(InvalidFields, match="duplicate device_id 'a'"):
        StellateConfig(devices=(device, device))
    with pytest.raises(InvalidFields, match="no devices configured"):
        StellateConfig(devices=())
    with pytest.raises(InvalidFields, match="backoff_cap"):
        ManagerSettings(timing=Timing(reconnect_delay=10, backoff_cap=5))


def test_config_error_str_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        loads_config("devices: [{device_id: d, server_url: ws://h, max_retries: 0, os: ''}]\n")
    assert str(info.value).splitlines() == [
        "invalid configuration (2 problems)",
        "  <string>:1: devices[0].os: must not be empty (use null or leave it out)",
        "  <string>:1: devices[0].max_retries: must be >= 1 (null means retry forever), got 0",
    ]
