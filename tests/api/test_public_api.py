"""The public face: what docs/api.md promises is importable, and the top level is curated."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import stellate

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
#: A table row of docs/api.md: | `module` | for | what (names in backticks) |
_ROW = re.compile(r"^\| `(stellate[\w.]*)` \| [^|]+ \| (.+) \|$")
_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def documented_names() -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    for line in API_DOC.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            table[match.group(1)] = _NAME.findall(match.group(2))
    return table


def test_the_issue_s_names_import_from_the_top_level() -> None:
    from stellate import (  # noqa: F401
        AgentProfile,
        ConstellationDeviceManager,
        DeviceStatus,
        EventKind,
        IllegalTransition,
        ManagerEvent,
        StellateConfig,
        __version__,
        load_config,
        open_constellation,
    )


def test_top_level_all_is_what_the_doc_lists() -> None:
    block = API_DOC.read_text(encoding="utf-8").split("from stellate import (", 1)[1]
    listed = re.findall(r"^\s+(\w+),", block.split("\n)", 1)[0], re.MULTILINE)
    assert sorted(listed) == sorted(stellate.__all__)
    for name in stellate.__all__:
        assert hasattr(stellate, name), name


def test_every_documented_module_has_the_names_it_promises() -> None:
    table = documented_names()
    assert {"stellate", "stellate.config", "stellate.testing", "stellate.fsm"} <= set(table)
    missing = []
    for module_name, names in table.items():
        module = importlib.import_module(module_name)
        missing += [f"{module_name}.{n}" for n in names if not hasattr(module, n)]
    assert missing == []


def test_the_version_is_written_once() -> None:
    pyproject = (API_DOC.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "stellate.__version__" }' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", stellate.__version__)


@pytest.mark.parametrize("module", ["stellate", "stellate.cli", "stellate.testing"])
def test_public_packages_import_cleanly_on_their_own(module: str) -> None:
    # A fresh interpreter: no import order of the test session can hide a cycle.
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
