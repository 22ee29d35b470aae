"""What a config file may cost to read: bytes, nesting and alias expansion, each bounded.

A YAML file can cost far more than it weighs. Ten levels of aliases under ``metadata:`` (the
"billion laughs") are 500 bytes that expand to 10^10 values; 500 levels of ``[[[...]]]`` exhaust
Python's recursion; a FIFO or ``/dev/zero`` given as the config path never ends. Whatever reads
the values afterwards (validation, ``copy.deepcopy``, ``json.dumps`` for ``--json``, the
registration frames) pays for the expansion, not for the file. So the loader budgets the file
before it builds any value:

* **size**: a regular file of at most :attr:`LoadLimits.max_bytes` (4 MiB; a 10,000-device
  fleet is about 2 MB), read with a bound, opened without blocking (a FIFO is refused, not
  waited on);
* **depth**: at most :attr:`LoadLimits.max_depth` (64) nested mappings and lists, checked
  while the node tree is composed (before the parser's own recursion can fail) and again
  with aliases followed (an alias to a deep node placed deep inside another);
* **expansion**: at most :attr:`LoadLimits.max_nodes` (1,000,000) nodes once every alias and
  ``<<`` merge is expanded, counted on the composed graph with each shared node counted once
  per use but walked once (so the count itself costs the file's size, not its expansion);
  a node that contains itself (a recursive alias) is refused too.

Each breach is one problem ``FILE:LINE: field: message`` at the node that breaks the budget.
``STELLATE_MAX_CONFIG_BYTES`` raises the size limit for a bigger fleet.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

import attrs
import yaml
import yaml.composer
import yaml.reader
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

try:
    from yaml._yaml import CParser

    _WITH_LIBYAML = True
except ImportError:  # PyYAML built without libyaml: the pure loader does it all
    CParser = type("CParser", (), {})  # type: ignore[misc,assignment]  # a stand-in base
    _WITH_LIBYAML = False

from ..errors import FieldPath, LocalError, format_path

__all__ = [
    "MAX_BYTES_ENV",
    "BudgetLoader",
    "FastBudgetLoader",
    "LoadLimits",
    "OverBudget",
    "graph_problem",
    "loaders",
    "read",
]

#: Environment variable overriding :attr:`LoadLimits.max_bytes` (an integer, in bytes).
MAX_BYTES_ENV = "STELLATE_MAX_CONFIG_BYTES"


@attrs.frozen
class LoadLimits:
    """The budget of one config file."""

    #: Largest file read, in bytes.
    max_bytes: int = 4 * 1024 * 1024
    #: Deepest nesting of mappings and lists, aliases followed.
    max_depth: int = 64
    #: Most nodes (scalars, mappings, lists) once aliases and merges are expanded.
    max_nodes: int = 1_000_000

    @classmethod
    def from_env(cls) -> LoadLimits:
        """The defaults, with ``max_bytes`` from ``$STELLATE_MAX_CONFIG_BYTES`` when set.

        Raises:
            ValueError: the variable is set to something other than a positive integer.
        """
        value = os.environ.get(MAX_BYTES_ENV, "").strip()
        if not value:
            return cls()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{MAX_BYTES_ENV} must be a positive number of bytes, got {value!r}")
        return cls(max_bytes=int(value))


class OverBudget(LocalError):
    """A file breaks its budget at ``line`` (1-based; 0: the file as a whole), ``path``."""

    def __init__(self, line: int, path: FieldPath, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message

    @property
    def field(self) -> str:
        return format_path(self.path)


def read(source: str, limits: LoadLimits) -> bytes:
    """The bytes of the regular file ``source``, at most ``limits.max_bytes`` of them.

    Raises:
        OverBudget: the file is larger than the limit, or not a regular file.
        OSError: the file cannot be opened or read (FileNotFoundError and the like).
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise OverBudget(0, (), "is a directory, not a YAML file")
        if not stat.S_ISREG(mode):
            raise OverBudget(0, (), f"is not a regular file ({_kind(mode)}); refusing to read it")
        data = file.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise OverBudget(
            0,
            (),
            f"is larger than {limits.max_bytes:,} bytes (the limit; set {MAX_BYTES_ENV} to "
            "raise it)",
        )
    return data


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a plain file"


class _DepthBudget(yaml.composer.Composer):
    """Refuses nesting deeper than ``limits.max_depth`` as the node tree is composed.

    PyYAML composes recursively (a few Python frames per level), so a deep enough document
    fails with a ``RecursionError`` before any check could run on the tree: the depth is
    counted on the way down instead, and the path followed so far names the place.
    """

    _limits: LoadLimits
    _depth: int
    _path: list[str | int]

    if TYPE_CHECKING:  # the parser half of a loader provides them

        def check_event(self, *choices: Any) -> bool: ...

        def peek_event(self) -> Any: ...

    def _start_budget(self, limits: LoadLimits) -> None:
        self._limits = limits
        self._depth = 0
        self._path = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        nests = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        if nests and self._depth >= self._limits.max_depth:
            mark = self.peek_event().start_mark
            raise OverBudget(
                int(mark.line) + 1,
                tuple(self._path[1:]),  # [0] is the document's own part, not a field
                f"nested deeper than {self._limits.max_depth} levels (the limit)",
            )
        self._path.append(_part(index))
        self._depth += nests
        try:
            return yaml.composer.Composer.compose_node(self, parent, index)
        finally:
            self._depth -= nests
            self._path.pop()


class BudgetLoader(_DepthBudget, yaml.SafeLoader):
    """PyYAML's safe loader (pure Python), with the depth budget."""

    def __init__(self, stream: str, limits: LoadLimits) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._start_budget(limits)


class FastBudgetLoader(_DepthBudget, CParser, SafeConstructor, Resolver):
    """libyaml scans and parses (C, several times faster), the budgeted composer composes.

    Only for text the pure reader accepts, and only for documents that are valid: any error
    is reported by :class:`BudgetLoader` parsing again, so messages do not depend on whether
    libyaml is installed.
    """

    def __init__(self, stream: str, limits: LoadLimits) -> None:
        CParser.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._start_budget(limits)


def loaders(text: str) -> list[type[BudgetLoader] | type[FastBudgetLoader]]:
    """The loaders to try on ``text``, in order: the fast one when it can be used."""
    fast = _WITH_LIBYAML and not yaml.reader.Reader.NON_PRINTABLE.search(text)
    return [FastBudgetLoader, BudgetLoader] if fast else [BudgetLoader]


def _part(index: Any) -> str | int:
    if isinstance(index, int):
        return index
    if isinstance(index, yaml.ScalarNode):
        return str(index.value)
    return "<key>"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    """A node's children with the path part leading to each (keys included, as ``<key>``)."""
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[str | int, yaml.Node]] = []
        for key, value in node.value:
            out.append(("<key>", key))
            out.append((_part(key), value))
        return out
    return []


def graph_problem(root: yaml.Node, limits: LoadLimits) -> OverBudget | None:
    """The first place where the composed document, aliases followed, breaks the budget.

    One iterative depth-first walk over the node *graph* (an alias is the very node it names),
    each node expanded once: its expanded size and depth are computed from its children's and
    memoized, so the walk costs the file's size however much the aliases multiply it.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_stack: set[int] = set()
    cap = limits.max_nodes + 1
    # (node, path, children-pending?) frames; a node's path is the first one that reached it.
    stack: list[tuple[yaml.Node, FieldPath, bool]] = [(root, (), True)]
    while stack:
        node, path, entering = stack.pop()
        key = id(node)
        if entering:
            if key in size:
                continue
            if key in on_stack:
                return OverBudget(_line(node), path, "refers to itself (a recursive YAML alias)")
            on_stack.add(key)
            stack.append((node, path, False))
            for part, child in reversed(_children(node)):
                if id(child) in on_stack:
                    return OverBudget(
                        _line(child), (*path, part), "refers to itself (a recursive YAML alias)"
                    )
                if id(child) not in size:
                    stack.append((child, (*path, part), True))
            continue
        on_stack.discard(key)
        children = [child for _, child in _children(node)]
        total = min(cap, 1 + sum(size[id(child)] for child in children))
        nested = isinstance(node, yaml.CollectionNode)
        levels = nested + max((depth[id(child)] for child in children), default=0)
        size[key], depth[key] = total, levels
        if total > limits.max_nodes:
            return OverBudget(
                _line(node),
                path,
                f"expands to more than {limits.max_nodes:,} values once its YAML aliases are "
                "followed (the limit: an alias repeats what it names)",
            )
        if levels > limits.max_depth:
            return OverBudget(
                _line(node),
                path,
                f"nested deeper than {limits.max_depth} levels once its YAML aliases are "
                "followed (the limit)",
            )
    return None
