"""The parts of the docs generated from the code, and how to regenerate them (``make docs``).

* ``docs/registration-flow.md`` carries the state machine as mermaid source and as a table,
  each between ``<!-- generated: stellate diagram --format F (make docs) -->`` and
  ``<!-- end generated -->``.
* ``docs/img/lifecycle.svg`` is the dot diagram rendered by graphviz, stamped with the SHA-256
  of the dot source it was drawn from, so a test can tell it is stale without graphviz.

Run as a script to rewrite them: ``python tests/docs/generated_docs.py``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

from stellate.fsm.diagram import render

ROOT = Path(__file__).resolve().parents[2]
FLOW_DOC = ROOT / "docs" / "registration-flow.md"
SVG = ROOT / "docs" / "img" / "lifecycle.svg"
_BLOCK = re.compile(
    r"(<!-- generated: stellate diagram --format (?P<fmt>\w+) \(make docs\) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end generated -->)",
    re.DOTALL,
)
_STAMP = re.compile(
    r"<!-- drawn from stellate diagram --format dot, sha256 (?P<sha>[0-9a-f]{64}) -->"
)


def block_body(fmt: str) -> str:
    text = render(fmt)  # type: ignore[arg-type]
    return f"```mermaid\n{text}```\n" if fmt == "mermaid" else text


def with_generated_blocks(text: str) -> str:
    """``text`` with every generated block replaced by what the code renders now."""
    return _BLOCK.sub(lambda m: m.group(1) + block_body(m["fmt"]) + m.group(4), text)


def generated_formats(text: str) -> list[str]:
    return [m["fmt"] for m in _BLOCK.finditer(text)]


def dot_sha256() -> str:
    return hashlib.sha256(render("dot").encode("utf-8")).hexdigest()


def svg_stamp(svg: str) -> str | None:
    match = _STAMP.search(svg)
    return match["sha"] if match else None


def render_dot(fmt: str) -> bytes:
    """The dot diagram rendered by graphviz (``fmt``: svg or png).

    Raises:
        FileNotFoundError: graphviz's ``dot`` is not installed.
        subprocess.CalledProcessError: ``dot`` rejected the source.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise FileNotFoundError("graphviz's dot is not installed (apt-get install graphviz)")
    result = subprocess.run(
        [dot, f"-T{fmt}"], input=render("dot").encode("utf-8"), capture_output=True, check=True
    )
    return result.stdout


def stamped_svg() -> str:
    svg = render_dot("svg").decode("utf-8")
    stamp = f"<!-- drawn from stellate diagram --format dot, sha256 {dot_sha256()} -->\n"
    head, sep, rest = svg.partition("<svg")
    return head + stamp + sep + rest


def main() -> int:
    FLOW_DOC.write_text(with_generated_blocks(FLOW_DOC.read_text(encoding="utf-8")), "utf-8")
    try:
        SVG.write_text(stamped_svg(), encoding="utf-8")
    except FileNotFoundError as exc:
        print(f"{SVG.relative_to(ROOT)} not redrawn: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {FLOW_DOC.relative_to(ROOT)} and {SVG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
