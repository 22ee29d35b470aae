"""Diagrams are drawn from the table: every state and every row appears, in each format."""

from __future__ import annotations

import re

import pytest

from stellate.cli import main
from stellate.fsm import DeviceStatus
from stellate.fsm.diagram import FORMATS, dot, mermaid, render, table
from stellate.fsm.table import rows

EDGE = re.compile(r'^\s*"(?P<src>[^"]+)" -> "(?P<dst>[^"]+)" \[label="(?P<label>[^"]*)"\];$')
NODE = re.compile(r'^\s*"(?P<name>[^"]+)" \[label="(?P=name)"(, peripheries=2)?\];$')


def test_mermaid_names_every_state() -> None:
    text = mermaid()
    assert "stateDiagram-v2" in text
    for status in DeviceStatus:
        assert status.value in text
    for trigger in {row[0] for row in rows()}:
        assert trigger in text


def test_dot_is_a_digraph_with_one_edge_per_row() -> None:
    lines = dot().splitlines()
    assert re.fullmatch(r"digraph \w+ \{", lines[0]) and lines[-1] == "}"
    body = lines[1:-1]
    edges, nodes = [], []
    for line in body:
        if m := EDGE.match(line):
            edges.append((m["label"].split(" ")[0], m["src"], m["dst"]))
        elif m := NODE.match(line):
            nodes.append(m["name"])
        else:
            assert line.strip() in {
                "rankdir=LR;",
                'node [shape=box, style="rounded"];',
                '__start [shape=point, label=""];',
                '__start -> "disconnected";',
            }, line
    assert sorted(nodes) == sorted(s.value for s in DeviceStatus)
    assert sorted(edges) == sorted((t, s, d) for t, s, d, _c, _u in rows())
    assert len(edges) == len(rows())


def test_dot_labels_show_guards() -> None:
    text = dot()
    assert 'label="connection_failed [retries_left]"' in text
    assert 'label="connection_failed [!retries_left]"' in text
    assert 'label="registration_answered [!accepted]"' in text


def test_table_has_one_line_per_row() -> None:
    lines = [line for line in table().splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(lines) == len(rows())
    for number, (line, row) in enumerate(zip(lines, rows(), strict=True), start=1):
        trigger, source, dest, _c, _u = row
        assert line.startswith(f"| {number} | `{trigger}` | {source} | {dest} |")


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
