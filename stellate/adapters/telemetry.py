"""System telemetry a device announces at registration (``metadata.system_info``).

The dict has exactly the keys UFO's ``DeviceInfoProvider`` sends (see
``tests/frames/device_register.json``). Collection never sends a packet: the IP address comes
from the local interface table, not from the common trick of ``connect()``-ing a UDP socket to
a public address (which consults routing and, on some stacks, DNS).

Collection must never stop a registration: any failure is logged and Galaxy's minimal
"unknown" dict is returned instead.
"""

from __future__ import annotations

import logging
import platform
import socket
from typing import Any, Protocol

import psutil

__all__ = ["DeviceInfoProvider", "Telemetry", "unknown_system_info"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"

_COMMON_FEATURES = ("gui", "cli", "browser", "file_system", "office")
_PLATFORM_NAMES = {"windows": "windows", "linux": "linux", "darwin": "macos"}


class Telemetry(Protocol):
    """The port: something that can describe the machine a device agent runs on."""

    def collect_system_info(
        self, client_id: str, custom_metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...


def unknown_system_info(
    client_id: str, custom_metadata: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The minimal dict sent when collection fails (the reference implementation's fallback)."""
    return {
        "device_id": client_id,
        "platform": "unknown",
        "os_version": "unknown",
        "cpu_count": 0,
        "memory_total_gb": 0.0,
        "hostname": "unknown",
        "ip_address": "unknown",
        "supported_features": [],
        "platform_type": "unknown",
        "schema_version": SCHEMA_VERSION,
        "custom_metadata": dict(custom_metadata or {}),
    }


def _platform_name() -> str:
    system = platform.system().lower()
    return _PLATFORM_NAMES.get(system, system or "unknown")


def _supported_features(platform_name: str) -> list[str]:
    if platform_name in ("windows", "linux", "macos"):
        return [*_COMMON_FEATURES, f"{platform_name}_apps"]
    return list(_COMMON_FEATURES)


def _local_ipv4() -> str:
    """First non-loopback IPv4 address of an interface that is up; "127.0.0.1" if none."""
    stats = psutil.net_if_stats()
    for name, addresses in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return "127.0.0.1"


class DeviceInfoProvider:
    """Collects ``system_info`` with psutil and the standard library (implements ``Telemetry``).

    Stateless: ``collect_system_info`` is a static method, as in UFO, and an instance can be
    passed wherever a ``Telemetry`` is expected.
    """

    @staticmethod
    def collect_system_info(
        client_id: str, custom_metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Describe this machine; never raises.

        Args:
            client_id: the device id, echoed as ``device_id``.
            custom_metadata: free-form extra data, sent as ``custom_metadata`` (``{}`` if None).
        """
        try:
            platform_name = _platform_name()
            return {
                "device_id": client_id,
                "platform": platform_name,
                "os_version": platform.version(),
                "cpu_count": psutil.cpu_count() or 0,
                "memory_total_gb": round(psutil.virtual_memory().total / 1024**3, 2),
                "hostname": socket.gethostname(),
                "ip_address": _local_ipv4(),
                "supported_features": _supported_features(platform_name),
                "platform_type": "computer",
                "schema_version": SCHEMA_VERSION,
                "custom_metadata": dict(custom_metadata or {}),
            }
        except Exception:
            logger.exception("collecting system info for %s failed; sending 'unknown'", client_id)
            return unknown_system_info(client_id, custom_metadata)
