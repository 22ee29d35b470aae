"""A whole constellation on this machine: an agent server and its device agents on 127.0.0.1.

What ``stellate up`` runs in embedded mode, for anyone who wants to try the manager, write an
example, or test an app against real sockets without setting up servers::

    async with local_agents(example_config()) as config:
        async with open_constellation(config) as manager:
            ...

The server listens on a free port (a busy 5005 must not break a demo); the config handed back
has every device's ``server_url`` pointed at it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import attrs
import trio

from .agent import DeviceAgent
from .config import StellateConfig, load_config
from .protocol import ServerPolicy
from .server import AgentServer

__all__ = [
    "START_TIMEOUT",
    "example_config",
    "example_config_path",
    "local_agents",
    "start_local_agents",
]

#: How long local agents may take to register before giving up (seconds).
START_TIMEOUT = 30.0
#: The example fleet, shipped as package data next to the config loader.
_EXAMPLE_RESOURCE = "example_devices.yaml"


def example_config_path() -> Path:
    """The example ``devices.yaml`` shipped with stellate (three devices, every key commented)."""
    return Path(str(resources.files("stellate.config").joinpath(_EXAMPLE_RESOURCE)))


def example_config() -> StellateConfig:
    """The example fleet, loaded: what ``stellate up`` runs from a directory without a config."""
    return load_config(example_config_path())


async def start_local_agents(
    nursery: trio.Nursery, config: StellateConfig
) -> tuple[StellateConfig, AgentServer]:
    """Start a server and one agent per device on 127.0.0.1; return the config pointed at it.

    Returns only once every agent has registered on the server (``DeviceAgent.run`` reports
    started after its first registration): a manager started earlier would be told "target
    device is not connected". The agents start concurrently and share one telemetry collection
    (they all describe this machine; psutil is not free). They run in ``nursery`` until it is
    cancelled; ``await server.shutdown()`` first closes their sockets cleanly.

    Raises:
        TimeoutError: the agents did not all register within ``START_TIMEOUT``.
    """
    from .adapters.telemetry import DeviceInfoProvider

    api_key, timing = config.manager.api_key, config.manager.timing
    # One timing for the whole local constellation: the server's device lease and its
    # patience with a silent constellation follow the heartbeat the config asks for, and the
    # agents heartbeat as often as that lease expects.
    server = AgentServer(api_key=api_key, policy=ServerPolicy(timing=timing))
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/ws"
    base = DeviceInfoProvider.collect_system_info(config.devices[0].device_id, {})
    agents = [
        DeviceAgent(
            url,
            device.device_id,
            api_key=api_key,
            timing=timing,
            system_info={**base, "device_id": device.device_id},
        )
        for device in config.devices
    ]
    with trio.fail_after(START_TIMEOUT):
        async with trio.open_nursery() as starting:
            for agent in agents:
                starting.start_soon(nursery.start, agent.run)
    devices = tuple(attrs.evolve(device, server_url=url) for device in config.devices)
    return attrs.evolve(config, devices=devices), server


@asynccontextmanager
async def local_agents(config: StellateConfig) -> AsyncIterator[StellateConfig]:
    """Run a local server and agents for ``config``'s devices; yield the config pointed at them.

    On leaving the block the server says goodbye to every connection (1001) and the agents
    stop.

    Raises:
        TimeoutError: as :func:`start_local_agents`.
    """
    async with trio.open_nursery() as nursery:
        local, server = await start_local_agents(nursery, config)
        try:
            yield local
        finally:
            with trio.CancelScope(shield=True):
                await server.shutdown()
            nursery.cancel_scope.cancel()
