"""AgentProfile: one device's record (docs/registration-flow.md), as an immutable value.

Profiles are frozen: the lifecycle replaces its profile on every change, so a profile handed to
a caller (``get_device_info``) is a consistent snapshot that nothing can alter behind its back,
and no code outside the machine can assign a status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from ..text.urls import redact_url
from .states import DeviceStatus

#: Connection attempts a device makes before it is FAILED, unless configured otherwise.
DEFAULT_MAX_RETRIES = 5

#: The keys of ``metadata["system_info"]``, in Galaxy's order.
SYSTEM_INFO_KEYS: tuple[str, ...] = (
    "platform",
    "os_version",
    "cpu_count",
    "memory_total_gb",
    "hostname",
    "ip_address",
    "platform_type",
    "schema_version",
)


def _tuple_of_str(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _plain_dict(values: Mapping[str, Any]) -> dict[str, Any]:
    return dict(values)


@attrs.frozen(eq=True)
class AgentProfile:
    """One device as the constellation knows it (Galaxy's fields, same names and order)."""

    device_id: str
    server_url: str = attrs.field(repr=redact_url)  # it carries the key
    os: str | None = None
    capabilities: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    metadata: dict[str, Any] = attrs.field(factory=dict, converter=_plain_dict)
    status: DeviceStatus = DeviceStatus.DISCONNECTED
    last_heartbeat: datetime | None = None
    connection_attempts: int = 0
    max_retries: int | None = DEFAULT_MAX_RETRIES
    current_task_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with Galaxy's keys (status as its string, times as ISO-8601)."""
        return {
            "device_id": self.device_id,
            "server_url": self.server_url,
            "os": self.os,
            "capabilities": list(self.capabilities),
            "metadata": self.metadata,
            "status": self.status.value,
            "last_heartbeat": (
                self.last_heartbeat.isoformat() if self.last_heartbeat is not None else None
            ),
            "connection_attempts": self.connection_attempts,
            "max_retries": self.max_retries,
            "current_task_id": self.current_task_id,
        }


def merge_system_info(profile: AgentProfile, system_info: Mapping[str, Any]) -> AgentProfile:
    """Galaxy's ``update_device_system_info``, made order-stable and side-effect free.

    OS ← platform; capabilities ← configured ∪ supported_features (configured first, then new
    features in the order the device gave them, no duplicates); metadata.system_info ← the eight
    keys; custom_metadata and tags copied when present. Configured metadata is never dropped.
    """
    os_name = profile.os
    platform = system_info.get("platform")
    if "platform" in system_info and isinstance(platform, str):
        os_name = platform

    capabilities = list(profile.capabilities)
    features = system_info.get("supported_features")
    if isinstance(features, list | tuple):
        seen = set(capabilities)
        for feature in features:
            if isinstance(feature, str) and feature not in seen:
                seen.add(feature)
                capabilities.append(feature)

    metadata = dict(profile.metadata)
    metadata["system_info"] = {key: system_info.get(key) for key in SYSTEM_INFO_KEYS}
    if "custom_metadata" in system_info:
        metadata["custom_metadata"] = system_info["custom_metadata"]
    if "tags" in system_info:
        metadata["tags"] = system_info["tags"]

    return attrs.evolve(profile, os=os_name, capabilities=capabilities, metadata=metadata)
