"""DeviceInfoProvider: real psutil values, UFO's keys, graceful degradation, no network."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import psutil
import pytest

from stellate.adapters.telemetry import DeviceInfoProvider, Telemetry, unknown_system_info

FRAME = Path(__file__).parent.parent / "frames" / "device_register.json"
REFERENCE = json.loads(FRAME.read_text())["metadata"]["system_info"]


def test_keys_match_the_reference_frame_in_order() -> None:
    info = DeviceInfoProvider.collect_system_info("dev_1")
    assert list(info) == list(REFERENCE)
    assert json.loads(json.dumps(info)) == info  # JSON-serialisable as is


def test_values_are_real() -> None:
    info = DeviceInfoProvider.collect_system_info("dev_1", {"rack": "b2"})
    assert info["device_id"] == "dev_1"
    assert info["cpu_count"] == psutil.cpu_count()
    assert info["memory_total_gb"] == round(psutil.virtual_memory().total / 1024**3, 2)
    assert info["hostname"] == socket.gethostname()
    assert info["platform"] in ("linux", "windows", "macos")
    assert info["supported_features"] == [
        "gui",
        "cli",
        "browser",
        "file_system",
        "office",
        f"{info['platform']}_apps",
    ]
    assert info["platform_type"] == "computer"
    assert info["schema_version"] == "1.0"
    assert info["custom_metadata"] == {"rack": "b2"}


def test_ip_address_comes_from_the_interfaces() -> None:
    ip = DeviceInfoProvider.collect_system_info("d")["ip_address"]
    local = {
        a.address
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
        if a.family == socket.AF_INET
    }
    assert ip in local | {"127.0.0.1"}
    if local - {a for a in local if a.startswith("127.")}:
        assert not ip.startswith("127.")


def test_no_packet_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("telemetry must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(socket.socket, "sendto", forbidden)
    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    assert DeviceInfoProvider.collect_system_info("d")["platform_type"] == "computer"


def test_loopback_only_machine_reports_127(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "net_if_addrs", dict)
    assert DeviceInfoProvider.collect_system_info("d")["ip_address"] == "127.0.0.1"


def test_platform_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    info = DeviceInfoProvider.collect_system_info("mac")
    assert info["platform"] == "macos"
    assert info["supported_features"][-1] == "macos_apps"


def test_failure_degrades_to_unknown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise PermissionError("no /proc/meminfo")

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    with caplog.at_level(logging.ERROR):
        info = DeviceInfoProvider.collect_system_info("dev_9", {"a": 1})
    assert info == unknown_system_info("dev_9", {"a": 1})
    assert info["platform"] == "unknown" and info["cpu_count"] == 0
    assert info["supported_features"] == [] and info["schema_version"] == "1.0"
    assert list(info) == list(REFERENCE)
    assert "dev_9" in caplog.text


def test_custom_metadata_is_copied() -> None:
    mine = {"k": "v"}
    info = DeviceInfoProvider.collect_system_info("d", mine)
    info["custom_metadata"]["k"] = "changed"
    assert mine == {"k": "v"}


def test_provider_satisfies_the_port() -> None:
    port: Telemetry = DeviceInfoProvider()
    assert port.collect_system_info("d")["device_id"] == "d"
