"""The registration flow's worked example (docs/registration-flow.md), one copy for all tests."""

from __future__ import annotations

from typing import Any

#: The example's "System Info Structure" (phase 4).
SEED_SYSTEM_INFO: dict[str, Any] = {
    "platform": "windows",
    "os_version": "10.0.22631",
    "cpu_count": 16,
    "memory_total_gb": 32.0,
    "hostname": "DESKTOP-DEV01",
    "ip_address": "192.168.1.100",
    "supported_features": ["gui", "cli", "browser", "file_system", "office", "windows_apps"],
    "platform_type": "computer",
    "schema_version": "1.0",
}

#: The example's register_device call (its end-to-end example), less the server URL each test
#: chooses.
SEED_DEVICE: dict[str, Any] = {
    "device_id": "windowsagent",
    "os": "windows",
    "capabilities": ["web_browsing", "office_applications", "file_management"],
    "metadata": {
        "location": "office_desktop",
        "performance": "high",
        "description": "Primary Windows workstation",
        "operation_engineer_email": "admin@example.com",
    },
    "max_retries": 5,
    "auto_connect": True,
}

#: The example's final metadata["system_info"]: the eight keys, in this order.
SEED_FINAL_SYSTEM_INFO: dict[str, Any] = {
    "platform": "windows",
    "os_version": "10.0.22631",
    "cpu_count": 16,
    "memory_total_gb": 32.0,
    "hostname": "DESKTOP-DEV01",
    "ip_address": "192.168.1.100",
    "platform_type": "computer",
    "schema_version": "1.0",
}

#: The example's final AgentProfile: capabilities in this order, system_info with these keys.
SEED_CAPABILITIES = [
    "web_browsing",
    "office_applications",
    "file_management",
    "gui",
    "cli",
    "browser",
    "file_system",
    "office",
    "windows_apps",
]
