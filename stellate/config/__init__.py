"""Configuration: ``devices.yaml`` → a validated, typed :class:`StellateConfig`.

Every problem in a file is reported at once, each as ``FILE:LINE: field: message``.
The submodules (loader, budget, converter, locate, findings) are internal: import from here.
"""

from ..errors import InvalidFields
from .budget import LoadLimits
from .loader import DEFAULT_CONFIG_PATH, load_config, loads_config
from .model import (
    STORE_PASSWORD_ENV,
    DeviceConfig,
    ManagerSettings,
    StellateConfig,
    StoreSettings,
)
from .problems import ConfigError, Problem

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "STORE_PASSWORD_ENV",
    "ConfigError",
    "DeviceConfig",
    "InvalidFields",
    "LoadLimits",
    "ManagerSettings",
    "Problem",
    "StellateConfig",
    "StoreSettings",
    "load_config",
    "loads_config",
]
