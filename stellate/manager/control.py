"""The control API: what an operator changes while the fleet runs, on the manager's HTTP port.

``stellate up --metrics-port N --control-key-file F`` serves these beside the fleet page
(:func:`stellate.manager.metrics.serve_fleet`), and ``stellate ctl`` calls them:

* ``POST /api/devices/{device_id}/retry`` — :meth:`ConstellationDeviceManager.retry`: a
  failed or disconnected device starts a fresh run, one backing off tries at once (202);
  a device connecting or active has nothing to retry (200, ``"accepted": false``);
* ``POST /api/devices/{device_id}/disconnect`` —
  :meth:`ConstellationDeviceManager.disconnect`: the device disconnects and stays
  DISCONNECTED until retried; a device working on a task finishes it first and takes no new
  one (202, ``"after_task"`` names the task);
* ``POST /api/reload`` — re-read devices.yaml (:meth:`ConstellationDeviceManager.reload`):
  200 with what was added, removed, restarted and left untouched; 400 with every
  ``FILE:LINE: field: message`` of a file that does not load, 409 when only a restart can
  apply it; nothing changes in either case.

Every action needs the control key (``X-API-Key`` or ``Authorization: Bearer``), compared in
constant time by the listener (``stellate.adapters.ws_server.HttpActions``); without one
configured, each answers 403 saying how to enable them. A device this manager does not know
answers 404 naming it; a device another manager of a shared fleet runs answers 409 naming that
manager (``owner``). Answers are JSON: ``detail`` says what happened in words.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..adapters.ws_server import HttpAction, HttpActions, HttpRequest, HttpResponse
from ..config import ConfigError
from ..fsm import OwnerCommand
from ..text.escape import escape_text
from .constellation import ConstellationDeviceManager
from .registry import DeviceOwnedElsewhere, UnknownDevice
from .reload import ReloadRefused, ReloadReport

__all__ = [
    "CONTROL_DISABLED",
    "DISCONNECT_PATH",
    "RELOAD_PATH",
    "RETRY_PATH",
    "Reload",
    "control_actions",
]

logger = logging.getLogger(__name__)

RETRY_PATH = "/api/devices/{device_id}/retry"
DISCONNECT_PATH = "/api/devices/{device_id}/disconnect"
RELOAD_PATH = "/api/reload"
#: What an action answers (403) when no control key is configured.
CONTROL_DISABLED = "the control API is disabled: no control key is configured"

#: Re-reads devices.yaml and applies it: ``manager.reload(config)`` with the file loaded again.
#: Raises ``ConfigError`` (the file does not load) or ``ReloadRefused``.
Reload = Callable[[], Awaitable[ReloadReport]]


def _shown(device_id: str) -> str:
    return escape_text(repr(device_id), limit=140)


def _device_action(
    manager: ConstellationDeviceManager, act: Callable[[str, str], HttpResponse]
) -> HttpAction:
    """An action on one device: 404 unknown, 409 owned by another manager, else ``act``."""

    async def action(request: HttpRequest) -> HttpResponse:
        device_id = request.params["device_id"]
        try:
            owner = manager.owner_elsewhere(device_id)
            if owner is not None:  # not in this manager's registry: say who runs it
                raise DeviceOwnedElsewhere(device_id, owner)
            return act(device_id, request.remote)
        except DeviceOwnedElsewhere as exc:
            return HttpResponse.json(
                {"detail": str(exc), "device_id": device_id, "owner": exc.owner}, status=409
            )
        except UnknownDevice:
            return HttpResponse.json(
                {
                    "detail": f"no device {_shown(device_id)} in this manager",
                    "device_id": device_id,
                },
                status=404,
            )

    return action


def control_actions(
    manager: ConstellationDeviceManager,
    *,
    key: str | None,
    reload: Reload | None = None,
    disabled: str = CONTROL_DISABLED,
) -> HttpActions:
    """The control API's actions for ``manager``, behind ``key`` (None: each answers 403
    with ``disabled``, which should say how to enable them). ``reload``: how to re-read the
    file (None: ``/api/reload`` answers 501, the manager was not started from one)."""

    def retry(device_id: str, peer: str) -> HttpResponse:
        status = manager.device_registry.lifecycle(device_id).state.value
        reason = manager.failure_reason(device_id)
        if not manager.retry(device_id):
            return HttpResponse.json(
                {
                    "device_id": device_id,
                    "action": "retry",
                    "accepted": False,
                    "status": status,
                    "detail": f"nothing to retry: {_shown(device_id)} is {status}",
                }
            )
        logger.info("control: retry %s (was %s) from %s", _shown(device_id), status, peer)
        was = f"{status}: {reason}" if reason else status
        return HttpResponse.json(
            {
                "device_id": device_id,
                "action": "retry",
                "accepted": True,
                "status": status,
                "detail": f"retrying {_shown(device_id)} (it was {was})",
            },
            status=202,
        )

    def disconnect(device_id: str, peer: str) -> HttpResponse:
        lifecycle = manager.device_registry.lifecycle(device_id)
        status = lifecycle.state.value
        if lifecycle.serving(OwnerCommand.DISCONNECT) is None:
            return HttpResponse.json(
                {
                    "device_id": device_id,
                    "action": "disconnect",
                    "accepted": False,
                    "status": status,
                    "after_task": None,
                    "detail": f"nothing to disconnect: {_shown(device_id)} is {status}",
                }
            )
        task = manager.disconnect(device_id, after_task=True)
        logger.info("control: disconnect %s (was %s) from %s", _shown(device_id), status, peer)
        detail = (
            f"disconnecting {_shown(device_id)}; it stays disconnected until retried"
            if task is None
            else f"{_shown(device_id)} finishes task {_shown(task)}, takes no new one, then "
            "disconnects; it stays disconnected until retried"
        )
        return HttpResponse.json(
            {
                "device_id": device_id,
                "action": "disconnect",
                "accepted": True,
                "status": status,
                "after_task": task,
                "detail": detail,
            },
            status=202,
        )

    async def reload_action(request: HttpRequest) -> HttpResponse:
        if reload is None:
            return HttpResponse.json(
                {"detail": "reload is not available: this manager was not started from a file"},
                status=501,
            )
        try:
            report = await reload()
        except ConfigError as exc:
            problems = [str(problem) for problem in exc.problems]
            return HttpResponse.json(
                {
                    "detail": f"not reloaded: the file has {len(problems)} problem(s); "
                    "nothing was changed",
                    "problems": problems,
                },
                status=400,
            )
        except ReloadRefused as exc:
            return HttpResponse.json({"detail": str(exc)}, status=409)
        logger.info("control: reload from %s: %s", request.remote, report.text())
        return HttpResponse.json(
            {"detail": f"reloaded: {report.text()}", **report.to_dict()}, status=200
        )

    return HttpActions(
        {
            RETRY_PATH: _device_action(manager, retry),
            DISCONNECT_PATH: _device_action(manager, disconnect),
            RELOAD_PATH: reload_action,
        },
        key=key,
        disabled=disabled,
    )
