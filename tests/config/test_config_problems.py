"""Every kind of bad input ends in a ConfigError whose problems read FILE:LINE: field: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellate.config import ConfigError, Problem, load_config, loads_config

OK_DEVICE = "  - device_id: ok\n    server_url: ws://localhost:5005/ws\n"


def problems_in(text: str, source: str = "devices.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads_config(text, source)
    return [str(problem) for problem in info.value.problems]


def one_device(*lines: str) -> str:
    """A file with one device whose body is ``lines`` (line 2 is the first of them)."""
    body = "".join(f"    {line}\n" for line in lines)
    return "devices:\n  - " + body[4:]


# --- wrong types: nothing is coerced ---


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("max_retries: '5'", "devices[0].max_retries: expected an integer or null, got string '5'"),
        ("max_retries: 3.9", "devices[0].max_retries: expected an integer or null, got float 3.9"),
        (
            "max_retries: true",
            "devices[0].max_retries: expected an integer or null, got boolean true",
        ),
        (
            "auto_connect: 'false'",
            "devices[0].auto_connect: expected a boolean (true or false), got string 'false'",
        ),
        (
            "auto_connect: 1",
            "devices[0].auto_connect: expected a boolean (true or false), got integer 1",
        ),
        ("os: 10", "devices[0].os: expected a string or null, got integer 10"),
        (
            "capabilities: web_browsing",
            "devices[0].capabilities: expected a list, got string 'web_browsing'",
        ),
        ("metadata: [a, b]", "devices[0].metadata: expected a mapping, got a list"),
    ],
)
def test_wrong_types_are_refused(line: str, expected: str) -> None:
    text = one_device("device_id: d", "server_url: ws://h", line)
    assert problems_in(text) == [f"devices.yaml:4: {expected}"]


def test_wrong_type_inside_a_list_names_the_item() -> None:
    text = one_device("device_id: d", "server_url: ws://h", "capabilities:", "  - web", "  - 7")
    assert problems_in(text) == [
        "devices.yaml:6: devices[0].capabilities[1]: expected a string, got integer 7"
    ]


def test_bool_is_not_a_number_but_int_is() -> None:
    text = "manager:\n  heartbeat_interval: true\n  reconnect_delay: 2\ndevices:\n" + OK_DEVICE
    assert problems_in(text) == [
        "devices.yaml:2: manager.heartbeat_interval: expected a number, got boolean true"
    ]


def test_string_seconds_are_refused() -> None:
    text = "manager:\n  connect_timeout: '30'\ndevices:\n" + OK_DEVICE
    assert problems_in(text) == [
        "devices.yaml:2: manager.connect_timeout: expected a number, got string '30'"
    ]


# --- unknown and missing keys ---


def test_unknown_key_suggests_the_close_match() -> None:
    text = one_device("device_id: d", "server_url: ws://h", "max_retrys: 3")
    assert problems_in(text) == [
        "devices.yaml:4: devices[0].max_retrys: unknown key 'max_retrys' "
        "(did you mean 'max_retries'?)"
    ]


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    text = "devices:\n" + OK_DEVICE + "colour: blue\n"
    assert problems_in(text) == [
        "devices.yaml:4: colour: unknown key 'colour' (expected one of: devices, manager, store)"
    ]


def test_unknown_manager_key() -> None:
    text = "manager:\n  heartbeat: 10\ndevices:\n" + OK_DEVICE
    assert problems_in(text) == [
        "devices.yaml:2: manager.heartbeat: unknown key 'heartbeat' "
        "(did you mean 'heartbeat_interval'?)"
    ]


def test_timings_are_written_inline_not_under_a_timing_key() -> None:
    # ManagerSettings holds a Timing; the file keeps its keys beside task_name, and a
    # 'timing:' key is as unknown as any other, reported with the rest.
    text = "manager:\n  timing: {heartbeat_interval: 5}\n  miss_limit: 0\ndevices:\n" + OK_DEVICE
    assert problems_in(text) == [
        "devices.yaml:2: manager.timing: unknown key 'timing' (expected one of: task_name, "
        "api_key, connect_timeout, registration_timeout, telemetry_timeout, reconnect_delay, "
        "backoff_cap, jitter_floor, rejoin_delay, heartbeat_interval, miss_limit, "
        "recovery_window, stability_window, retry_failed_after)",
        "devices.yaml:3: manager.miss_limit: must be >= 1, got 0",
    ]


def test_missing_required_keys() -> None:
    text = "devices:\n" + OK_DEVICE + "  - os: linux\n    max_retries: 2\n"
    assert problems_in(text) == [
        "devices.yaml:4: devices[1].device_id: required key missing",
        "devices.yaml:4: devices[1].server_url: required key missing",
    ]


def test_missing_devices_list() -> None:
    assert problems_in("manager:\n  task_name: x\n") == [
        "devices.yaml:1: devices: required key missing"
    ]


def test_empty_devices_list() -> None:
    assert problems_in("manager: {}\ndevices: []\n") == [
        "devices.yaml:2: devices: no devices configured"
    ]


def test_device_that_is_not_a_mapping() -> None:
    text = "devices:\n" + OK_DEVICE + "  - windowsagent\n"
    assert problems_in(text) == [
        "devices.yaml:4: devices[1]: expected a mapping, got string 'windowsagent'"
    ]


# --- value rules ---


def test_duplicate_device_id_points_at_the_second() -> None:
    text = (
        "devices:\n"
        "  - device_id: twin\n"
        "    server_url: ws://h\n"
        "  - device_id: other\n"
        "    server_url: ws://h\n"
        "  - device_id: twin\n"
        "    server_url: ws://h\n"
    )
    assert problems_in(text) == [
        "devices.yaml:6: devices[2].device_id: duplicate device_id 'twin' (first defined at line 2)"
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://localhost:5005/ws",
            "must be a ws:// or wss:// URL, got 'http://localhost:5005/ws'",
        ),
        ("localhost:5005", "must be a ws:// or wss:// URL, got 'localhost:5005'"),
        ("ws:///ws", "has no host, got 'ws:///ws'"),
        ("wss://host:99999/ws", "has an invalid port (1-65535), got 'wss://host:99999/ws'"),
    ],
)
def test_server_url_must_be_websocket_with_host(url: str, message: str) -> None:
    text = one_device("device_id: d", f"server_url: '{url}'")
    assert problems_in(text) == [f"devices.yaml:3: devices[0].server_url: {message}"]


def test_server_url_with_token_is_fine() -> None:
    text = one_device("device_id: d", "server_url: 'wss://galaxy.example:443/ws?token=abc'")
    assert loads_config(text).devices[0].server_url.endswith("?token=abc")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_retries_below_one(value: str) -> None:
    text = one_device("device_id: d", "server_url: ws://h", f"max_retries: {value}")
    assert problems_in(text) == [
        f"devices.yaml:4: devices[0].max_retries: must be >= 1 (null means retry forever), "
        f"got {value}"
    ]


def test_device_id_must_be_a_plain_word() -> None:
    text = "devices:\n  - device_id: 'my agent'\n    server_url: ws://h\n"
    text += "  - device_id: ''\n    server_url: ws://h\n"
    assert problems_in(text) == [
        "devices.yaml:2: devices[0].device_id: must not contain whitespace "
        "(U+0020 at position 2), got 'my agent'",
        "devices.yaml:4: devices[1].device_id: must not be empty, got ''",
    ]


def test_every_number_rule_is_checked_even_next_to_a_broken_one() -> None:
    text = "manager: {reconnect_delay: .nan, backoff_cap: -1}\ndevices:\n" + OK_DEVICE
    assert problems_in(text) == [
        "devices.yaml:1: manager.reconnect_delay: must be a finite number, got nan",
        "devices.yaml:1: manager.backoff_cap: must be >= 0, got -1.0",
    ]


def test_manager_rules() -> None:
    text = (
        "manager:\n"
        "  heartbeat_interval: 0\n"
        "  reconnect_delay: 10\n"
        "  backoff_cap: 5\n"
        "  miss_limit: 0\n"
        "devices:\n" + OK_DEVICE
    )
    assert problems_in(text) == [
        "devices.yaml:2: manager.heartbeat_interval: must be > 0, got 0.0",
        "devices.yaml:4: manager.backoff_cap: must be >= reconnect_delay (10), got 5.0",
        "devices.yaml:5: manager.miss_limit: must be >= 1, got 0",
    ]


def test_metadata_must_be_json_like() -> None:
    text = one_device(
        "device_id: d", "server_url: ws://h", "metadata:", "  since: 2024-01-01", "  ok: [1, 2]"
    )
    assert problems_in(text) == [
        "devices.yaml:5: devices[0].metadata.since: must be a JSON value, got date 2024-01-01 "
        "(quote it to keep it a string)"
    ]


def test_duplicate_yaml_key() -> None:
    text = one_device("device_id: a", "server_url: ws://h", "device_id: b")
    assert problems_in(text) == [
        "devices.yaml:4: devices[0].device_id: duplicate key (first at line 2)"
    ]


# --- files that are not configs at all ---


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n"])
def test_empty_file(text: str) -> None:
    assert problems_in(text) == [
        "devices.yaml:1: empty file: expected a mapping with a 'devices' list at the top level"
    ]


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list"), ("just words\n", "string 'just words'"), ("~\n", "null")],
)
def test_file_that_is_not_a_mapping(text: str, got: str) -> None:
    assert problems_in(text) == [
        f"devices.yaml:1: expected a mapping with a 'devices' list at the top level, got {got}"
    ]


def test_yaml_syntax_error_has_yamls_line() -> None:
    text = "devices:\n  - device_id: a\n    server_url: [ws://h\n  - device_id: b\n"
    [line] = problems_in(text)
    assert line.startswith("devices.yaml:4: YAML syntax error: ")


def test_tab_indentation_is_a_syntax_error() -> None:
    [line] = problems_in("devices:\n\t- device_id: a\n")
    assert line == (
        "devices.yaml:2: YAML syntax error: found character '\\t' that cannot start any token "
        "(while scanning for the next token)"
    )


def test_unsafe_tag_is_refused_not_run() -> None:
    [line] = problems_in("devices: !!python/object/apply:os.system ['true']\n")
    assert line.startswith("devices.yaml:1: invalid YAML: could not determine a constructor")


def test_control_character() -> None:
    assert problems_in("devices:\n  - \x07\n") == [
        "devices.yaml:2: not valid YAML text: unacceptable character #x0007: "
        "special characters are not allowed"
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [Problem(str(path), 0, "", "no such file")]
    assert str(info.value.problems[0]) == f"{path}:0: no such file"


def test_directory_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert [p.message for p in info.value.problems] == ["is a directory, not a YAML file"]
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"devices: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert [p.message for p in info.value.problems] == ["not UTF-8 text (bad byte at offset 9)"]


# --- everything at once ---


def test_all_problems_are_reported_together_in_file_order() -> None:
    text = (
        "manager:\n"  # 1
        "  heartbeat_interval: '30'\n"  # 2
        "  reconnect_delay: 10\n"  # 3
        "  backoff_cap: 2\n"  # 4
        "devices:\n"  # 5
        "  - device_id: 'a b'\n"  # 6
        "    server_url: http://h\n"  # 7
        "    max_retrys: 5\n"  # 8
        "    auto_connect: 'yes'\n"  # 9
        "  - device_id: dup\n"  # 10
        "    server_url: ws://h\n"  # 11
        "    max_retries: 0\n"  # 12
        "  - device_id: dup\n"  # 13
        "    server_url: ws://h\n"  # 14
        "  - os: linux\n"  # 15
    )
    assert problems_in(text) == [
        "devices.yaml:2: manager.heartbeat_interval: expected a number, got string '30'",
        "devices.yaml:4: manager.backoff_cap: must be >= reconnect_delay (10), got 2.0",
        "devices.yaml:6: devices[0].device_id: must not contain whitespace "
        "(U+0020 at position 1), got 'a b'",
        "devices.yaml:7: devices[0].server_url: must be a ws:// or wss:// URL, got 'http://h'",
        "devices.yaml:8: devices[0].max_retrys: unknown key 'max_retrys' "
        "(did you mean 'max_retries'?)",
        "devices.yaml:9: devices[0].auto_connect: expected a boolean (true or false), "
        "got string 'yes'",
        "devices.yaml:12: devices[1].max_retries: must be >= 1 (null means retry forever), got 0",
        "devices.yaml:13: devices[2].device_id: duplicate device_id 'dup' "
        "(first defined at line 10)",
        "devices.yaml:15: devices[3].device_id: required key missing",
        "devices.yaml:15: devices[3].server_url: required key missing",
    ]


def test_a_task_name_the_id_rule_refuses_is_named() -> None:
    found = problems_in("manager:\n  task_name: ' '\ndevices:\n" + OK_DEVICE)
    assert len(found) == 1 and found[0].startswith("devices.yaml:2: manager.task_name: ")
    config = loads_config("manager:\n  task_name: lab-7\ndevices:\n" + OK_DEVICE)
    assert config.manager.task_name == "lab-7"


# --- what a problem quotes, and where it points ---


def test_a_secret_of_the_wrong_type_is_named_without_its_value() -> None:
    """The API key is a secret: a wrong-typed one is described by its type alone; any other
    field quotes the value it was given."""
    text = "manager:\n  api_key: 12345\n  task_name: 67890\ndevices:\n" + OK_DEVICE
    assert problems_in(text) == [
        "devices.yaml:2: manager.api_key: expected a string or null, got integer",
        "devices.yaml:3: manager.task_name: expected a string, got integer 67890",
    ]


def test_a_problem_with_a_value_points_at_the_value_and_an_unknown_key_at_the_key() -> None:
    value_below = one_device("device_id: d", "server_url: ws://h", "max_retries:", "  [1]")
    assert problems_in(value_below) == [
        "devices.yaml:5: devices[0].max_retries: expected an integer or null, got a list"
    ]
    key_above = one_device("device_id: d", "server_url: ws://h", "colour:", "  a: 1")
    assert problems_in(key_above) == [
        "devices.yaml:4: devices[0].colour: unknown key 'colour' (expected one of: device_id, "
        "server_url, os, capabilities, metadata, max_retries, auto_connect)"
    ]


def test_an_unknown_key_that_is_not_a_string_is_named_as_it_is() -> None:
    assert problems_in("1: x\ndevices:\n" + OK_DEVICE) == [
        "devices.yaml:1: [1]: unknown key 1 (expected one of: devices, manager, store)"
    ]
