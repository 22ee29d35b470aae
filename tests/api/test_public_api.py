"""The public face: what docs/api.md promises is importable, and the top level is curated."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
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


#: The names the first issue promised at the top level, each with the package that defines it.
ISSUE_NAMES = {
    "AgentProfile": "stellate.fsm",
    "DeviceStatus": "stellate.fsm",
    "IllegalTransition": "stellate.fsm",
    "ConstellationDeviceManager": "stellate.manager",
    "EventKind": "stellate.manager",
    "ManagerEvent": "stellate.manager",
    "open_constellation": "stellate.manager",
    "StellateConfig": "stellate.config",
    "load_config": "stellate.config",
}


def test_the_issue_s_names_import_from_the_top_level() -> None:
    """``from stellate import *`` brings each name, and each is the very object of the package
    that defines it (not a copy, a stub or a stale alias); ``__version__`` is the installed
    distribution's version."""
    star: dict[str, object] = {}
    exec("from stellate import *", star)
    for name, home in ISSUE_NAMES.items():
        assert name in star, name
        assert star[name] is getattr(importlib.import_module(home), name), name
    assert star["__version__"] == importlib.metadata.version("stellate")


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


#: Packages whose ``__init__`` is curated: it exports exactly what their row of docs/api.md lists.
CURATED = ["stellate.fsm", "stellate.protocol", "stellate.adapters", "stellate.config"]


@pytest.mark.parametrize("package", CURATED)
def test_a_curated_package_exports_exactly_its_documented_names(package: str) -> None:
    module = importlib.import_module(package)
    documented = documented_names()[package]
    assert sorted(module.__all__) == sorted(set(documented)), (
        "docs/api.md and __all__ disagree: "
        f"only in __all__: {sorted(set(module.__all__) - set(documented))}, "
        f"only in the doc: {sorted(set(documented) - set(module.__all__))}"
    )


def test_the_fsm_face_leaves_the_machine_and_its_effects_inside() -> None:
    import stellate.fsm

    internal = {"DeviceLifecycle", "LifecycleEngine", "Observer", "Effect", "OpenConnection"}
    assert internal.isdisjoint(stellate.fsm.__all__)
    assert not any(hasattr(stellate.fsm, name) for name in internal)


def internal_section() -> str:
    return API_DOC.read_text(encoding="utf-8").split("## Internal", 1)[1]


def test_every_module_is_documented_public_or_internal() -> None:
    # A new top-level module must be placed: a row of the table, or named as internal.
    public = set(documented_names())
    internal = set(re.findall(r"`(stellate(?:\.\w+)+)`", internal_section()))
    modules = {f"stellate.{m.name}" for m in pkgutil.iter_modules(stellate.__path__)}
    assert "stellate.manager" in modules  # the walk sees the packages
    unplaced = sorted(modules - public - internal)
    assert unplaced == [], f"add these to docs/api.md (a row, or the Internal list): {unplaced}"


def test_the_internal_list_names_modules_that_exist() -> None:
    for name in set(re.findall(r"`(stellate(?:\.\w+)+)`", internal_section())):
        assert importlib.util.find_spec(name) is not None, name


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
