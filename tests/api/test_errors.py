"""One root: every exception class stellate defines derives from ``StellateError``.

The walk imports every module of the package and looks at every class defined there, private
ones included (an exception that escapes by accident is still caught by ``except
StellateError``). The blame split and the builtin bases users may already catch are checked
for the classes docs/api.md names.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Iterator

import pytest

import stellate
from stellate import LocalError, RemoteError, StellateError


def _module_names() -> Iterator[str]:
    for info in pkgutil.walk_packages(stellate.__path__, prefix="stellate."):
        yield info.name


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _module_names():
        if name.endswith(".__main__"):  # runs the command when imported; defines no class
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.origin is not None
            with open(spec.origin, encoding="utf-8") as source:
                tree = ast.parse(source.read())
            assert not any(isinstance(node, ast.ClassDef) for node in ast.walk(tree))
            continue
        module = importlib.import_module(name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == name and issubclass(obj, BaseException):
                found[f"{name}.{obj.__qualname__}"] = obj
    return found


EXCEPTIONS = _exception_classes()


def test_the_walk_sees_the_package_s_exceptions() -> None:
    # The walk reads what it is for: the classes the issue named are among those it found.
    names = {cls.__name__ for cls in EXCEPTIONS.values()}
    assert {
        "IllegalTransition",
        "UnknownDevice",
        "ConfigError",
        "TransportError",
        "InsecureBindError",
        "AgentRefused",
        "ProtocolError",
        "SessionStateError",
        "InvalidUrl",
    } <= names
    assert len(EXCEPTIONS) >= 20


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_every_exception_class_derives_from_the_root(name: str) -> None:
    cls = EXCEPTIONS[name]
    assert issubclass(cls, StellateError), f"{name} bases: {cls.__mro__[1:]}"
    if cls not in (StellateError, LocalError, RemoteError):
        assert issubclass(cls, LocalError) != issubclass(cls, RemoteError), name


def test_the_split_says_whose_fault_it_is() -> None:
    from stellate.agent import AgentRefused
    from stellate.config import ConfigError, InvalidFields
    from stellate.manager import UnknownDevice
    from stellate.protocol import ConnectError, ConnectionClosed, ProtocolError, SessionStateError
    from stellate.server import InsecureBindError
    from stellate.text.urls import InvalidUrl

    local = [
        stellate.IllegalTransition,
        UnknownDevice,
        ConfigError,
        InvalidFields,
        InsecureBindError,
        SessionStateError,
        InvalidUrl,
    ]
    remote = [ConnectError, ConnectionClosed, ProtocolError, AgentRefused]
    assert all(issubclass(cls, LocalError) for cls in local)
    assert all(issubclass(cls, RemoteError) for cls in remote)


def test_builtin_bases_users_may_catch_are_kept() -> None:
    from stellate.config import InvalidFields
    from stellate.manager import UnknownDevice
    from stellate.protocol import ProtocolError, SessionStateError
    from stellate.server import InsecureBindError
    from stellate.text.urls import InvalidUrl

    assert issubclass(UnknownDevice, KeyError)
    for cls in (InvalidFields, InsecureBindError, InvalidUrl, ProtocolError):
        assert issubclass(cls, ValueError), cls
    assert issubclass(SessionStateError, RuntimeError)
    with pytest.raises(KeyError):
        raise UnknownDevice("dev1")


def test_a_bad_timing_is_one_error_naming_every_field() -> None:
    from stellate import Timing
    from stellate.config import InvalidFields

    with pytest.raises(InvalidFields) as raised:
        Timing(heartbeat_interval=0, miss_limit=0)
    assert isinstance(raised.value, ValueError)
    assert [path for path, _ in raised.value.violations] == [
        ("heartbeat_interval",),
        ("miss_limit",),
    ]
