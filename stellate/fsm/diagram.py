"""State diagrams drawn from the transition table, so a picture can never drift from the engine.

mermaid comes from transitions' own mermaid engine (no graphviz needed); dot source and the
markdown table are written from ``table.rows()`` directly, so neither needs a graphviz package.
"""

from __future__ import annotations

from typing import Literal

from .table import INITIAL, STATES, TRANSITIONS, rows

Format = Literal["mermaid", "dot", "table"]
FORMATS: tuple[Format, ...] = ("mermaid", "dot", "table")


def _guard_label(conditions: tuple[str, ...], unless: tuple[str, ...]) -> str:
    parts = [*conditions, *(f"!{name}" for name in unless)]
    return f" [{' & '.join(parts)}]" if parts else ""


def mermaid() -> str:
    """``stateDiagram-v2`` text via ``transitions``' mermaid graph engine."""
    from transitions.extensions.diagrams import GraphMachine

    machine = GraphMachine(
        states=[s["name"] for s in STATES],
        transitions=[
            {
                k: v
                for k, v in t.items()
                if k in ("trigger", "source", "dest", "conditions", "unless")
            }
            for t in TRANSITIONS
        ],
        initial=INITIAL,
        auto_transitions=False,
        graph_engine="mermaid",
        show_conditions=True,
        title="stellate device lifecycle",
    )
    graph = machine.get_graph()
    source: str = graph.draw(None)
    return source


def dot() -> str:
    lines = [
        "digraph stellate_lifecycle {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded"];',
        '  __start [shape=point, label=""];',
        f'  __start -> "{INITIAL}";',
    ]
    for state in STATES:
        shape = ", peripheries=2" if state["name"] in ("idle", "failed") else ""
        lines.append(f'  "{state["name"]}" [label="{state["name"]}"{shape}];')
    for trigger, source, dest, conditions, unless in rows():
        label = trigger + _guard_label(conditions, unless)
        lines.append(f'  "{source}" -> "{dest}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def table() -> str:
    lines = [
        "| # | trigger | source | dest | guard |",
        "|---|---|---|---|---|",
    ]
    for number, (trigger, source, dest, conditions, unless) in enumerate(rows(), start=1):
        guard = _guard_label(conditions, unless).strip(" []") or "—"
        lines.append(f"| {number} | `{trigger}` | {source} | {dest} | {guard} |")
    return "\n".join(lines) + "\n"


def render(fmt: Format) -> str:
    if fmt == "mermaid":
        return mermaid()
    if fmt == "dot":
        return dot()
    if fmt == "table":
        return table()
    raise ValueError(f"unknown diagram format {fmt!r}; choose one of {', '.join(FORMATS)}")
