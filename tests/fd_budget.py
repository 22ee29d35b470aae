"""Open-file budget for tests on real sockets: raise the soft limit, or skip saying why.

The suite raises its soft limit to the hard one at start (``conftest.py``); a test that needs
more descriptors than that calls :func:`require_descriptors` first, and is skipped with the
numbers instead of failing halfway with "too many open files".
"""

from __future__ import annotations

import pytest

from stellate.cli.limits import ensure_descriptors, raise_open_file_limit

__all__ = ["raise_open_file_limit", "require_descriptors"]


def require_descriptors(needed: int, what: str) -> None:
    """Skip the calling test unless ``needed`` more descriptors can be opened."""
    shortfall = ensure_descriptors(needed)
    if shortfall is not None:
        pytest.skip(shortfall.message(what))
