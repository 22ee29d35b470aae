"""The two loaders behind ``load_config`` read every document the same way.

libyaml (``FastBudgetLoader``) parses when it is installed; the pure-Python ``BudgetLoader``
parses otherwise, and reports every error. Both must give the same values and the same line
for every node (problems name lines), so which one ran never shows.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.config.budget import BudgetLoader, FastBudgetLoader, LoadLimits, loaders

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text("abcdefg_-", min_size=1, max_size=6), children, max_size=4)
    ),
    max_leaves=25,
)


def lines(node: yaml.Node) -> list[int]:
    out = [node.start_mark.line]
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += lines(item)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out += lines(key) + lines(value)
    return out


def read(loader_class: Any, text: str) -> tuple[Any, list[int]]:
    loader = loader_class(text, LoadLimits())
    try:
        root = loader.get_single_node()
        return loader.construct_document(root), lines(root)
    finally:
        loader.dispose()


@pytest.mark.skipif(FastBudgetLoader not in loaders("a: 1"), reason="PyYAML without libyaml")
@settings(max_examples=examples(100))
@given(value=values, flow=st.booleans())
def test_both_loaders_read_the_same_values_at_the_same_lines(value: Any, flow: bool) -> None:
    text = yaml.safe_dump({"devices": value}, default_flow_style=flow, allow_unicode=True)
    assert read(FastBudgetLoader, text) == read(BudgetLoader, text)
