"""The CLI is a package of its own: library modules never parse arguments, print or trap signals.

Plus the conventions it brings: ``stellate --version``, ``python -m stellate``, and ``-v``
accepted after the subcommand as well as before it.
"""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import stellate
from stellate.cli import build_parser
from stellate.cli.main import configure_logging

PACKAGE = Path(stellate.__file__).resolve().parent
STELLATE = Path(sys.executable).parent / "stellate"
#: What only the command line may do.
CLI_ONLY_MODULES = {"argparse", "signal"}


def library_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts)


def cli_habits(path: Path) -> list[str]:
    """Every import of argparse/signal and every call of print() in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
        else:
            names = []
        found += [f"{path.name}:{node.lineno}: import {n}" for n in names if n in CLI_ONLY_MODULES]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
        ):
            found.append(f"{path.name}:{node.lineno}: print()")
    return found


def test_library_modules_do_not_parse_print_or_trap_signals() -> None:
    modules = library_modules()
    assert PACKAGE / "server" / "agent_server.py" in modules
    assert PACKAGE / "agent" / "device_agent.py" in modules
    assert [habit for path in modules for habit in cli_habits(path)] == []


def test_the_check_sees_a_print_and_an_argparse_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import argparse\nfrom signal import SIGINT\nprint('hi')\n", encoding="utf-8")
    assert cli_habits(bad) == [
        "bad.py:1: import argparse",
        "bad.py:2: import signal",
        "bad.py:3: print()",
    ]


@pytest.mark.parametrize(
    "command",
    [[str(STELLATE), "--version"], [sys.executable, "-m", "stellate", "--version"]],
    ids=["script", "python -m stellate"],
)
def test_version(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"stellate {stellate.__version__}\n"


def test_python_m_stellate_runs_a_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stellate", "diagram", "--format", "table"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| # | trigger |")


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["up"], 0),
        (["-v", "up"], 1),
        (["up", "-v"], 1),
        (["up", "--verbose"], 1),
        (["-v", "validate", "-v"], 2),
        (["serve", "-vv"], 2),
        (["agent", "--server", "ws://h/ws", "-v"], 1),
        (["diagram", "-v"], 1),
    ],
)
def test_verbose_before_and_after_the_subcommand(argv: list[str], count: int) -> None:
    args = build_parser().parse_args(argv)
    assert args.verbose + args.verbose_after == count


@pytest.mark.parametrize(
    ("argv", "informative"),
    [
        (["agent", "--server", "ws://h/ws"], ("stellate.agent",)),
        (["serve"], ()),
        (["up"], ()),
    ],
)
def test_the_agent_shows_its_own_info_lines_by_default(
    argv: list[str], informative: tuple[str, ...]
) -> None:
    """The agent's log is all an operator has: registered, lost, rejoined show without -v;
    every other INFO line stays behind -v."""
    args = build_parser().parse_args(argv)
    assert getattr(args, "informative", ()) == informative
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    loggers = {name: logging.getLogger(name) for name in ("stellate", "stellate.agent")}
    levels = {name: lg.level for name, lg in loggers.items()}
    root.handlers = []
    try:
        configure_logging(0, informative)
        agent_info = loggers["stellate.agent"].isEnabledFor(logging.INFO)
        assert agent_info is bool(informative)
        assert not logging.getLogger("stellate.manager").isEnabledFor(logging.INFO)
        configure_logging(1, informative)
        assert loggers["stellate.agent"].isEnabledFor(logging.DEBUG)
    finally:
        root.handlers, root.level = saved
        for name, level in levels.items():
            loggers[name].setLevel(level)
