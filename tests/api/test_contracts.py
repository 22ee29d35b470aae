"""Contracts that used to be hidden: what stellate imports, what building an object does.

* Every package the code imports is declared in pyproject.toml (``stellate/testing`` may also
  use the ``testing`` extra), and every declared one is imported.
* Building a manager, an agent or a server changes nothing outside the object: no log filter
  learns a key, no environment variable is read. The command does those where it starts.
* The suite passes ``strict`` to every manager it builds (the environment no longer does).
* The runner stamps heartbeat answers with the lifecycle's injected clock.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import stellate.fsm.lifecycle
from stellate.agent import DeviceAgent
from stellate.manager import ConstellationDeviceManager
from stellate.server import AgentServer
from stellate.testing import FleetDevice, run_fleet
from stellate.text.redact import LOG_FILTER

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "stellate"


def _requirement_name(requirement: str) -> str:
    """``"trio-websocket>=0.12.2,<0.13"`` → ``trio-websocket`` (normalized, PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = {
        extra: {_requirement_name(r) for r in requirements}
        for extra, requirements in project["optional-dependencies"].items()
    }
    return {_requirement_name(r) for r in project["dependencies"]}, extras


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path`` (inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party() -> dict[str, set[str]]:
    """``{distribution: {files importing it}}`` over the package."""
    owners = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _imports(path) - set(sys.stdlib_module_names) - {"stellate"}:
            assert name in owners, f"{path.relative_to(ROOT)}: {name} belongs to no distribution"
            for distribution in owners[name]:
                found.setdefault(_requirement_name(distribution), set()).add(
                    str(path.relative_to(ROOT))
                )
    return found


def test_every_import_is_declared_in_pyproject() -> None:
    dependencies, extras = _declared()
    used = _third_party()
    assert {"h11", "wsproto", "trio", "transitions"} <= set(used)  # the walk sees the imports
    undeclared = {
        distribution: sorted(files)
        for distribution, files in used.items()
        if distribution not in dependencies
        and not (
            distribution in extras["testing"]
            and all(f.startswith("stellate/testing/") for f in files)
        )
    }
    assert undeclared == {}


def test_every_declared_dependency_is_imported() -> None:
    dependencies, _extras = _declared()
    assert sorted(dependencies - set(_third_party())) == []


def test_building_objects_changes_nothing_outside_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """No log filter learns a key because a manager, agent or server was built; the manager
    reads no environment (strict is an argument)."""
    secrets = set(LOG_FILTER._secrets)
    key = "k3y-never-registered-by-a-constructor"
    ConstellationDeviceManager(api_key=key, strict=True)
    DeviceAgent("ws://127.0.0.1:1/ws", "dev", api_key=key)
    AgentServer(api_key=key)
    assert LOG_FILTER._secrets == secrets
    monkeypatch.setenv("STELLATE_STRICT", "1")
    # strict left to its default on purpose (the ** keeps the suite's strict rule quiet)
    assert ConstellationDeviceManager(**{})._runner_settings.strict is False
    assert ConstellationDeviceManager(strict=True)._runner_settings.strict is True


#: The calls that build a manager.
_BUILDERS = {"ConstellationDeviceManager", "open_constellation", "from_config"}


def _unstrict_calls(tree: ast.AST) -> list[int]:
    """Lines of the calls in ``tree`` that build a manager without saying ``strict`` (a call
    forwarding ``**options`` is a helper's: the helper's own dict says it)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        keywords = {k.arg for k in node.keywords}
        if name in _BUILDERS and "strict" not in keywords and None not in keywords:
            lines.append(node.lineno)
    return lines


def test_the_suite_builds_every_manager_strict() -> None:
    files = [*sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "examples").glob("test_*"))]
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in files
        for line in _unstrict_calls(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == [], "pass strict=True (or strict=False, on purpose)"


def test_a_build_without_strict_is_seen() -> None:
    # The rule reads what it is for: only the first call is a manager built without a word.
    planted = (
        "ConstellationDeviceManager(connector=net)\n"
        "ConstellationDeviceManager(connector=net, strict=True)\n"
        "ConstellationDeviceManager(**options)\n"
        "open_constellation(config, strict=False)\n"
    )
    assert _unstrict_calls(ast.parse(planted)) == [1]


def test_heartbeat_answers_are_stamped_by_the_lifecycle_s_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runner used to stamp ``datetime.now(UTC)`` itself; the lifecycle's clock (here its
    default, replaced by one that ticks a second per reading) gives every ``last_heartbeat``:
    the activation's and each heartbeat answer's."""
    readings: list[datetime] = []

    def clock() -> datetime:
        readings.append(datetime(2001, 2, 3, tzinfo=UTC) + timedelta(seconds=len(readings)))
        return readings[-1]

    monkeypatch.setattr(stellate.fsm.lifecycle, "_utc_now", clock)
    result = run_fleet([FleetDevice("d1")], seed=3)  # IDLE, heartbeats answered in the grace
    assert result.problems() == []
    assert len(readings) >= 2  # activated, then at least one answer stamped by the same clock
    assert result.devices["d1"].profile.last_heartbeat == readings[-1]
