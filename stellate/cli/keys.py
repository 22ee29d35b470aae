"""Where ``stellate serve`` and ``stellate agent`` take the shared API key from."""

from __future__ import annotations

import argparse
import os

from ..server import API_KEY_ENV

__all__ = ["API_KEY_ENV", "read_api_key"]


def read_api_key(args: argparse.Namespace) -> str | None:
    """The key from ``--api-key-file``, ``--api-key`` or ``$STELLATE_API_KEY``, in that order.

    Raises:
        OSError: the key file cannot be read.
        ValueError: the key file is empty.
    """
    path = getattr(args, "api_key_file", None)
    if path:
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
        if not key:
            raise ValueError(f"{path}: the key file is empty")
        return key
    return args.api_key or os.environ.get(API_KEY_ENV) or None
