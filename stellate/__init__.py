"""stellate: bring a constellation of AIP device agents from a line of YAML to task-ready."""

from .fsm import AgentProfile, DeviceStatus, IllegalTransition, RetryPolicy

__all__ = ["AgentProfile", "DeviceStatus", "IllegalTransition", "RetryPolicy"]
__version__ = "0.1.0"
