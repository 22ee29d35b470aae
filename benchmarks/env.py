"""The machine a benchmark ran on, and the open-file limit it needs."""

from __future__ import annotations

import os
import platform
import resource
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("trio", "trio-websocket", "wsproto", "h11", "transitions", "attrs", "cattrs", "psutil")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    """Cores, Python, OS and library versions, and the load when asked (noise indicator)."""
    import psutil

    return {
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cpu_model": _cpu_model(),
        "memory_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "versions": {name: _version(name) for name in PACKAGES},
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(info: dict[str, Any]) -> str:
    """One line for the table's header."""
    versions = " ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "-")
    load = "/".join(str(x) for x in info["loadavg"])
    return (
        f"{info['cores_logical']} cores ({info['cpu_model']}), {info['memory_total_gib']} GiB, "
        f"{info['python']}, {info['os']}; {versions}; load {load}"
    )


def raise_nofile(wanted: int) -> int:
    """Lift the soft RLIMIT_NOFILE toward ``wanted`` (never above the hard limit); return it.

    Children started afterwards inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def hard_nofile() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return sys.maxsize if hard == resource.RLIM_INFINITY else hard
