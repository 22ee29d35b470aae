"""Every Python block of the README and docs/ runs as written, from the repository root.

A reader copies these into a file and runs them: each block is run the same way, alone, in a
fresh interpreter (no state from another block or from the test session).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples/README.md"]
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in PAGES:
        for number, match in enumerate(_BLOCK.finditer(page.read_text(encoding="utf-8")), 1):
            blocks.append((f"{page.relative_to(ROOT)}#{number}", match.group(1)))
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_a_snippet_to_run() -> None:
    assert any(name.startswith("README.md#") for name, _code in BLOCKS)


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _code in BLOCKS])
def test_block_runs_as_written(name: str, code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    if name == "README.md#1":  # the embedding example: the whole example fleet gets to IDLE
        for device_id in ("windowsagent", "linuxagent", "macagent"):
            assert f"{device_id}: idle, os=" in result.stdout, result.stdout
