"""The typed shape of ``devices.yaml``: frozen attrs values and the rules their fields obey.

Types are checked by the converter (``converter.py``); value rules (ranges, URL shape, no
whitespace in ids) live here, in each class's ``rule_violations`` and run from
``__attrs_post_init__``, so a config built in code is held to the same rules as one read from a
file. A class checks *all* of its rules before raising one :class:`InvalidFields` naming every
offending field, so the loader can report every problem in a file at once, not the first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from ..errors import FieldPath, InvalidFields
from ..fsm import DEFAULT_MAX_RETRIES, AgentProfile
from ..protocol.ids import LookAlikes, device_id_problem, look_alike_problem, task_name_problem
from ..store.ownership import DEFAULT_LEASE, lease_problems
from ..text.escape import escape_text
from ..text.urls import parse_store_url, redact_url, store_url_problems, url_problems
from ..timing import Timing
from .problems import describe

#: Fields whose values must never appear in a repr, a log line or an error message.
SECRET_FIELDS = frozenset({"api_key"})

#: Beyond this, a retry count is a typo or an attack, not a setting (``null`` retries forever).
MAX_RETRIES = 1_000_000

#: Field metadata: this attrs-class field's own fields are written inline in the file, beside
#: its siblings (``manager:`` holds ``heartbeat_interval``, not ``timing: {heartbeat_interval}``).
INLINE = "stellate.config.inline"


# --- value rules: each yields what is wrong, nothing when all is well ---


def _count_rule(value: int, *, maximum: int, forever: bool = False) -> Iterator[str]:
    hint = " (null means retry forever)" if forever else ""
    if value < 1:
        yield f"must be >= 1{hint}, got {value}"
    elif value > maximum:
        yield f"must be <= {maximum:,}{hint}, got {_shown_int(value)}"


def _shown_int(value: int) -> str:
    text = str(value)
    return text if len(text) <= 20 else f"a {len(text)}-digit number"


def _id_rule(value: str, problem: str | None) -> Iterator[str]:
    if problem is not None:
        yield f"{problem}, got {escape_text(repr(value), limit=80)}"


def _json_like(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    """Metadata travels to the server as JSON: anything else (dates, sets, bytes) is refused.

    YAML aliases make a tree a graph: a shared list or mapping is checked once, at the first
    path that reaches it (walking it again per path would cost as much as its expansion), and
    one that contains itself is refused.
    """
    done: set[int] = set()
    active: set[int] = set()

    def walk(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
        if value is None or isinstance(value, str | bool | int):
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                yield path, f"must be a finite number (metadata is sent as JSON), got {value!r}"
            return
        if not isinstance(value, list | dict):
            yield (
                path,
                (f"must be a JSON value, got {describe(value)} (quote it to keep it a string)"),
            )
            return
        if id(value) in active:
            yield path, "refers to itself (a recursive YAML alias)"
            return
        if id(value) in done:
            return
        done.add(id(value))
        active.add(id(value))
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, (*path, index))
        else:
            for key, item in value.items():
                if not isinstance(key, str):
                    yield path, f"keys must be strings, got {type(key).__name__} {key!r}"
                else:
                    yield from walk(item, (*path, key))
        active.discard(id(value))

    return walk(value, path)


def _raise_if_any(violations: list[tuple[FieldPath, str]]) -> None:
    if violations:
        raise InvalidFields(violations)


def _own_values(instance: Any) -> dict[str, Any]:
    return {field.name: getattr(instance, field.name) for field in attrs.fields(type(instance))}


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


# --- the classes ---
#
# Each class's rules are a classmethod over a mapping of field values, not over ``self``: the
# converter calls it with just the fields that did have the right type when others did not, so
# a wrong type in one field never hides a broken rule in another. Missing names are skipped.


@attrs.frozen(kw_only=True)
class DeviceConfig:
    """One entry of ``devices:``: the user-supplied half of an AgentProfile."""

    device_id: str
    server_url: str = attrs.field(repr=redact_url)
    os: str | None = None
    capabilities: tuple[str, ...] = ()
    metadata: dict[str, Any] = attrs.field(factory=dict)
    #: Connection attempts before FAILED; ``None`` retries forever.
    max_retries: int | None = DEFAULT_MAX_RETRIES
    auto_connect: bool = True

    def __attrs_post_init__(self) -> None:
        _raise_if_any(self.rule_violations(_own_values(self)))

    @classmethod
    def rule_violations(cls, values: Mapping[str, Any]) -> list[tuple[FieldPath, str]]:
        """What is wrong with these (already well-typed) field values."""
        problems: list[tuple[FieldPath, str]] = []
        if "device_id" in values:
            device_id = values["device_id"]
            for message in _id_rule(device_id, device_id_problem(device_id)):
                problems.append((("device_id",), message))
        if "server_url" in values:
            problems += [(("server_url",), m) for m in url_problems(values["server_url"])]
        os_name = values.get("os")
        if os_name is not None and not os_name.strip():
            problems.append((("os",), "must not be empty (use null or leave it out)"))
        seen: set[str] = set()
        for index, capability in enumerate(values.get("capabilities", ())):
            if not capability.strip():
                problems.append((("capabilities", index), "must not be empty"))
            elif capability in seen:
                problems.append((("capabilities", index), f"duplicate capability {capability!r}"))
            seen.add(capability)
        if "metadata" in values:
            problems += [
                (("metadata", *path), message)
                for path, message in _json_like(values["metadata"], ())
            ]
        max_retries = values.get("max_retries")
        if max_retries is not None:
            for message in _count_rule(max_retries, maximum=MAX_RETRIES, forever=True):
                problems.append((("max_retries",), message))
        return problems

    def to_profile(self) -> AgentProfile:
        """Phase 1's output: a DISCONNECTED profile with no attempts made yet.

        (docs/registration-flow.md, "The AgentProfile": version 1.)

        Metadata is deep-copied so a profile never shares mutable state with the config.
        """
        return AgentProfile(
            device_id=self.device_id,
            server_url=self.server_url,
            os=self.os,
            capabilities=self.capabilities,
            metadata=copy.deepcopy(self.metadata),
            max_retries=self.max_retries,
        )


@attrs.frozen(kw_only=True)
class ManagerSettings:
    """The ``manager:`` block: Galaxy's ConstellationDeviceManager arguments and the timings.

    ``timing`` is a ``stellate.Timing``, handed to the manager as it is. In the file its fields
    are written inline, straight under ``manager:`` (``heartbeat_interval: 30``): the loader
    gathers them into it (see :data:`INLINE`).
    """

    task_name: str = "stellate"
    #: Sent to the server when set. Secret: kept out of reprs and error messages.
    api_key: str | None = attrs.field(default=None, repr=_secret_repr)
    #: Every timing setting of the fleet, with ``Timing``'s defaults and rules.
    timing: Timing = attrs.field(factory=Timing, metadata={INLINE: True})

    def __attrs_post_init__(self) -> None:
        _raise_if_any(self.rule_violations(_own_values(self)))

    @classmethod
    def rule_violations(cls, values: Mapping[str, Any]) -> list[tuple[FieldPath, str]]:
        """What is wrong with these (already well-typed) field values (``Timing`` checks its
        own)."""
        problems: list[tuple[FieldPath, str]] = []
        if "task_name" in values:
            task_name = values["task_name"]
            for message in _id_rule(task_name, task_name_problem(task_name)):
                problems.append((("task_name",), message))
        if values.get("api_key") == "":
            problems.append((("api_key",), "must not be empty (use null for no key)"))
        return problems


#: Where the fleet store's password is read from when its URL carries none.
STORE_PASSWORD_ENV = "STELLATE_STORE_PASSWORD"


@attrs.frozen(kw_only=True)
class StoreSettings:
    """The ``store:`` block: the fleet store several managers share (docs/scaling.md).

    Without it, a manager keeps its fleet in its own memory (the default).
    """

    #: ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` or ``rediss://`` (TLS). Shown redacted.
    url: str = attrs.field(repr=redact_url)
    #: Seconds a manager's membership and ownership leases last.
    lease: float = DEFAULT_LEASE
    #: A file holding the password (its first line), when the URL carries none.
    password_file: str | None = None
    #: CA certificates that sign a ``rediss://`` server's certificate.
    cafile: str | None = None

    def __attrs_post_init__(self) -> None:
        _raise_if_any(self.rule_violations(_own_values(self)))

    @classmethod
    def rule_violations(cls, values: Mapping[str, Any]) -> list[tuple[FieldPath, str]]:
        """What is wrong with these (already well-typed) field values."""
        problems: list[tuple[FieldPath, str]] = []
        url = values.get("url")
        if url is not None:
            problems += [(("url",), message) for message in store_url_problems(url)]
        if "lease" in values:
            problems += [(("lease",), message) for message in lease_problems(values["lease"])]
        for name in ("password_file", "cafile"):
            if values.get(name) == "":
                problems.append(((name,), "must not be empty (use null or leave it out)"))
        if (
            values.get("password_file")
            and url is not None
            and not store_url_problems(url)
            and parse_store_url(url).password
        ):
            problems.append(
                (("password_file",), "the url carries a password already: keep one of the two")
            )
        return problems

    def password(self, environ: Mapping[str, str]) -> str | None:
        """The store's password: the URL's, else ``password_file``'s first line, else
        ``$STELLATE_STORE_PASSWORD``, else None.

        Raises:
            OSError: ``password_file`` cannot be read.
        """
        in_url = parse_store_url(self.url).password
        if in_url:
            return in_url
        if self.password_file:
            with open(self.password_file, encoding="utf-8") as file:
                return file.readline().rstrip("\r\n") or None
        return environ.get(STORE_PASSWORD_ENV) or None


def fleet_violations(devices: tuple[DeviceConfig, ...]) -> list[tuple[FieldPath, str]]:
    """Rules over the whole list: at least one device, no device_id used twice, no device_id
    that looks like another (the same skeleton: ``stellate.protocol.ids``)."""
    if not devices:
        return [(("devices",), "no devices configured")]
    problems: list[tuple[FieldPath, str]] = []
    first: dict[str, int] = {}
    look_alikes = LookAlikes()
    for index, device in enumerate(devices):
        device_id = device.device_id
        if device_id in first:
            problems.append(
                (
                    ("devices", index, "device_id"),
                    f"duplicate device_id {device_id!r} "
                    f"(first used by devices[{first[device_id]}])",
                )
            )
        elif (held := look_alikes.of(device_id)) is not None:
            problems.append(
                (
                    ("devices", index, "device_id"),
                    f"{look_alike_problem(device_id, held)} (devices[{first[held]}])",
                )
            )
        else:
            first[device_id] = index
            look_alikes.add(device_id)
    return problems


@attrs.frozen(kw_only=True)
class StellateConfig:
    """A whole validated file: the devices, the manager settings, and where they came from."""

    devices: tuple[DeviceConfig, ...]
    manager: ManagerSettings = attrs.field(factory=ManagerSettings)
    #: The fleet store shared with other managers; None: this manager's memory only.
    store: StoreSettings | None = None
    #: The file (or ``"<string>"``) the config was read from, for messages.
    source: str = "<string>"

    def __attrs_post_init__(self) -> None:
        _raise_if_any(fleet_violations(self.devices))

    def device(self, device_id: str) -> DeviceConfig:
        """The device with this id. Raises KeyError when there is none."""
        for device in self.devices:
            if device.device_id == device_id:
                return device
        raise KeyError(device_id)


@attrs.frozen(kw_only=True)
class ConfigDocument:
    """What the YAML file itself holds (no ``source``): the schema the converter structures."""

    devices: tuple[DeviceConfig, ...]
    manager: ManagerSettings = attrs.field(factory=ManagerSettings)
    store: StoreSettings | None = None
