"""Where a command takes the servers' shared API key from: one rule for ``serve``, ``agent`` and
``up``.

The first of these that is set wins:

1. ``--api-key-file FILE``: the file's text, surrounding whitespace stripped (keep it mode 0600);
2. ``--api-key KEY`` (``serve`` and ``agent``; on a command line the key is visible to other
   local users through ``ps``: prefer the file or the environment);
3. ``$STELLATE_API_KEY``;
4. ``manager.api_key`` of the devices.yaml (``up``).

``up`` applies the key to every device whose ``server_url`` has no ``token=`` of its own; a
device whose URL carries one uses that token. Wherever a server refuses the key, the message
names where it came from (:attr:`ApiKey.source`), never the key.

The control key (``stellate up``'s control API and ``stellate ctl``, which send it) is another
key, with its own rule: ``--control-key-file FILE``, else ``$STELLATE_CONTROL_KEY``
(:func:`read_control_key`); none: the control API is off.
"""

from __future__ import annotations

import argparse
import os

import attrs

from ..server import API_KEY_ENV

__all__ = ["API_KEY_ENV", "CONTROL_KEY_ENV", "ApiKey", "read_api_key", "read_control_key"]

#: Where ``up`` and ``ctl`` take the control key from when no ``--control-key-file`` is given.
CONTROL_KEY_ENV = "STELLATE_CONTROL_KEY"

#: What a refusal says when no source gave a key.
NO_KEY = "no key was given"


@attrs.frozen
class ApiKey:
    """The key a command uses (None: none), and where it came from, in words for messages."""

    value: str | None = attrs.field(repr=False)
    #: e.g. ``the key from $STELLATE_API_KEY``; never the key itself.
    source: str = NO_KEY


def read_api_key(
    args: argparse.Namespace,
    *,
    config_key: str | None = None,
    config_path: str | None = None,
) -> ApiKey:
    """The key by the rule above; ``config_key`` is ``manager.api_key`` of ``config_path``.

    Raises:
        OSError: the key file cannot be read.
        ValueError: the key file is empty.
    """
    path = getattr(args, "api_key_file", None)
    if path:
        return ApiKey(_key_file(path), f"the key from --api-key-file {path}")
    if getattr(args, "api_key", None):
        return ApiKey(args.api_key, "the key from --api-key")
    if os.environ.get(API_KEY_ENV):
        return ApiKey(os.environ[API_KEY_ENV], f"the key from ${API_KEY_ENV}")
    if config_key:
        where = f" in {config_path}" if config_path else ""
        return ApiKey(config_key, f"the key from manager.api_key{where}")
    return ApiKey(None)


def read_control_key(args: argparse.Namespace) -> ApiKey:
    """The control key: ``--control-key-file``, else ``$STELLATE_CONTROL_KEY``, else none.

    Raises:
        OSError: the key file cannot be read.
        ValueError: the key file is empty.
    """
    path = getattr(args, "control_key_file", None)
    if path:
        return ApiKey(_key_file(path), f"the key from --control-key-file {path}")
    if os.environ.get(CONTROL_KEY_ENV):
        return ApiKey(os.environ[CONTROL_KEY_ENV], f"the key from ${CONTROL_KEY_ENV}")
    return ApiKey(None)


def _key_file(path: str) -> str:
    """A key file's text, surrounding whitespace stripped."""
    with open(path, encoding="utf-8") as f:
        key = f.read().strip()
    if not key:
        raise ValueError(f"{path}: the key file is empty")
    return key
