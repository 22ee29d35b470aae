"""Configuration: ``devices.yaml`` → a validated, typed :class:`StellateConfig`.

Every problem in a file is reported at once, each as ``FILE:LINE: field: message``.
The submodules (loader, budget, converter, locate, findings) are internal: import from here.
"""

from ..errors import InvalidFields
from .budget import LoadLimits
from .loader import DEFAULT_CONFIG_PATH, load_config, loads_config
from .model import DeviceConfig, ManagerSettings, StellateConfig
from .problems import ConfigError, Problem

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "DeviceConfig",
    "InvalidFields",
    "LoadLimits",
    "ManagerSettings",
    "Problem",
    "StellateConfig",
    "load_config",
    "loads_config",
]
