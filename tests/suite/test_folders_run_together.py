"""Test folders run together in any combination: ``pytest tests/security tests/hardening`` too.

The suite uses pytest's default import mode without packages: each folder of tests is put on
``sys.path`` when its first module is collected, and every module is imported by its bare name.
What a bare import finds then depends on which folders were collected, and in which order:

* every folder's ``conftest.py`` is a module named ``conftest``; pytest loads the conftests of
  all the folders named on the command line before collecting any test, so a test module that
  imports ``conftest`` gets whichever folder came last (``tests/security`` once imported its
  key from its conftest and failed at collection beside ``tests/hardening``);
* two modules of the same name in two folders: the first one imported wins everywhere;
* a module imported from another folder: found only when that folder happened to be collected
  first, so the importing folder fails alone;
* a module named like one of the standard library or an installed package shadows it, or is
  shadowed.

The rules below forbid each case on the source (fast, and it names the file), and one run of
pytest collects every folder at once, in reverse order, the way a user may name them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from importlib.metadata import packages_distributions
from pathlib import Path

from real_time import HANG_GUARD

ROOT = Path(__file__).resolve().parents[2]
#: The folders whose modules import each other by bare name: tests/ (every folder of tests sees
#: the modules at its top, which its conftest puts on the path) and examples/ (on its own).
TOP_FOLDERS = ("tests", "examples")


def _modules(root: Path) -> list[Path]:
    return sorted(p for top in TOP_FOLDERS for p in (root / top).rglob("*.py"))


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) of every absolute import of ``path``, in functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def layout_problems(root: Path = ROOT) -> list[str]:
    """Every way a module of tests/ or examples/ could import differently by folder choice."""
    modules = _modules(root)
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in modules:
        by_name[path.stem].append(path)
    problems = []
    for path in modules:
        if path.name == "__init__.py":
            problems.append(f"{path.relative_to(root)}: a package; the suite's folders are not")
    for name, paths in sorted(by_name.items()):
        where = ", ".join(str(p.relative_to(root)) for p in paths)
        if len(paths) > 1 and name != "conftest":
            problems.append(f"{name}: {len(paths)} modules of that name ({where})")
        if name in sys.stdlib_module_names or name in packages_distributions():
            problems.append(f"{name}: shadows an installed module of that name ({where})")
    for path in modules:
        top = (root / "tests") if path.is_relative_to(root / "tests") else path.parent
        for line, name in _imported_names(path):
            at = f"{path.relative_to(root)}:{line}"
            if name == "conftest":
                problems.append(f"{at}: imports conftest (put what it shares in a module)")
            elif name in by_name and by_name[name][0].parent not in (path.parent, top):
                problems.append(
                    f"{at}: imports {name} from {by_name[name][0].parent.relative_to(root)}, "
                    "which is on the path only if that folder was collected first"
                )
    return problems


def test_no_module_imports_differently_by_the_folders_collected() -> None:
    assert len(_modules(ROOT)) > 50
    problems = layout_problems()
    assert problems == [], "\n".join(problems)


def test_the_rules_see_each_case(tmp_path: Path) -> None:
    files = {
        "tests/conftest.py": "",
        "tests/shared.py": "",
        "tests/a/conftest.py": "KEY = 1\n",
        "tests/a/a_support.py": "",
        "tests/a/frames.py": "",
        "tests/a/test_a.py": "from conftest import KEY\nimport shared, a_support\n",
        "tests/b/frames.py": "",
        "tests/b/test_b.py": "def f():\n    from a_support import X\n",
        "tests/b/__init__.py": "",
        "tests/c/yaml.py": "",
        "examples/test_e.py": "import shared\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert layout_problems(tmp_path) == [
        "tests/b/__init__.py: a package; the suite's folders are not",
        "frames: 2 modules of that name (tests/a/frames.py, tests/b/frames.py)",
        "yaml: shadows an installed module of that name (tests/c/yaml.py)",
        "examples/test_e.py:1: imports shared from tests, "
        "which is on the path only if that folder was collected first",
        "tests/a/test_a.py:1: imports conftest (put what it shares in a module)",
        "tests/b/test_b.py:2: imports a_support from tests/a, "
        "which is on the path only if that folder was collected first",
    ]


def test_every_folder_collects_beside_every_other() -> None:
    """All the folders named at once (their conftests then load before any test module), in
    reverse order: the combination that broke ``tests/security`` beside ``tests/hardening``."""
    folders = sorted({p.parent for p in _modules(ROOT) if p.name.startswith("test_")})
    assert ROOT / "tests" / "security" in folders and ROOT / "examples" in folders
    args = [str(folder.relative_to(ROOT)) for folder in reversed(folders)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
