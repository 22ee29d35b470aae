"""Test support for stellate and for code built on it.

Hypothesis strategies live in ``stellate.testing.strategies`` and are re-exported here lazily,
so ``import stellate.testing`` works without hypothesis (the ``testing`` extra); touching a
strategy name imports hypothesis then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .strategies import (
        FEATURES,
        PLATFORMS,
        agent_profiles,
        legal_paths,
        retry_policies,
        system_infos,
    )

_STRATEGIES = frozenset(
    {"FEATURES", "PLATFORMS", "agent_profiles", "legal_paths", "retry_policies", "system_infos"}
)

__all__ = [
    "FEATURES",
    "PLATFORMS",
    "agent_profiles",
    "legal_paths",
    "retry_policies",
    "system_infos",
]


def __getattr__(name: str) -> Any:
    if name in _STRATEGIES:
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
