"""Map a field path to a line of the YAML file, and find keys written twice.

``yaml.compose`` keeps a start mark on every node, so a path such as ``devices[1].max_retries``
can be followed key by key and index by index to the node it names. When the path runs out of
nodes (a missing key), the deepest node reached is the best line to show.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import yaml

from ..errors import FieldPath

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key, value) nodes for ``part``; for a mapping, the last one wins, as in PyYAML."""
    if isinstance(node, yaml.MappingNode):
        found = None
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                found = (key, value)
        return found
    in_range = isinstance(part, int) and 0 <= part < len(node.value)
    if isinstance(node, yaml.SequenceNode) and in_range:
        item: yaml.Node = node.value[part]
        return item, item
    return None


def locate(root: yaml.Node, path: FieldPath, *, at_key: bool = False) -> int:
    """The 1-based line of the node at ``path`` (its key's line when ``at_key``)."""
    node = root
    for depth, part in enumerate(path):
        pair = _child(node, part)
        if pair is None:
            break
        key, node = pair
        if at_key and depth == len(path) - 1:
            return _line(key)
    return _line(node)


@attrs.frozen
class DuplicateKey:
    path: FieldPath
    line: int
    first_line: int


def duplicate_keys(root: yaml.Node) -> Iterator[DuplicateKey]:
    """Keys repeated in one mapping. PyYAML keeps the last silently; a config must not."""
    seen: set[int] = set()

    def walk(node: yaml.Node, path: FieldPath) -> Iterator[DuplicateKey]:
        if id(node) in seen:  # an alias: already walked where its anchor was defined
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                    yield from walk(value, path)
                    continue
                if key.value in first:
                    yield DuplicateKey((*path, key.value), _line(key), first[key.value])
                else:
                    first[key.value] = _line(key)
                yield from walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                yield from walk(item, (*path, index))

    yield from walk(root, ())
