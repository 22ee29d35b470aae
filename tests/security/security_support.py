"""Constants and types the security tests share (the fixtures are in this folder's conftest).

A test module imports from here, never from ``conftest``: under pytest's default import mode
every folder's conftest is a module named ``conftest``, and which one an import finds depends on
the folders collected (``tests/suite/test_folders_run_together.py`` holds the rule).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: The API key of every server in the security suite: a string no log line may ever contain.
KEY = "sec-KEY-7f3a9c-never-in-any-log"

#: ``server, port = await start_server(**AgentServer kwargs)``: the ``start_server`` fixture.
StartServer = Callable[..., Any]
