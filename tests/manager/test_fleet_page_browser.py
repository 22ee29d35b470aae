"""The fleet page in a real headless browser: Debian's Chromium, driven by Selenium.

A real agent server, real device agents and the real manager on 127.0.0.1; the page is loaded
while the devices are still DISCONNECTED, then they are connected, and the page must show the
counts move until "idle: N", in the state diagram and in the device table, by itself (it polls
``/api/fleet`` every second). Skipped, with the reason, where no browser is installed;
``.ci/run`` installs one (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import shutil
from functools import partial
from typing import Any

import pytest
import trio
from real_time import HANG_GUARD

from stellate import Timing
from stellate.agent import DeviceAgent
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import ConstellationDeviceManager
from stellate.manager.metrics import serve_fleet
from stellate.server import AgentServer

N = 5
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (test extra)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no Chromium/chromedriver: apt-get install chromium chromium-driver (.ci/run does)",
)
WAIT = 30.0  # seconds the browser may take to show a state (it polls every second)


def open_browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def wait_for_text(driver: Any, element_id: str, text: str) -> str:
    """Wait until the element shows ``text``; its whole text then."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        expected_conditions.text_to_be_present_in_element((By.ID, element_id), text)
    )
    found: str = driver.execute_script(
        "return document.getElementById(arguments[0]).textContent", element_id
    )
    return found


# The page redraws every second: read what it shows in one script, never element by element
# (an element found before a redraw is stale after it).
def diagram_labels(driver: Any) -> dict[str, str]:
    labels: dict[str, str] = driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#diagram g.node')]"
        ".map(g => [g.dataset.state, g.querySelector('text').textContent]))"
    )
    return labels


def device_rows(driver: Any) -> list[list[str]]:
    rows: list[list[str]] = driver.execute_script(
        "return [...document.querySelectorAll('#devices tr')]"
        ".map(tr => [...tr.cells].map(td => td.textContent))"
    )
    return rows


async def test_the_fleet_page_shows_a_fleet_coming_up(nursery: trio.Nursery) -> None:
    with trio.fail_after(HANG_GUARD):
        server = AgentServer()
        port = await nursery.start(server.serve, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/ws"
        ids = [f"browser-dev-{i}" for i in range(N)]
        for device_id in ids:
            await nursery.start(DeviceAgent(url, device_id, system_info={}).run)
        manager = ConstellationDeviceManager(task_name="browser", strict=True)
        await nursery.start(manager.run)
        for device_id in ids:
            manager.add_device(AgentProfile(device_id, url), auto_connect=False)
        page_port = await nursery.start(partial(serve_fleet, manager, "127.0.0.1", 0))

        driver = await trio.to_thread.run_sync(open_browser)
        try:
            await trio.to_thread.run_sync(driver.get, f"http://127.0.0.1:{page_port}/")
            before = await trio.to_thread.run_sync(wait_for_text, driver, "counts", "disconnected")
            assert f"disconnected: {N}" in before
            assert (await trio.to_thread.run_sync(diagram_labels, driver))[
                "disconnected"
            ] == f"disconnected: {N}"

            for device_id in ids:  # the fleet registers while the page watches
                await manager.connect_device(device_id)
            summary = await trio.to_thread.run_sync(wait_for_text, driver, "counts", f"idle: {N}")
            assert f"{N} devices" in summary and "disconnected" not in summary
            labels = await trio.to_thread.run_sync(diagram_labels, driver)
            assert labels["idle"] == f"idle: {N}"
            assert labels["disconnected"] == "disconnected: 0"
            assert set(labels) == {status.value for status in DeviceStatus}  # every state
            table = await trio.to_thread.run_sync(device_rows, driver)
            assert sorted(row[0] for row in table) == ids
            # device, status, owner (a hidden column without a fleet store), attempts, ...
            assert all(row[1] == "idle" and row[2] == "\u2014" and row[3] == "0" for row in table)
            errors = await trio.to_thread.run_sync(driver.get_log, "browser")
            assert [e for e in errors if e["level"] == "SEVERE"] == []
        finally:
            await trio.to_thread.run_sync(driver.quit)
        manager.stop()
        await server.shutdown()
        nursery.cancel_scope.cancel()


def choose(driver: Any, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def wait_for_rows(driver: Any, done: Any) -> list[list[str]]:
    """The device rows once ``done(rows)`` holds (the page redraws every second)."""
    from selenium.webdriver.support.ui import WebDriverWait

    found: list[list[str]] = []

    def check(_: Any) -> bool:
        found[:] = device_rows(driver)
        return bool(done(found))

    WebDriverWait(driver, WAIT).until(check)
    return found


async def test_the_fleet_page_sorts_and_filters_by_status_and_shows_the_next_attempt(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(HANG_GUARD):
        server = AgentServer()
        port = await nursery.start(server.serve, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/ws"
        for device_id in ("b-up", "d-up"):
            await nursery.start(DeviceAgent(url, device_id, system_info={}).run)
        # a-gone and c-gone have no agent: refused, they fail and start again by themselves
        # retry_failed_after (an hour) later, which the page shows as their next attempt
        timing = Timing(retry_failed_after=3600.0)
        manager = ConstellationDeviceManager(task_name="browser", strict=True, timing=timing)
        await nursery.start(manager.run)
        for device_id in ("a-gone", "b-up", "c-gone", "d-up"):
            await manager.register_device(device_id, url, max_retries=1)
        page_port = await nursery.start(partial(serve_fleet, manager, "127.0.0.1", 0))

        driver = await trio.to_thread.run_sync(open_browser)
        try:
            await trio.to_thread.run_sync(driver.get, f"http://127.0.0.1:{page_port}/")
            await trio.to_thread.run_sync(wait_for_text, driver, "counts", "failed: 2")
            everything = await trio.to_thread.run_sync(
                wait_for_rows, driver, lambda rows: len(rows) == 4
            )
            assert [row[0] for row in everything] == ["a-gone", "b-up", "c-gone", "d-up"]
            # device, status, owner, attempts, time in state, next attempt, last error
            next_attempts = {row[0]: row[5] for row in everything}
            assert next_attempts["b-up"] == "" and next_attempts["d-up"] == ""
            assert next_attempts["a-gone"].startswith("in 59 min")  # an hour, counting down

            await trio.to_thread.run_sync(choose, driver, "sort", "status")
            by_status = await trio.to_thread.run_sync(
                wait_for_rows, driver, lambda rows: rows[0][0] == "b-up"
            )
            assert [row[0] for row in by_status] == ["b-up", "d-up", "a-gone", "c-gone"]

            await trio.to_thread.run_sync(choose, driver, "filter", "failed")
            failed = await trio.to_thread.run_sync(
                wait_for_rows, driver, lambda rows: len(rows) == 2
            )
            assert {row[1] for row in failed} == {"failed"}
            assert "2 of 4 shown" in await trio.to_thread.run_sync(
                wait_for_text, driver, "shown", "shown"
            )
            # the view is in the URL: loaded again, the page shows the same rows
            link = await trio.to_thread.run_sync(lambda: driver.current_url)
            assert link.endswith("#status=failed&sort=status")
            await trio.to_thread.run_sync(driver.refresh)
            again = await trio.to_thread.run_sync(
                wait_for_rows, driver, lambda rows: len(rows) == 2
            )
            assert [row[0] for row in again] == ["a-gone", "c-gone"]
            errors = await trio.to_thread.run_sync(driver.get_log, "browser")
            assert [e for e in errors if e["level"] == "SEVERE"] == []
        finally:
            await trio.to_thread.run_sync(driver.quit)
        manager.stop()
        await server.shutdown()
        nursery.cancel_scope.cancel()
