"""The config budget's limits, at their edges (``stellate.config.budget``'s docstring).

Each limit is "at most": a file of exactly ``max_bytes`` is read, one byte more is refused; a
document exactly ``max_depth`` levels deep (or ``max_nodes`` values once aliases are followed)
passes, one more is refused at the node that breaks it. Small limits keep the documents short;
the expected sizes and depths are counted by hand in each test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stellate.config import ConfigError, loads_config
from stellate.config.budget import (
    MAX_BYTES_ENV,
    BudgetLoader,
    FastBudgetLoader,
    LoadLimits,
    OverBudget,
    graph_problem,
    loaders,
    read,
)

DEVICE = "devices:\n  - device_id: dev\n    server_url: ws://h:5005/ws\n"


def problems(text: str, limits: LoadLimits | None = None) -> list[str]:
    try:
        loads_config(text, "devices.yaml", limits=limits)
    except ConfigError as exc:
        return [str(problem) for problem in exc.problems]
    return []


def compose(text: str) -> yaml.Node:
    node = yaml.compose(text)
    assert node is not None
    return node


def test_a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_not(tmp_path: Path) -> None:
    path = tmp_path / "devices.yaml"
    path.write_bytes(DEVICE.encode())
    size = len(DEVICE.encode())
    assert read(str(path), LoadLimits(max_bytes=size)) == DEVICE.encode()
    with pytest.raises(OverBudget) as refused:
        read(str(path), LoadLimits(max_bytes=size - 1))
    assert (refused.value.line, refused.value.field) == (0, "")
    assert refused.value.message.startswith(f"is larger than {size - 1:,} bytes (the limit")


@pytest.mark.parametrize(
    ("value", "max_bytes"), [("", 4 << 20), ("1", 1), (" 2048 ", 2048), ("8388608", 8 << 20)]
)
def test_the_size_limit_comes_from_the_environment_when_set(
    value: str, max_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, value)
    assert LoadLimits.from_env() == LoadLimits(max_bytes=max_bytes)


@pytest.mark.parametrize("value", ["0", "-5", "lots", "1.5", "4 MiB"])
def test_a_size_limit_that_is_not_a_positive_integer_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, value)
    with pytest.raises(ValueError, match=f"{MAX_BYTES_ENV} must be a positive number of bytes"):
        LoadLimits.from_env()


@pytest.mark.parametrize("style", ["flow", "block"])
def test_nesting_of_exactly_the_limit_passes_and_one_level_more_is_refused(style: str) -> None:
    """Above the value sit four levels: the document, ``devices``, the device, ``metadata``."""

    def nested(depth: int) -> str:
        if style == "flow":
            return DEVICE + "    metadata: {deep: " + "[" * depth + "1" + "]" * depth + "}\n"
        rows = "".join("  " * (n + 4) + "-\n" for n in range(depth - 1))
        return DEVICE + "    metadata:\n      deep:\n" + rows + "  " * (depth + 3) + "- 1\n"

    limits = LoadLimits(max_depth=10)
    assert problems(nested(6), limits) == []
    line = 4 if style == "flow" else 12  # where the seventh list opens
    assert problems(nested(7), limits) == [
        f"devices.yaml:{line}: devices[0].metadata.deep[0][0][0][0][0]: nested deeper than 10 "
        "levels (the limit)"
    ]


def test_values_counted_once_aliases_are_followed_are_at_most_the_limit() -> None:
    # The root mapping (1), keys a and b (2), the list (1 + 2 values) named twice (6): 9.
    root = compose("a: &x [1, 2]\nb: *x\n")
    assert graph_problem(root, LoadLimits(max_nodes=9)) is None
    over = graph_problem(root, LoadLimits(max_nodes=8))
    assert over is not None and (over.line, over.field) == (1, "")
    assert over.message.startswith("expands to more than 8 values once its YAML aliases")
    inner = graph_problem(root, LoadLimits(max_nodes=2))  # the list alone (3) is over
    assert inner is not None and (inner.line, inner.field) == (1, "a")


def test_levels_counted_once_aliases_are_followed_are_at_most_the_limit() -> None:
    # b holds a list (1) holding x, two lists deep (2), under the root mapping (1): 4 levels.
    root = compose("a: &x [[1]]\nb:\n  - *x\n")
    assert graph_problem(root, LoadLimits(max_depth=4)) is None
    over = graph_problem(root, LoadLimits(max_depth=3))
    assert over is not None and (over.line, over.field) == (1, "")
    assert over.message == (
        "nested deeper than 3 levels once its YAML aliases are followed (the limit)"
    )
    scalar = compose("just text")
    assert graph_problem(scalar, LoadLimits(max_depth=0, max_nodes=1)) is None


def test_libyaml_parses_only_text_the_pure_reader_accepts() -> None:
    """The fast loader for printable text when PyYAML has libyaml; the pure one otherwise
    (and always last: it reports every error)."""
    fast = [FastBudgetLoader, BudgetLoader] if yaml.__with_libyaml__ else [BudgetLoader]
    assert loaders(DEVICE) == fast
    assert loaders(DEVICE + "# a bell \x07\n") == [BudgetLoader]


def test_without_libyaml_the_pure_loader_reads_everything() -> None:
    """A PyYAML built without libyaml (its C module cannot be imported): the same config
    loads, through the pure loader alone."""
    code = (
        "import sys; sys.modules['yaml._yaml'] = None\n"
        "from stellate.config import loads_config\n"
        "from stellate.config.budget import BudgetLoader, loaders\n"
        f"assert loaders({DEVICE!r}) == [BudgetLoader]\n"
        f"print(loads_config({DEVICE!r}).devices[0].device_id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "dev\n", "")
