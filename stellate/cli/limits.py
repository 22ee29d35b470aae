"""Open-file limits: every socket is a file descriptor, and a fleet can need more than the default.

A common default is 1,024 descriptors per process, while a local fleet of 500 devices needs
about 2,000 (the manager's socket and the server's end of it, the agent's socket and the
server's end of that). The commands raise their soft limit as far as the hard limit allows and,
when a fleet still cannot fit, say so before starting, instead of failing devices one by one.
"""

from __future__ import annotations

import contextlib
import os
import resource

import attrs

#: Descriptors kept free for what is not a device's socket: listeners, logs, pipes, libraries.
HEADROOM = 64


def raise_open_file_limit(wanted: int | None = None) -> tuple[int, int]:
    """Lift the soft open-file limit to ``wanted`` (None: to the hard limit), never above hard.

    Returns the (soft, hard) limits in force afterwards; ``resource.RLIM_INFINITY`` stays as is.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else wanted
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if soft != resource.RLIM_INFINITY and target > soft:
        # An unlimited hard limit may still be more than the kernel allows: then keep soft.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def descriptors_in_use() -> int:
    """Descriptors this process holds now (0 where the system does not say)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


@attrs.frozen
class Shortfall:
    """More descriptors are needed than this process may open."""

    needed: int
    available: int
    soft: int
    hard: int

    def message(self, what: str) -> str:
        limit = f"ulimit -n is {self.soft}" + (
            f", hard limit {self.hard}" if self.hard != resource.RLIM_INFINITY else ""
        )
        return (
            f"{what} needs about {self.needed} open files, but only {self.available} are "
            f"available ({limit}): raise the limit (ulimit -n {self.needed + HEADROOM * 2}) "
            "or run fewer devices"
        )


def ensure_descriptors(needed: int) -> Shortfall | None:
    """Raise the soft limit for ``needed`` more descriptors; the shortfall if it cannot be."""
    in_use = descriptors_in_use()
    soft, hard = raise_open_file_limit(in_use + needed + HEADROOM)
    if soft == resource.RLIM_INFINITY:
        return None
    available = max(0, soft - in_use - HEADROOM)
    if needed > available:
        return Shortfall(needed, available, soft, hard)
    return None
