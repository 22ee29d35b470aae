"""Nothing outside stellate/fsm/ decides a device's status.

The scan flags, in every ``stellate/**/*.py`` outside ``fsm/``:
  * assignments to ``<anything but self>.status`` (someone else's status),
  * ``self.status = <expr mentioning DeviceStatus>`` (a class minting device statuses),
  * ``setattr(x, "status", …)`` / ``object.__setattr__(x, "status", …)``,
  * ``evolve(…, status=…)`` (``attrs.evolve``/``attr.evolve``/``evolve``) unless the value is
    a member of a known non-device enum (e.g. ``TaskStatus.OK`` on an AIP message).
A class's own ``self.status = status`` (e.g. an HTTP status on an exception) is not flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stellate
from stellate.fsm import DeviceStatus

PACKAGE = Path(stellate.__file__).parent
#: Enums whose members may be passed as ``status=`` (they are not device statuses).
OTHER_STATUS_ENUMS = {"TaskStatus"}


def _mentions_device_status(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name | ast.Attribute) and "DeviceStatus" in ast.unparse(n)
               for n in ast.walk(node))  # fmt: skip


def _is_other_enum_member(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in OTHER_STATUS_ENUMS
    )


def status_writes(source: str, filename: str = "<src>") -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets, value = [node.target], node.value
        for target in targets:
            for t in ast.walk(target):
                if not (isinstance(t, ast.Attribute) and t.attr == "status"):
                    continue
                own = isinstance(t.value, ast.Name) and t.value.id == "self"
                if not own or (value is not None and _mentions_device_status(value)):
                    found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            sets_status = any(
                isinstance(a, ast.Constant) and a.value == "status" for a in node.args
            )
            if name.endswith(("setattr", "__setattr__")) and sets_status:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
            if name in ("evolve", "attrs.evolve", "attr.evolve"):
                for kw in node.keywords:
                    if kw.arg == "status" and not _is_other_enum_member(kw.value):
                        found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_status_writes_outside_fsm() -> None:
    offenders: list[str] = []
    files = sorted(p for p in PACKAGE.rglob("*.py") if "fsm" not in p.relative_to(PACKAGE).parts)
    assert files, "scan found nothing to read"
    for path in files:
        rel = str(path.relative_to(PACKAGE.parent))
        offenders += status_writes(path.read_text(encoding="utf-8"), rel)
    assert offenders == [], "status must only change through the FSM:\n" + "\n".join(offenders)


def test_scanner_flags_status_writes() -> None:
    bad = """
import attrs
from stellate.fsm import DeviceStatus
profile.status = DeviceStatus.IDLE
lifecycle.status = "idle"
device.profile.status = s
self.status = DeviceStatus.BUSY
setattr(profile, "status", s)
object.__setattr__(profile, "status", s)
p = attrs.evolve(profile, status=DeviceStatus.FAILED)
q = evolve(profile, status=new)
"""
    assert len(status_writes(bad)) == 8


def test_scanner_allows_other_statuses() -> None:
    fine = """
class HandshakeRefused(Exception):
    def __init__(self, status):
        self.status = status
msg = attrs.evolve(msg, status=TaskStatus.OK)
if profile.status == DeviceStatus.IDLE:
    pass
print(lifecycle.status)
"""
    assert status_writes(fine) == []


# -- groups of states are declared once, as tags in the table ----------------------------------

_STATUS_VALUES = {s.value for s in DeviceStatus}


def _status_aliases(tree: ast.Module) -> set[str]:
    """Names bound to DeviceStatus in a module (``S = DeviceStatus``, ``import ... as S``)."""
    names = {"DeviceStatus"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname for a in node.names if a.name == "DeviceStatus" and a.asname}
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Name | ast.Attribute)
            and ast.unparse(node.value).split(".")[-1] == "DeviceStatus"
        ):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def status_sets(source: str, filename: str = "<src>") -> list[str]:
    """Places that build their own group of statuses: a tuple/list/set of two or more status
    members (or status strings), or a comprehension collecting statuses of DeviceStatus."""
    tree = ast.parse(source, filename)
    aliases = _status_aliases(tree)

    def is_member(node: ast.expr) -> bool:
        if isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Attribute) and base.attr == "value":
                base = base.value  # DeviceStatus.IDLE.value
            return (
                isinstance(base, ast.Attribute)
                and isinstance(base.value, ast.Name)
                and base.value.id in aliases
            ) or (isinstance(base, ast.Name) and base.id in aliases)
        return isinstance(node, ast.Constant) and node.value in _STATUS_VALUES

    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            # Only statuses, two or more: a group (a step's (trigger, source, dest) is not).
            if len(node.elts) >= 2 and all(is_member(e) for e in node.elts):
                found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.SetComp | ast.ListComp | ast.GeneratorExp):
            for gen in node.generators:
                iterates = isinstance(gen.iter, ast.Name) and gen.iter.id in aliases
                keeps_status = (
                    isinstance(node.elt, ast.Name)
                    and isinstance(gen.target, ast.Name)
                    and node.elt.id == gen.target.id
                )
                if iterates and keeps_status:
                    found.append(f"{filename}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_status_groups_outside_fsm() -> None:
    """Holds-a-socket, settled, active, attempting...: the table tags its states and
    stellate.fsm exports the sets; a module that lists statuses itself would drift."""
    offenders: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "fsm" in path.relative_to(PACKAGE).parts:
            continue
        rel = str(path.relative_to(PACKAGE.parent))
        offenders += status_sets(path.read_text(encoding="utf-8"), rel)
    assert offenders == [], "use the sets stellate.fsm exports:\n" + "\n".join(offenders)


def test_scanner_flags_status_groups() -> None:
    bad = """
from stellate.fsm import DeviceStatus
from stellate.fsm import DeviceStatus as D
S = DeviceStatus
SETTLED = (DeviceStatus.IDLE, DeviceStatus.FAILED)
if state in (S.IDLE, S.BUSY):
    pass
ACTIVE = frozenset({D.IDLE, D.BUSY})
names = ["idle", "failed"]
values = [DeviceStatus.IDLE.value, DeviceStatus.BUSY.value]
waiting = {s for s in DeviceStatus if s.phase is None}
"""
    assert len(status_sets(bad)) == 6


def test_scanner_allows_single_statuses_and_other_tuples() -> None:
    fine = """
from stellate.fsm import SETTLED, DeviceStatus
if profile.status is DeviceStatus.IDLE:
    pass
await manager.wait_for(device_id, *SETTLED, DeviceStatus.DISCONNECTED)
pair = (DeviceStatus.IDLE, 3)
step = (Trigger.TIMED_OUT, DeviceStatus.BACKOFF, DeviceStatus.FAILED)
words = ("idle", "tired")
counts = [f"{s.value}={n[s]}" for s in DeviceStatus if n[s]]
"""
    assert status_sets(fine) == []
