"""The control API on the manager's port: retry, disconnect (after the task), reload; its key.

The devices run on the in-memory network (a real AgentServer and device agents); the control
API is asked over real HTTP on 127.0.0.1, as ``stellate ctl`` and curl ask it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from http_get import Reply, http_get
from manager_support import URL, manager_on, site

from stellate import Timing
from stellate.config import loads_config
from stellate.fsm import DeviceStatus, IllegalTransition
from stellate.manager import ConstellationDeviceManager, ReloadRefused, ReloadReport
from stellate.manager.control import control_actions
from stellate.manager.metrics import serve_fleet
from stellate.protocol import ClientType

S = DeviceStatus
KEY = "control-key-7f3a"
AUTH = {"X-API-Key": KEY}


async def post(port: int, path: str, headers: dict[str, str] | None = None) -> Reply:
    return await http_get(port, path, method="POST", headers=AUTH if headers is None else headers)


@asynccontextmanager
async def control_port(
    manager: ConstellationDeviceManager, nursery: trio.Nursery, **options: object
) -> AsyncIterator[int]:
    actions = control_actions(manager, **{"key": KEY, **options})  # type: ignore[arg-type]
    scope = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await serve_fleet(manager, "127.0.0.1", 0, actions=actions, task_status=task_status)

    port = await nursery.start(serve)
    yield port
    scope.cancel()


async def test_every_action_needs_the_control_key() -> None:
    async with site("a") as (net, nursery, _), manager_on(net) as manager:
        assert await manager.register_device("a", URL)
        async with control_port(manager, nursery, key=None, disabled="off: use --key") as port:
            refused = await post(port, "/api/devices/a/retry")
            assert refused.status == 403 and refused.json() == {"detail": "off: use --key"}
            assert (await post(port, "/api/reload")).status == 403
            assert (await http_get(port, "/api/fleet")).status == 200  # reading stays open
        async with control_port(manager, nursery) as port:
            assert (await post(port, "/api/devices/a/retry", {})).status == 401
            wrong = await post(port, "/api/devices/a/retry", {"X-API-Key": KEY + "x"})
            assert wrong.status == 403 and KEY not in wrong.text
            bearer = await post(port, "/api/devices/a/retry", {"Authorization": f"Bearer {KEY}"})
            assert bearer.status == 200  # idle: nothing to retry
            assert (await http_get(port, "/api/devices/a/retry")).status == 405
            assert (await post(port, "/api/fleet")).status == 405  # the reads take no POST
            assert (await post(port, "/api/devices/a/explode")).status == 404
            page = {"Origin": "http://evil.example", **AUTH}
            assert (await post(port, "/api/devices/a/retry", page)).status == 403
            assert manager.get_device_info("a").status is S.IDLE  # type: ignore[union-attr]


async def test_retry_and_disconnect_one_device_while_the_others_run() -> None:
    timing = Timing(reconnect_delay=0.05, backoff_cap=0.05)
    async with site("a", "b") as (net, nursery, _), manager_on(net, timing=timing) as manager:
        assert await manager.register_device("a", URL)
        assert await manager.register_device("b", URL)
        assert not await manager.register_device("gone", URL, max_retries=1)  # no agent
        async with control_port(manager, nursery) as port:
            unknown = await post(port, "/api/devices/nosuch/retry")
            assert unknown.status == 404 and "'nosuch'" in unknown.json()["detail"]

            nothing = await post(port, "/api/devices/a/retry")
            assert nothing.status == 200 and nothing.json()["accepted"] is False
            assert nothing.json()["detail"] == "nothing to retry: 'a' is idle"

            stopped = await post(port, "/api/devices/a/disconnect")
            assert stopped.status == 202 and stopped.json()["after_task"] is None
            await manager.wait_for("a", S.DISCONNECTED)
            assert manager.get_device_info("b").status is S.IDLE  # type: ignore[union-attr]
            again = await post(port, "/api/devices/a/disconnect")
            assert again.status == 200 and again.json()["accepted"] is False

            back = await post(port, "/api/devices/a/retry")
            assert (
                back.status == 202 and back.json()["detail"] == "retrying 'a' (it was disconnected)"
            )
            await manager.wait_for("a", S.IDLE)

            # the fleet's JSON says when a failed device tries again by itself
            fleet = {
                d["device_id"]: d for d in (await http_get(port, "/api/fleet")).json()["devices"]
            }
            assert 0 < fleet["gone"]["next_attempt_in"] <= 300.0  # retry_failed_after, default
            assert fleet["a"]["next_attempt_in"] is None and fleet["a"]["draining"] is False
            seen = manager.fleet.attempts
            failed = await post(port, "/api/devices/gone/retry")
            assert failed.status == 202
            assert failed.json()["detail"].startswith("retrying 'gone' (it was failed: ")
            await trio.testing.wait_all_tasks_blocked()
            assert manager.fleet.attempts == seen + 1  # a fresh run: its agent is still away
            assert manager.get_device_info("gone").status is S.FAILED  # type: ignore[union-attr]


async def test_disconnect_lets_a_busy_device_finish_its_task_and_take_no_new_one() -> None:
    async with site("a") as (net, nursery, _), manager_on(net) as manager:
        assert await manager.register_device("a", URL)
        registry = manager.device_registry
        registry.set_device_busy("a", "t1")
        async with control_port(manager, nursery) as port:
            answer = await post(port, "/api/devices/a/disconnect")
        assert answer.status == 202 and answer.json()["after_task"] == "t1"
        assert "finishes task 't1'" in answer.json()["detail"]
        await trio.testing.wait_all_tasks_blocked()
        assert registry.get_current_task("a") == "t1"  # not interrupted
        registry.set_device_idle("a")  # the task is over: now it disconnects
        with pytest.raises(IllegalTransition, match="being disconnected once its task is over"):
            registry.set_device_busy("a", "t2")
        await manager.wait_for("a", S.DISCONNECTED)
        await trio.testing.wait_all_tasks_blocked()
        assert manager.get_device_info("a").status is S.DISCONNECTED  # type: ignore[union-attr]
        assert await manager.connect_device("a")  # retried: a new run takes tasks again
        registry.set_device_busy("a", "t3")


class ElsewhereManager(ConstellationDeviceManager):
    """A manager whose fleet share says another manager runs ``far``."""

    def owner_elsewhere(self, device_id: str) -> str | None:
        return "manager-2" if device_id == "far" else None


async def test_a_device_another_manager_runs_answers_409_naming_it() -> None:
    async with (
        site() as (net, nursery, _),
        ElsewhereManager(connector=net, strict=True) as manager,
        control_port(manager, nursery) as port,
    ):
        for action in ("retry", "disconnect"):
            answer = await post(port, f"/api/devices/far/{action}")
            assert answer.status == 409
            assert answer.json()["owner"] == "manager-2"
            assert "'manager-2'" in answer.json()["detail"]
        assert (await post(port, "/api/devices/near/retry")).status == 404


def config_of(*entries: str, manager: str = "task_name: office, reconnect_delay: 0.05") -> str:
    lines = "\n".join(f"  - {{server_url: '{URL}', {entry}}}" for entry in entries)
    return f"manager: {{{manager}}}\ndevices:\n{lines}\n"


async def test_reload_adds_removes_restarts_and_leaves_the_rest_untouched() -> None:
    async with site("a", "b", "c", "d") as (net, _nursery, server):
        first = loads_config(config_of("device_id: a", "device_id: b", "device_id: c"))
        manager = ConstellationDeviceManager.from_config(first, connector=net, strict=True)
        async with manager:
            manager.add_config(first)
            await manager.wait_settled()
            kept = manager.device_registry.lifecycle("a")
            seen = manager.fleet.attempts
            assert server.counts is not None
            registrations = server.counts.registered[ClientType.CONSTELLATION]
            assert registrations == 3
            second = loads_config(
                config_of("device_id: a", "device_id: c, os: plan9", "device_id: d")
            )
            report = await manager.reload(second)
            assert report == ReloadReport(added=("d",), removed=("b",), changed=("c",), unchanged=1)
            assert report.text() == "1 added (d), 1 removed (b), 1 changed (c), 1 unchanged"
            assert "b" not in manager.get_all_devices()
            await manager.wait_settled()
            assert manager.device_registry.lifecycle("a") is kept  # not touched
            assert manager.fleet.attempts == seen + 2  # c restarted, d added; a not
            # the server saw two registrations more (c anew, d), none of a: it did not reconnect
            assert server.counts.registered[ClientType.CONSTELLATION] == registrations + 2
            assert sorted(c.target_id or "" for c in server.registry.constellations()) == [
                "a",
                "c",
                "d",
            ]
            statuses = {d: p.status for d, p in manager.get_all_devices().items()}
            assert statuses == {"a": S.IDLE, "c": S.IDLE, "d": S.IDLE}
            # the manager block is not reloaded: refused whole, nothing changed
            other = loads_config(
                config_of("device_id: a", manager="task_name: other, reconnect_delay: 0.05")
            )
            with pytest.raises(ReloadRefused, match="task_name changed"):
                await manager.reload(other)
            assert set(manager.get_all_devices()) == {"a", "c", "d"}
            slower = loads_config(config_of("device_id: a", manager="task_name: office"))
            with pytest.raises(ReloadRefused, match="timing changed"):
                await manager.reload(slower)


async def test_reload_over_http_reports_or_refuses_and_an_invalid_file_changes_nothing() -> None:
    async with site("a", "b") as (net, nursery, _):
        config = loads_config(config_of("device_id: a"), "devices.yaml")
        manager = ConstellationDeviceManager.from_config(config, connector=net, strict=True)
        texts = [
            "devices:\n  - {device_id: a, server_url: 'ftp://x'}\n",  # invalid
            config_of("device_id: a", manager="task_name: other, reconnect_delay: 0.05"),
            config_of("device_id: a", "device_id: b"),
        ]

        async def reload() -> ReloadReport:
            return await manager.reload(loads_config(texts.pop(0), "devices.yaml"))

        async with manager:
            manager.add_config(config)
            await manager.wait_settled()
            async with control_port(manager, nursery, reload=reload) as port:
                invalid = await post(port, "/api/reload")
                assert invalid.status == 400
                assert invalid.json()["problems"] == [
                    "devices.yaml:2: devices[0].server_url: must be a ws:// or wss:// URL, "
                    "got 'ftp://x'"
                ]
                refused = await post(port, "/api/reload")
                assert refused.status == 409 and "task_name changed" in refused.json()["detail"]
                assert set(manager.get_all_devices()) == {"a"}  # nothing changed twice
                done = await post(port, "/api/reload")
                assert done.status == 200 and done.json()["added"] == ["b"]
                assert (
                    done.json()["detail"]
                    == "reloaded: 1 added (b), 0 removed, 0 changed, 1 unchanged"
                )
            await manager.wait_for("b", S.IDLE)
