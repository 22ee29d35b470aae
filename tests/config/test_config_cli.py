"""``stellate validate``: exit 0 and a count for a good file, exit 2 and problem lines for a bad."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellate.cli import main
from stellate.config import DEFAULT_CONFIG_PATH

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[1] / DEFAULT_CONFIG_PATH
BROKEN = HERE / "cases" / "broken.yaml"


def test_validate_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert out == "OK: 3 devices\n"
    assert err == ""


def test_validate_broken_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(BROKEN)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{BROKEN}:4: devices[0].max_retries: must be >= 1 (null means retry forever), got 0",
        f"{BROKEN}:7: devices[1].max_retrys: unknown key 'max_retrys' "
        "(did you mean 'max_retries'?)",
    ]


def test_validate_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "devices.yaml"
    assert main(["validate", str(missing)]) == 2
    assert capsys.readouterr().err == f"{missing}:0: no such file\n"
