"""The Makefile and pyproject say what they do, and refuse a Python too old to run stellate."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
OLD_PYTHON = """#!/bin/sh
# A stand-in for Python 3.10: it says its version and fails every check it is asked to run.
if [ "$1" = "--version" ]; then echo "Python 3.10.12"; exit 0; fi
exit 1
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def fake_python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OLD_PYTHON, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    return subprocess.run(
        ["make", "-f", str(MAKEFILE), "-C", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MAKEFLAGS": ""},
    )


def test_make_refuses_an_old_python_before_making_a_venv(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "bin" / "python3.10")
    result = make(tmp_path, f"PYTHON={python}", "run")
    assert result.returncode != 0
    assert f"stellate needs Python 3.11 or newer, but {python} is Python 3.10.12." in result.stdout
    assert "make PYTHON=python3.11 run" in result.stdout
    assert not (tmp_path / ".venv").exists()


def test_make_says_what_to_do_with_a_venv_made_by_an_old_python(tmp_path: Path) -> None:
    fake_python(tmp_path / ".venv" / "bin" / "python")
    result = make(tmp_path, "PYTHON=python3", "test")
    assert result.returncode != 0
    assert ".venv was made with Python 3.10.12; stellate needs 3.11 or newer." in result.stdout
    assert "Remove it (make clean)" in result.stdout


def test_make_run_says_it_runs_until_ctrl_c() -> None:
    text = MAKEFILE.read_text(encoding="utf-8")
    (comment,) = [line for line in text.splitlines() if line.startswith("## make run:")]
    assert "once" not in comment
    assert "until Ctrl-C" in text.split("## make run:", 1)[1].split("\nrun:", 1)[0]


def test_the_licence_is_an_spdx_expression() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "MIT"  # not the deprecated {text = ...} table
    assert "setuptools>=77" in pyproject["build-system"]["requires"]  # first to read it
