"""Docs and comments point at things that exist, in words the project defines.

Every relative link of the markdown pages and every ``docs/...`` file named in a comment, a
docstring or a page must exist in the repository; "the seed" (the name the project's brief gave
Galaxy's registration-flow document, which the repository does not ship) is not used: the
project's own account is docs/registration-flow.md.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "README.md",
    ROOT / "Makefile",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").glob("*")),
    *sorted((ROOT / "stellate").rglob("*.py")),
    *sorted((ROOT / "tests").rglob("*.py")),
    *sorted((ROOT / "config").rglob("*.yaml")),
]
_LINK = re.compile(r"\]\((?!https?://|#)([^)\s#]+)")
_DOCS_PATH = re.compile(r"\b(docs/[\w./-]+\.(?:md|svg|png))")
_UNDEFINED = re.compile(r"\bthe seed\b|\bseed's\b", re.IGNORECASE)
THIS = Path(__file__).resolve()


def texts() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in SOURCES if p.is_file() and p != THIS]


def test_markdown_links_resolve() -> None:
    broken = [
        f"{path.relative_to(ROOT)}: ({target})"
        for path, text in texts()
        if path.suffix == ".md"
        for target in _LINK.findall(text)
        if not (path.parent / target).exists()
    ]
    assert broken == []


def test_docs_files_named_anywhere_exist() -> None:
    missing = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, text in texts()
        for name in _DOCS_PATH.findall(text)
        if not (ROOT / name).exists()
    ]
    assert missing == []


def test_no_undefined_seed() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path, text in texts()
        for number, line in enumerate(text.splitlines(), start=1)
        if _UNDEFINED.search(line)
    ]
    assert found == []


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    assert _LINK.findall("see [x](docs/x.md) and [y](https://e.org/y.md)") == ["docs/x.md"]
    assert _DOCS_PATH.findall("``docs/SECURITY.md`` has it") == ["docs/SECURITY.md"]
    assert _UNDEFINED.search("the seed's rule") and not _UNDEFINED.search("seed the jitter")
