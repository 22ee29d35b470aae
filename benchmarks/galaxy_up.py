"""The reference's constellation manager doing what ``stellate up --once`` does: bring every
device to IDLE on its agent server, then shut down cleanly (a closing handshake per device).

``PYTHON galaxy_up.py URL ID1,ID2,...``, run with the reference's Python and its checkout as the
working directory (``benchmarks.reference`` does both). Prints ``IDLE k`` (how many devices
reached IDLE) as its last line. Imports nothing of stellate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys


async def main(url: str, device_ids: list[str]) -> int:
    from galaxy.client.device_manager import ConstellationDeviceManager

    manager = ConstellationDeviceManager(task_name="bench-galaxy", heartbeat_interval=30.0)
    results = await asyncio.gather(
        *(manager.register_device(d, url, "linux", auto_connect=True) for d in device_ids)
    )
    idle = sum(1 for ok in results if ok)
    await manager.shutdown()
    print(f"IDLE {idle}", flush=True)
    return 0 if idle == len(device_ids) else 1


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # the reference's checkout (not installed as a package)
    logging.disable(logging.WARNING)  # as quiet as `stellate up --once --json` by default
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2].split(","))))
