"""Rows, targets and the printed table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Row:
    """One line of the table: a figure, its target (if any), what was measured, the verdict."""

    figure: str
    metric: str
    measured: str
    target: str = ""
    ok: bool | None = None  # None: no target (informative)
    value: float | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return ""
        return "pass" if self.ok else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": self.verdict}


def table(rows: list[Row]) -> str:
    headers = ("#", "metric", "target", "measured", "verdict")
    cells = [(r.figure, r.metric, r.target, r.measured, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    previous = None
    for c in cells:
        shown = list(c)
        if c[0] == previous:
            shown[0] = ""
        previous = c[0]
        out.append("  ".join(s.ljust(w) for s, w in zip(shown, widths, strict=True)).rstrip())
    notes = [f"  [{r.figure} {r.metric}] {r.note}" for r in rows if r.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def grid(headers: list[str], lines: list[list[str]]) -> str:
    """A plain table: one header line, a rule, one line per row (markdown-compatible)."""
    widths = [max([len(h), *(len(line[i]) for line in lines)]) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]
