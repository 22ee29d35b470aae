"""Issue 10, class 4 (and the config half of class 8): a config file costs at most its budget.

Alias bombs (plain, through ``<<`` merges, nested inside deep lists), nesting far beyond
Python's recursion, recursive aliases, oversize files, FIFOs and devices: each ends as one
``FILE:LINE: field: message`` problem, never a traceback, a hang or a memory blow-up. Hypothesis
draws alias fan-outs and depths around the limits and checks the verdict against the
arithmetic; any text at all ends as a config or a ConfigError.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hardening_support import FIGURES
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.config import ConfigError, DeviceConfig, load_config, loads_config
from stellate.config.budget import MAX_BYTES_ENV, LoadLimits

LIMITS = LoadLimits()
DEVICE = "devices:\n  - device_id: dev\n    server_url: ws://h:5005/ws\n"


def problems(text: str, limits: LoadLimits | None = None) -> list[str]:
    FIGURES["hostile configs tried"] += 1
    try:
        if limits is None:
            loads_config(text, "devices.yaml")
        else:
            loads_config(text, "devices.yaml", limits=limits)
    except ConfigError as exc:
        return [str(problem) for problem in exc.problems]
    except Exception:
        FIGURES["crashes"] += 1
        raise
    return []


def laughs(levels: int, fan_out: int = 10) -> str:
    """The billion laughs under ``metadata``: level n lists level n-1 ``fan_out`` times."""
    lines = [DEVICE + "    metadata:", '      l0: &l0 "lol"']
    for n in range(1, levels + 1):
        refs = ", ".join([f"*l{n - 1}"] * fan_out)
        lines.append(f"      l{n}: &l{n} [{refs}]")
    return "\n".join(lines) + "\n"


def test_the_billion_laughs_is_refused_at_its_line() -> None:
    """Issue 10, 4(a): ten levels (~500 bytes, 10^10 values) used to spin for minutes."""
    text = laughs(10)
    assert len(text) < 800
    assert problems(text) == [
        "devices.yaml:11: devices[0].metadata.l6: expands to more than 1,000,000 values once "
        "its YAML aliases are followed (the limit: an alias repeats what it names)"
    ]


def test_merge_keys_are_expansion_too() -> None:
    lines = [DEVICE + "    metadata:", "      m0: &m0 {a: 1, b: 2}"]
    for n in range(1, 25):
        lines.append(f"      m{n}: &m{n} {{<<: [*m{n - 1}, *m{n - 1}], k{n}: {n}}}")
    (problem,) = problems("\n".join(lines) + "\n")
    assert "expands to more than 1,000,000 values" in problem
    assert problem.startswith("devices.yaml:") and "devices[0].metadata.m" in problem


def test_a_modest_use_of_aliases_is_fine() -> None:
    text = (
        "x-defaults: &defaults {os: linux, capabilities: [cli, gui], max_retries: 3}\n"
        "devices:\n"
        "  - {<<: *defaults, device_id: a, server_url: 'ws://h:1/ws'}\n"
        "  - {<<: *defaults, device_id: b, server_url: 'ws://h:1/ws'}\n"
    )
    assert problems(text) == [
        "devices.yaml:1: ['x-defaults']: unknown key 'x-defaults' (expected one of: devices, "
        "manager, store)"
    ]
    shared = laughs(4)  # 10^4 values: within the budget
    assert problems(shared) == []


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_is_a_problem_not_a_recursion_error(style: str) -> None:
    """Issue 10, 4(b): ~500 levels gave a RecursionError traceback."""
    depth = 500
    if style == "flow":
        value = "[" * depth + "]" * depth
        text = DEVICE + f"    metadata: {{deep: {value}}}\n"
    else:
        text = (
            DEVICE
            + "    metadata:\n      deep:\n"
            + "".join("  " * (n + 4) + "-\n" for n in range(depth))
        )
    (problem,) = problems(text)
    assert "nested deeper than 64 levels (the limit)" in problem
    assert problem.startswith("devices.yaml:") and "devices[0].metadata.deep" in problem


def test_depth_through_aliases_counts_too() -> None:
    """Each anchor nests the previous one 40 deep: 40 on the page, 800 once followed."""
    lines = [DEVICE + "    metadata:", "      d0: &d0 x"]
    for n in range(1, 21):
        lines.append(f"      d{n}: &d{n} " + "[" * 40 + f"*d{n - 1}" + "]" * 40)
    (problem,) = problems("\n".join(lines) + "\n")
    assert "nested deeper than 64 levels once its YAML aliases are followed" in problem
    assert problem.startswith("devices.yaml:7: devices[0].metadata.d2[0]")  # 40 + 40 deep


@pytest.mark.parametrize("value", ["&a [*a]", "&a {k: *a}", "&a [1, [2, *a]]", "&a {<<: *a}"])
def test_a_recursive_alias_is_refused(value: str) -> None:
    (problem,) = problems(DEVICE + f"    metadata: {{r: {value}}}\n")
    assert "refers to itself (a recursive YAML alias)" in problem
    assert problem.startswith("devices.yaml:4: devices[0].metadata.r")


# -- the file itself ---------------------------------------------------------------------------


def test_an_oversize_file_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    """Issue 10, 4(c): a 50 MB config was read whole (1 GB RSS)."""
    path = tmp_path / "big.yaml"
    with path.open("w") as file:
        file.write(DEVICE + "    metadata: {pad: '")
        file.write("x" * (5 * 1024 * 1024))
        file.write("'}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:0: is larger than 4,194,304 bytes (the limit; set {MAX_BYTES_ENV} to raise it)"
    ]


def test_the_size_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(DEVICE + "    metadata: {pad: '" + "x" * 5_000_000 + "'}\n")
    monkeypatch.setenv(MAX_BYTES_ENV, str(8 * 1024 * 1024))
    assert load_config(path).devices[0].device_id == "dev"
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ConfigError, match="must be a positive number of bytes"):
        load_config(path)
    assert load_config(path, limits=LoadLimits(max_bytes=6_000_000)).devices


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A FIFO as the config path used to hang ``stellate validate`` forever."""
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    outcome: list[Any] = []

    def load() -> None:
        try:
            load_config(path)
        except ConfigError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(30)  # a hang guard, not a timing assertion: a refusal is immediate
    if worker.is_alive():  # unblock the reader so the thread can end, then fail
        with open(path, "w"):
            pass
        pytest.fail("load_config waited on a FIFO")
    assert [str(p) for p in outcome[0].problems] == [
        f"{path}:0: is not a regular file (a FIFO); refusing to read it"
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/dev/zero", "is not a regular file (a character device); refusing to read it"),
        ("/dev/null", "is not a regular file (a character device); refusing to read it"),
        ("/", "is a directory, not a YAML file"),
        ("/no/such/devices.yaml", "no such file"),
    ],
)
def test_special_files_are_refused(path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [f"{path}:0: {message}"]


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=examples(60))
@given(levels=st.integers(1, 12), fan_out=st.integers(1, 12))
def test_alias_expansion_is_refused_exactly_when_it_exceeds_the_budget(
    levels: int, fan_out: int
) -> None:
    limits = LoadLimits(max_nodes=50_000)
    found = problems(laughs(levels, fan_out), limits)
    # Values under metadata: l0 (1) + sum over n of 1 + fan_out * size(n-1); plus the rest.
    size = [1]
    for _ in range(levels):
        size.append(1 + fan_out * size[-1])
    biggest = size[-1]
    if biggest > limits.max_nodes:
        assert len(found) == 1 and "expands to more than 50,000 values" in found[0]
    elif sum(size) * 2 + 40 < limits.max_nodes:  # keys and the rest of the file: well within
        assert found == []


@settings(max_examples=examples(60))
@given(depth=st.integers(1, 200))
def test_nesting_is_refused_exactly_beyond_the_limit(depth: int) -> None:
    value = "[" * depth + "1" + "]" * depth
    found = problems(DEVICE + f"    metadata: {{deep: {value}}}\n")
    # The document's own levels above the value: root, devices, the device, metadata.
    if depth + 4 > LIMITS.max_depth:
        assert len(found) == 1 and "nested deeper than 64 levels" in found[0]
    else:
        assert found == []


@settings(max_examples=examples(200))
@given(st.text(alphabet=st.sampled_from(list("[]{}&*:,-' \n\tabcd0123<>!|%@#\"\\")), max_size=300))
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    problems(text)  # anything but a ConfigError fails the test (and counts as a crash)


def test_shared_metadata_is_validated_once_per_node() -> None:
    """Validation of shared aliases never walks the same node twice."""
    walks: dict[int, int] = {}

    class Counted(list[Any]):
        def __iter__(self) -> Any:
            walks[id(self)] = walks.get(id(self), 0) + 1
            return super().__iter__()

    shared = Counted(range(10))
    level: Any = shared
    for _ in range(40):  # 2^40 paths to ``shared``
        level = Counted([level, level])
    DeviceConfig(device_id="d", server_url="ws://h/ws", metadata={"bomb": level})
    assert set(walks.values()) == {1} and len(walks) == 41


# -- numbers and ports (class 8) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "max_retries: 100000000000000000000000000000",
            "devices[0].max_retries: must be <= 1,000,000 (null means retry forever), "
            "got a 30-digit number",
        ),
        (
            "max_retries: 1000001",
            "devices[0].max_retries: must be <= 1,000,000 (null means retry forever), got 1000001",
        ),
        ("max_retries: 1e29", "devices[0].max_retries: expected an integer or null, got string"),
        ("max_retries: 1.0e+29", "devices[0].max_retries: expected an integer or null, got float"),
    ],
)
def test_max_retries_has_a_sane_bound(line: str, message: str) -> None:
    text = DEVICE + f"    {line}\n"
    (problem,) = problems(text)
    assert problem.startswith(f"devices.yaml:4: {message}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://h:0/ws", "has port 0 (a server's port is 1-65535)"),
        ("ws://h:/ws", "has an empty port"),
        ("ws://h:65536/ws", "has an invalid port (1-65535)"),
        ("ws://h/ws#frag", "must not have a fragment"),
    ],
)
def test_a_server_url_port_must_be_usable(url: str, message: str) -> None:
    text = f"devices:\n  - device_id: dev\n    server_url: '{url}'\n"
    (problem,) = problems(text)
    assert problem.startswith(f"devices.yaml:3: devices[0].server_url: {message}")


def test_the_document_is_composed_with_aliases_shared_not_copied() -> None:
    """What makes the budget cheap: an alias is the node it names (so is the built value)."""
    node = yaml.compose("a: &x [1]\nb: *x\n")
    assert node is not None
    (_, first), (_, second) = node.value
    assert first is second
