"""Diagrams are drawn from the table, and drawn to be read.

Every row appears in every format (grouped edges expand back to exactly the table's rows); the
phases come in order; an any-state trigger is drawn once; guards are on the edges; a state's
deadline is named on it; mermaid ends with a newline and defines only the classes it uses.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from stellate.cli import main
from stellate.fsm import DeviceStatus, diagram
from stellate.fsm.diagram import (
    FORMATS,
    dot,
    edge_groups,
    guard_label,
    mermaid,
    phase_clusters,
    render,
    span_clusters,
    table,
)
from stellate.fsm.states import BACKOFF_DEADLINE, CONNECT_DEADLINE, INITIAL, STATES
from stellate.fsm.table import rows

DOT_EDGE = re.compile(
    r'^\s*"(?P<src>[^"]+)" -> "(?P<dst>[^"]+)" \[label="(?P<label>[^"]*)"(?P<rest>.*)\];$'
)
MERMAID_EDGE = re.compile(r"^\s*(?P<src>\w+) --> (?P<dst>\w+): (?P<label>.+)$")


def expand_dot_edges(text: str) -> Counter[tuple[str, str, str]]:
    """(trigger+guard, source, dest) for every row a dot edge stands for."""
    clusters = {c.key: c.states for c in phase_clusters() + span_clusters()}
    drawn: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        match = DOT_EDGE.match(line)
        if not match or match["src"].startswith("__"):
            continue
        tail = re.search(r"ltail=cluster_(\w+)", match["rest"])
        sources = clusters[tail.group(1)] if tail else (match["src"],)
        for label in match["label"].split("\\n"):
            for source in sources:
                drawn[(label, source, match["dst"])] += 1
    return drawn


def table_rows() -> Counter[tuple[str, str, str]]:
    return Counter(
        (r.trigger + guard_label(r.conditions, r.unless), r.source.value, r.dest.value)
        for r in rows()
    )


def any_state_rows() -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for group in edge_groups():
        if group.any_state:
            out.update((group.label, source, group.dest) for source in group.sources)
    return out


def test_edge_groups_expand_to_exactly_the_rows() -> None:
    expanded = Counter((g.label, source, g.dest) for g in edge_groups() for source in g.sources)
    assert expanded == table_rows()


def test_disconnect_and_internal_error_are_any_state_groups() -> None:
    (group,) = [g for g in edge_groups() if g.trigger == "disconnect"]
    assert group.any_state and group.dest == "disconnected"
    (bug,) = [g for g in edge_groups() if g.trigger == "internal_error"]
    assert bug.any_state and bug.dest == "failed"
    assert {g.trigger for g in edge_groups() if g.any_state} == {"disconnect", "internal_error"}


def test_dot_edges_stand_for_every_row_once() -> None:
    text = dot()
    assert expand_dot_edges(text) + any_state_rows() == table_rows()


def test_dot_draws_disconnect_once_and_phases_in_order() -> None:
    text = dot()
    assert text.count('label="disconnect"') == 1
    clusters = re.findall(r"subgraph cluster_phase(\d)", text)
    assert clusters == ["1", "2", "3", "4", "5"]
    assert f'__start -> "{INITIAL}";' in text


def test_dot_groups_the_failure_edges_of_phases_2_to_4() -> None:
    text = dot()
    # connection_failed from the four attempting states: one edge each way, from the cluster.
    assert text.count("connection_failed [retries_left & !recovering]") == 1
    assert text.count("connection_failed [!recovering & !retries_left]") == 1
    assert text.count("connection_failed [recovering & window_open]") == 1
    assert "ltail=cluster_span2_4" in text
    edges = [line for line in text.splitlines() if DOT_EDGE.match(line)]
    assert len(edges) < len(rows())  # grouped: fewer edges than rows


def test_dot_shows_guards() -> None:
    text = dot()
    assert "registration_answered [!accepted & !transient_rejection]" in text
    assert 'label="registration_answered [accepted]"' in text
    assert "connection_failed [!stable]" in text and "connection_failed [stable]" in text


def test_mermaid_edges_stand_for_every_row_once() -> None:
    text = mermaid()
    clusters = {c.key: c.states for c in phase_clusters() + span_clusters()}
    drawn: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        match = MERMAID_EDGE.match(line)
        if not match:
            continue
        sources = clusters.get(match["src"], (match["src"],))
        for label in match["label"].split(" / "):
            drawn.update((label, source, match["dst"]) for source in sources)
    assert drawn + any_state_rows() == table_rows()


def test_mermaid_is_tidy() -> None:
    text = mermaid()
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "stateDiagram-v2" in text and f"[*] --> {INITIAL}" in text
    assert text.count("disconnect from any state") == 1
    assert " --> disconnected: disconnect" not in text
    defined = set(re.findall(r"^\s*classDef (\w+)", text, re.MULTILINE))
    used = {
        name
        for names in re.findall(r"^\s*class [\w,]+ (\w+)", text, re.MULTILINE)
        for name in [names]
    }
    assert defined == used  # no unused class
    styled = dict(re.findall(r"^\s*class (\w+) (\w+)", text, re.MULTILINE))
    assert INITIAL not in styled  # the initial state is not coloured as anything
    assert styled == {"idle": "ready", "failed": "gave_up"}
    for state in (s["name"] for s in STATES):
        assert f"as {state}" in text
    positions = [text.index(f"as phase{n} {{") for n in range(1, 6)]
    assert positions == sorted(positions)


def test_a_declared_deadline_is_drawn_on_its_state(monkeypatch: pytest.MonkeyPatch) -> None:
    states: list[dict[str, Any]] = [dict(s) for s in STATES]
    for state in states:
        if state["name"] == DeviceStatus.CONNECTING.value:
            state["deadline"] = "connect_timeout"
    monkeypatch.setattr(diagram, "STATES", states)
    assert '"connecting" [label="connecting\\ndeadline: connect_timeout"' in dot()
    assert 'state "connecting<br/>deadline: connect_timeout" as connecting' in mermaid()
    assert "| connecting | connect_timeout |" in table()


def test_the_table_names_each_state_s_deadline_or_none() -> None:
    text = table()
    declared = [s for s in STATES if s.get("deadline")]
    if declared:
        for state in declared:
            assert f"| {state['name']} | {state['deadline']} |" in text
    else:
        assert "deadline" not in text


def test_mermaid_refuses_a_label_it_cannot_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    states: list[dict[str, Any]] = [dict(s) for s in STATES]
    states[0]["deadline"] = 'a "b"'
    monkeypatch.setattr(diagram, "STATES", states)
    with pytest.raises(ValueError, match="mermaid label"):
        mermaid()


def test_table_has_one_line_per_row() -> None:
    lines = [line for line in table().splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(lines) == len(rows())
    for number, (line, row) in enumerate(zip(lines, rows(), strict=True), start=1):
        trigger, source, dest = row.step
        assert line.startswith(f"| {number} | `{trigger}` | {source} | {dest} |")


def test_spans_never_cross() -> None:
    spans = span_clusters()
    for a in spans:
        for b in spans:
            shared = set(a.phases) & set(b.phases)
            assert not shared or set(a.phases) <= set(b.phases) or set(b.phases) <= set(a.phases)


def test_render_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown diagram format"):
        render("svg")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_diagram(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagram", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert out == render(fmt)  # type: ignore[arg-type]
    for status in DeviceStatus:
        assert status.value in out


def test_a_deadline_is_labelled_by_its_setting_or_as_drawn_from_all_of_them() -> None:
    assert CONNECT_DEADLINE.label == "connect_timeout"
    assert BACKOFF_DEADLINE.label == (
        "backoff drawn from reconnect_delay, backoff_cap, jitter_floor, rejoin_delay, "
        "recovery_window"
    )
