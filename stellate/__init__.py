"""stellate: bring a constellation of AIP device agents from a line of YAML to task-ready.

This module is the public face for applications: load a ``devices.yaml``, run a
:class:`ConstellationDeviceManager` in a trio nursery (or ``async with open_constellation``),
watch its :class:`ManagerEvent` stream, read each device's :class:`AgentProfile`. Everything a
typical embedding needs is importable from here. docs/api.md lists the rest of the public
surface (``stellate.testing`` for property-test harnesses, ``stellate.fsm.diagram`` for state
diagrams, the agent server and device agent, the sans-IO protocol layer) and names the modules
that are internal and may change without notice.
"""

from .config import StellateConfig, load_config
from .errors import LocalError, RemoteError, StellateError
from .fsm import AgentProfile, DeviceStatus, IllegalTransition, RetryPolicy
from .manager import ConstellationDeviceManager, EventKind, ManagerEvent, open_constellation
from .timing import Timing

__all__ = [
    "AgentProfile",
    "ConstellationDeviceManager",
    "DeviceStatus",
    "EventKind",
    "IllegalTransition",
    "LocalError",
    "ManagerEvent",
    "RemoteError",
    "RetryPolicy",
    "StellateConfig",
    "StellateError",
    "Timing",
    "__version__",
    "load_config",
    "open_constellation",
]

#: The single place the version is written (pyproject.toml reads it from here).
__version__ = "0.1.0"
