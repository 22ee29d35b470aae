"""State diagrams drawn from the transition table, so a picture can never drift from the engine.

Three formats: mermaid (``stateDiagram-v2``, rendered by GitHub and most markdown viewers), dot
source for graphviz, and a markdown table with one line per row of the table. None of them
needs graphviz to be produced; rendering the dot source to an image does.

The pictures are drawn for a person to read at a glance, not as one edge per row:

* the five phases are clusters laid out in order, left to right; the states outside them
  (``backoff``, ``failed``) sit below;
* a trigger legal from every state but its destination (``disconnect``) is drawn once, from an
  "any state" note;
* rows that share a trigger, a destination and a guard (``connection_failed [retries_left]``
  from four states) meet at one junction and carry their label once;
* guards are on the edges (``[retries_left]``, ``[!accepted]``), and each state with a deadline
  names the setting it comes from.

:func:`edge_groups` is that grouping as data: the diagrams draw it, and a test checks that
expanding it gives back exactly the table's rows.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Literal, NamedTuple

from .meaning import Meaning
from .states import INITIAL, STATES, DeviceStatus, Tag, tagged
from .table import guard_label as _guards
from .table import rows
from .trigger import OwnerCommand

Format = Literal["mermaid", "dot", "table"]
FORMATS: tuple[Format, ...] = ("mermaid", "dot", "table")

#: The phases' names, for the clusters (the phase of each state is ``DeviceStatus.phase``).
PHASE_NAMES = {
    1: "1 configuration",
    2: "2 connection",
    3: "3 registration",
    4: "4 telemetry",
    5: "5 activation",
}
#: Where a state outside the five phases is drawn: in the cluster of the phase it belongs to
#: in practice (``busy`` is an activated device at work), or below the phases (``None``).
_DRAWN_WITH = {DeviceStatus.BUSY: 5}


class EdgeGroup(NamedTuple):
    """Rows drawn as one edge: a trigger from ``sources`` to ``dest`` under one guard.

    ``any_state`` marks a trigger legal from every state but its destination.
    """

    trigger: str
    sources: tuple[str, ...]
    dest: str
    conditions: tuple[str, ...]
    unless: tuple[str, ...]
    any_state: bool

    @property
    def label(self) -> str:
        return self.trigger + guard_label(self.conditions, self.unless)


class Cluster(NamedTuple):
    """A box drawn around states: one phase, or a run of consecutive phases."""

    key: str
    label: str
    phases: tuple[int, ...]
    states: tuple[str, ...]


def guard_label(conditions: Iterable[str], unless: Iterable[str]) -> str:
    """`` [a & !b]`` for guards ``a`` and ``unless b``; empty without guards."""
    label = _guards(conditions, unless)
    return f" [{label}]" if label else ""


def state_names() -> list[str]:
    return [state["name"] for state in STATES]


def deadline_of(state: str) -> str | None:
    """The setting a state's deadline comes from, as the table declares it (None: no deadline)."""
    for declared in STATES:
        if declared["name"] == state:
            deadline = declared.get("deadline")
            return str(deadline) if deadline is not None else None
    raise KeyError(state)


def phase_of(state: str) -> int | None:
    status = DeviceStatus(state)
    return status.phase if status.phase is not None else _DRAWN_WITH.get(status)


def edge_groups() -> list[EdgeGroup]:
    """The table's rows grouped by (trigger, dest, guard), in table order."""
    everything = set(state_names())
    grouped: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for row in rows():
        key = (row.trigger.value, row.dest.value, row.conditions, row.unless)
        grouped.setdefault(key, []).append(row.source.value)
    groups = []
    for (name, dest, conditions, unless), sources in grouped.items():
        any_state = len(sources) > 2 and set(sources) == everything - {dest}
        groups.append(EdgeGroup(name, tuple(sources), dest, conditions, unless, any_state))
    return groups


def phase_clusters() -> list[Cluster]:
    """One cluster per phase, in order."""
    states = state_names()
    clusters = []
    for phase, title in PHASE_NAMES.items():
        members = tuple(s for s in states if phase_of(s) == phase)
        if members:
            clusters.append(Cluster(f"phase{phase}", title, (phase,), members))
    return clusters


def span_clusters() -> list[Cluster]:
    """Runs of consecutive phases that some edge group leaves from as a whole.

    ``connection_failed [retries_left]`` leaves every state of phases 2-4: one box around
    those phases carries that edge once. Spans that would cross one another are dropped (boxes
    must nest), and the edge groups concerned are drawn state by state instead.
    """
    phases = {c.phases[0]: c for c in phase_clusters()}
    spans: list[Cluster] = []
    for group in edge_groups():
        covered = sorted({phase_of(s) or 0 for s in group.sources})
        if group.any_state or len(covered) < 2 or 0 in covered:
            continue
        if covered != list(range(covered[0], covered[-1] + 1)):
            continue
        members = tuple(s for p in covered for s in phases[p].states)
        if set(members) != set(group.sources) or any(c.states == members for c in spans):
            continue
        if any(_cross(covered, c.phases) for c in spans):
            continue
        label = _span_label(members, covered)
        spans.append(Cluster(f"span{covered[0]}_{covered[-1]}", label, tuple(covered), members))
    return spans


def _span_label(members: Iterable[str], phases: list[int]) -> str:
    """``attempting (phases 2-4)`` when a declared group of states is exactly the span."""
    span = f"phases {phases[0]}-{phases[-1]}"
    for tag in Tag:
        if {status.value for status in tagged(tag)} == set(members):
            return f"{tag.value} ({span})"
    return span


def _cross(a: Iterable[int], b: Iterable[int]) -> bool:
    first, second = set(a), set(b)
    return bool(first & second) and not (first <= second or second <= first)


def _cluster_for(group: EdgeGroup, clusters: Iterable[Cluster]) -> Cluster | None:
    """The cluster whose states are exactly the group's sources (drawn as one edge from it)."""
    if len(group.sources) < 2:
        return None
    for cluster in clusters:
        if set(cluster.states) == set(group.sources):
            return cluster
    return None


#: Width at which a long deadline label (the backoff's names five settings) is wrapped.
LABEL_WIDTH = 34


def _state_label(state: str, newline: str) -> str:
    deadline = deadline_of(state)
    if not deadline:
        return state
    return newline.join([state, *textwrap.wrap(f"deadline: {deadline}", LABEL_WIDTH)])


class _Edge(NamedTuple):
    """One drawn edge: from a state or a cluster (``tail_cluster``), with its labels."""

    source: str
    dest: str
    labels: tuple[str, ...]
    tail_cluster: Cluster | None


def _drawn_edges() -> tuple[list[_Edge], list[EdgeGroup]]:
    """The edges to draw, and the any-state groups (drawn as notes)."""
    clusters = phase_clusters() + span_clusters()
    edges: dict[tuple[str, str, str], _Edge] = {}
    notes = []
    for group in edge_groups():
        if group.any_state:
            notes.append(group)
            continue
        cluster = _cluster_for(group, clusters)
        ends = (
            [(cluster.key, cluster.states[-1], "cluster")]
            if cluster is not None
            else [(source, source, "state") for source in group.sources]
        )
        for tail, source, kind in ends:
            key = (tail, group.dest, kind)
            if key in edges:  # same two ends: one edge, one label per line
                edge = edges[key]
                edges[key] = edge._replace(labels=(*edge.labels, group.label))
            else:
                edges[key] = _Edge(source, group.dest, (group.label,), cluster)
    return list(edges.values()), notes


# -- dot --------------------------------------------------------------------------------------


def _dot_id(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


_SETTLED_STYLE = {
    DeviceStatus.IDLE.value: "fillcolor=palegreen, peripheries=2",
    DeviceStatus.FAILED.value: "fillcolor=mistyrose, peripheries=2",
    DeviceStatus.BACKOFF.value: "fillcolor=lightyellow",
}
_EDGE_COLOUR = {
    DeviceStatus.FAILED.value: "firebrick",
    DeviceStatus.BACKOFF.value: "darkgoldenrod",
}


def dot() -> str:
    """Graphviz source: phases as clusters in order, failure edges leaving whole clusters."""
    lines = [
        "digraph stellate_lifecycle {",
        "  rankdir=LR;",
        "  compound=true;",
        "  newrank=true;",
        "  nodesep=0.4;",
        '  label="stellate device lifecycle";',
        "  labelloc=t;",
        '  fontname="Helvetica";',
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
        '  __start [shape=point, label=""];',
        f"  __start -> {_dot_id(INITIAL)};",
    ]
    spans = span_clusters()
    depth = 1
    for phase in phase_clusters():
        for span in (s for s in spans if s.phases[0] == phase.phases[0]):
            lines.append("  " * depth + f"subgraph cluster_{span.key} {{")
            lines.append("  " * (depth + 1) + f"label={_dot_id(span.label)}; style=dotted;")
            depth += 1
        lines.append("  " * depth + f"subgraph cluster_{phase.key} {{")
        lines.append("  " * (depth + 1) + f'label={_dot_id(phase.label)}; style="rounded,dashed";')
        lines += ["  " * (depth + 1) + _dot_node(state) for state in phase.states]
        lines.append("  " * depth + "}")
        for _span in (s for s in spans if s.phases[-1] == phase.phases[0]):
            depth -= 1
            lines.append("  " * depth + "}")
    outside = [s for s in state_names() if phase_of(s) is None]
    lines += [f"  {_dot_node(state)}" for state in outside]
    happy = _happy_path()
    edges, notes = _drawn_edges()
    for edge in edges:
        lines.append(_dot_edge(edge, happy))
    for number, group in enumerate(notes):
        note = f"__any{number}"
        lines.append(
            f"  {note} [shape=note, style=filled, fillcolor=whitesmoke, "
            f'label="from any state", fontsize=10];'
        )
        lines.append(
            f"  {note} -> {_dot_id(group.dest)} [label={_dot_id(group.label)}, style=dashed];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(state: str) -> str:
    label = _dot_id(_state_label(state, "\n"))
    attributes = [f"label={label}"]
    if state in _SETTLED_STYLE:
        attributes.append(_SETTLED_STYLE[state])
    return f"{_dot_id(state)} [{', '.join(attributes)}];"


def _dot_edge(edge: _Edge, happy: set[tuple[str, str]]) -> str:
    label = _dot_id("\n".join(edge.labels))
    attributes = [f"label={label}"]
    if edge.tail_cluster is not None:
        attributes.append(f"ltail=cluster_{edge.tail_cluster.key}")
    if (edge.source, edge.dest) in happy:
        attributes.append("penwidth=2, weight=10")
    colour = _EDGE_COLOUR.get(edge.dest)
    if colour is not None:
        attributes.append(f"color={colour}, fontcolor={colour}")
    return f"  {_dot_id(edge.source)} -> {_dot_id(edge.dest)} [{', '.join(attributes)}];"


def _happy_path() -> set[tuple[str, str]]:
    """The (source, dest) steps of a registration that goes right: drawn bold and straight.

    From the initial state, follow the first row that needs no failed guard and moves forward
    (to a state of the same or a later phase not yet visited), until ``idle``.
    """
    steps: set[tuple[str, str]] = set()
    visited = {INITIAL}
    state = INITIAL
    while state != DeviceStatus.IDLE.value:
        forward = [
            row.dest.value
            for row in rows()
            if row.source == state
            and not row.unless
            and row.dest not in visited
            and (phase_of(row.dest) or 0) >= (phase_of(row.source) or 0) > 0
        ]
        if not forward:
            break
        steps.add((state, forward[0]))
        visited.add(forward[0])
        state = forward[0]
    return steps


# -- mermaid ----------------------------------------------------------------------------------


#: What would end a mermaid label early: in quotes, a quote; unquoted (an edge's label), also a
#: colon, a semicolon or a '#' (an entity).
_MERMAID_UNSAFE = {True: frozenset('"'), False: frozenset(':;#"{}')}


def _mermaid_text(text: str, *, quoted: bool = False) -> str:
    """``text`` if mermaid can carry it there (the table's names are identifiers: they can).

    Raises:
        ValueError: it cannot.
    """
    if _MERMAID_UNSAFE[quoted] & set(text):
        raise ValueError(f"cannot write {text!r} in a mermaid label")
    return text


def _mermaid_composite(depth: int, cluster: Cluster) -> str:
    """The opening line of a composite state drawn around a cluster's states."""
    return "  " * depth + f'state "{_mermaid_text(cluster.label, quoted=True)}" as {cluster.key} {{'


def mermaid() -> str:
    """``stateDiagram-v2`` text: phases as composite states in order, failure edges from them."""
    lines = [
        "---",
        "title: stellate device lifecycle",
        "---",
        "stateDiagram-v2",
        "  direction LR",
    ]
    for state in state_names():
        label = _mermaid_text(_state_label(state, "<br/>"), quoted=True)
        lines.append(f'  state "{label}" as {state}')
    lines.append(f"  [*] --> {INITIAL}")
    spans = span_clusters()
    depth = 1
    for phase in phase_clusters():
        for span in (s for s in spans if s.phases[0] == phase.phases[0]):
            lines.append(
                "  " * depth + f'state "{_mermaid_text(span.label, quoted=True)}" as {span.key} {{'
            )
            depth += 1
        lines.append(
            "  " * depth + f'state "{_mermaid_text(phase.label, quoted=True)}" as {phase.key} {{'
        )
        lines += ["  " * (depth + 1) + state for state in phase.states]
        lines.append("  " * depth + "}")
        for _span in (s for s in spans if s.phases[-1] == phase.phases[0]):
            depth -= 1
            lines.append("  " * depth + "}")
    edges, notes = _drawn_edges()
    for edge in edges:
        source = edge.tail_cluster.key if edge.tail_cluster is not None else edge.source
        label = _mermaid_text(" / ".join(edge.labels))
        lines.append(f"  {source} --> {edge.dest}: {label}")
    for group in notes:
        lines.append(f"  note left of {group.dest}: {_mermaid_text(group.label)} from any state")
    styled = [s for s in (DeviceStatus.IDLE.value, DeviceStatus.FAILED.value) if s in state_names()]
    if DeviceStatus.IDLE.value in styled:
        lines.append("  classDef ready fill:#d4f7d4,stroke:#2e7d32")
        lines.append(f"  class {DeviceStatus.IDLE.value} ready")
    if DeviceStatus.FAILED.value in styled:
        lines.append("  classDef gave_up fill:#fde0dc,stroke:#c62828")
        lines.append(f"  class {DeviceStatus.FAILED.value} gave_up")
    return "\n".join(lines) + "\n"


# -- table ------------------------------------------------------------------------------------


def table() -> str:
    """One markdown line per row of the transition table (with what it means and the owner's
    commands it serves), then each state's deadline."""
    lines = [
        "| # | trigger | source | dest | guard | meaning | serves |",
        "|---|---|---|---|---|---|---|",
    ]
    for number, row in enumerate(rows(), start=1):
        meaning = ", ".join(m.value for m in Meaning if m in row.meanings) or "—"
        serves = ", ".join(c.value for c in OwnerCommand if c in row.serves) or "—"
        lines.append(
            f"| {number} | `{row.trigger}` | {row.source} | {row.dest} | {row.guard or '—'} "
            f"| {meaning} | {serves} |"
        )
    deadlines = [(state, deadline_of(state)) for state in state_names()]
    if any(deadline for _state, deadline in deadlines):
        lines += ["", "| state | deadline (setting) |", "|---|---|"]
        lines += [f"| {state} | {deadline or '—'} |" for state, deadline in deadlines]
    return "\n".join(lines) + "\n"


def render(fmt: Format) -> str:
    if fmt == "mermaid":
        return mermaid()
    if fmt == "dot":
        return dot()
    if fmt == "table":
        return table()
    raise ValueError(f"unknown diagram format {fmt!r}; choose one of {', '.join(FORMATS)}")
