"""The layout is the architecture: each part of stellate imports only the parts below it.

docs/architecture.md draws the layers; this test reads every import statement of the package
(``TYPE_CHECKING`` blocks and imports inside functions included) and fails on one that crosses a
layer upwards or sideways, and on any import cycle between modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "stellate"

#: The layers each part may import besides itself and ``errors``.
_ALLOWED_ABOVE: dict[str, frozenset[str]] = {
    # the exception root: below everything
    "errors": frozenset(),
    # core
    "text": frozenset(),
    "timing": frozenset(),
    "protocol": frozenset({"text", "timing"}),
    "fsm": frozenset({"protocol", "text", "timing"}),
    "store": frozenset({"fsm", "protocol", "text", "timing"}),
    "config": frozenset({"fsm", "protocol", "store", "text", "timing"}),
    # edges
    "adapters": frozenset({"protocol", "store", "text", "timing"}),
    # apps
    "manager": frozenset({"adapters", "config", "fsm", "protocol", "store", "text", "timing"}),
    "server": frozenset({"adapters", "protocol", "text", "timing"}),
    "agent": frozenset({"adapters", "protocol", "text", "timing"}),
    "local": frozenset({"adapters", "agent", "config", "protocol", "server", "text", "timing"}),
    "testing": frozenset({"adapters", "fsm", "manager", "protocol", "store", "text", "timing"}),
    "cli": frozenset(
        {"adapters", "agent", "config", "fsm", "local", "manager", "protocol", "server"}
        | {"stellate", "store", "text", "timing"}
    ),
    # the faces
    "stellate": frozenset({"config", "fsm", "manager", "timing"}),
    "__main__": frozenset({"cli"}),
}
#: What each part may import besides itself (docs/architecture.md, "Who imports whom"): every
#: part may import ``errors`` (the exception root), which imports nothing.
ALLOWED: dict[str, frozenset[str]] = {
    part: rule | {"errors"} if part != "errors" else rule for part, rule in _ALLOWED_ABOVE.items()
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported stellate module) for every import statement of ``module``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module.
            names = [
                f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
                for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield node.lineno, name


def _part(module: str) -> str:
    """The part of the package a module belongs to (``stellate`` itself for the top level)."""
    return module.split(".")[1] if "." in module else module


def test_every_part_of_the_package_has_its_rule() -> None:
    assert {_part(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_the_layers_below_it(module: str) -> None:
    part = _part(module)
    crossings = [
        f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}: imports {target}"
        for line, target in _imports(module, MODULES[module])
        if _part(target) != part and _part(target) not in ALLOWED[part]
    ]
    assert crossings == [], f"{part} may import only {sorted(ALLOWED[part])}"


def test_no_import_cycles_between_modules() -> None:
    graph = {m: {t for _, t in _imports(m, p)} for m, p in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_top_level_holds_at_most_five_loose_modules() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 5, loose


def test_the_rule_sees_a_planted_crossing(tmp_path: Path) -> None:
    # The rule reads what it is for: a core module importing an app is a crossing.
    planted = tmp_path / "table.py"
    planted.write_text("from ..manager import ConstellationDeviceManager\n", encoding="utf-8")
    found = list(_imports("stellate.fsm.table", planted))
    assert found and all(_part(t) not in ALLOWED["fsm"] for _, t in found)
