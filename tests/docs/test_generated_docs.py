"""The generated parts of the docs match the table, and both diagram formats render.

Rendering needs graphviz's ``dot`` (Debian: graphviz) and, for mermaid, ``mmdc`` (npm:
@mermaid-js/mermaid-cli) with a Chromium; each test is skipped, saying which is missing, where
they are not installed. ``.ci/run`` installs all three, so CI renders both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from generated_docs import (
    FLOW_DOC,
    ROOT,
    SVG,
    dot_sha256,
    generated_formats,
    render_dot,
    svg_stamp,
    with_generated_blocks,
)

from stellate.fsm.diagram import render

STALE = "stale: run `make docs` (needs graphviz) and commit the result"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_flow_doc_carries_the_current_diagram_and_table() -> None:
    text = FLOW_DOC.read_text(encoding="utf-8")
    assert generated_formats(text) == ["mermaid", "table"]
    assert text == with_generated_blocks(text), f"{FLOW_DOC.name}: {STALE}"


def test_the_svg_was_drawn_from_the_current_dot_source() -> None:
    assert svg_stamp(SVG.read_text(encoding="utf-8")) == dot_sha256(), f"{SVG.name}: {STALE}"


@pytest.mark.parametrize("page", ["README.md", "docs/registration-flow.md"])
def test_the_picture_is_shown(page: str) -> None:
    path = ROOT / page
    target = "docs/img/lifecycle.svg" if page == "README.md" else "img/lifecycle.svg"
    assert f"]({target})" in path.read_text(encoding="utf-8")
    assert (path.parent / target).resolve() == SVG


def test_a_block_is_rewritten_from_the_table() -> None:
    stale = (
        "before\n<!-- generated: stellate diagram --format table (make docs) -->\n"
        "| old |\n<!-- end generated -->\nafter\n"
    )
    fresh = with_generated_blocks(stale)
    assert fresh.startswith("before\n<!-- generated") and fresh.endswith("-->\nafter\n")
    assert "| old |" not in fresh and render("table") in fresh


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_dot_renders(fmt: str) -> None:
    image = render_dot(fmt)
    if fmt == "png":
        assert image.startswith(PNG_MAGIC) and len(image) > 10_000
    else:
        assert b"<svg" in image and b"connecting" in image and b"3 registration" in image


def _mermaid_cli() -> tuple[str, str] | None:
    mmdc = shutil.which("mmdc")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    return (mmdc, browser) if mmdc and browser else None


@pytest.mark.skipif(
    _mermaid_cli() is None,
    reason="mermaid-cli (npm @mermaid-js/mermaid-cli, 'mmdc') or Chromium is not installed",
)
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_mermaid_renders(fmt: str, tmp_path: Path) -> None:
    tools = _mermaid_cli()
    assert tools is not None
    mmdc, browser = tools
    source = tmp_path / "lifecycle.mmd"
    source.write_text(render("mermaid"), encoding="utf-8")
    config = tmp_path / "puppeteer.json"
    config.write_text(
        json.dumps({"executablePath": browser, "args": ["--no-sandbox", "--disable-gpu"]}),
        encoding="utf-8",
    )
    out = tmp_path / f"lifecycle.{fmt}"
    result = subprocess.run(
        [mmdc, "-q", "-p", str(config), "-i", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    image = out.read_bytes()
    if fmt == "png":
        assert image.startswith(PNG_MAGIC)
    else:
        # mermaid draws a syntax error as an SVG too: make sure this is the machine.
        assert b"Syntax error" not in image and b"registering" in image and b"<svg" in image
