"""A new user's first hour: the real ``stellate`` command, as a subprocess, from any directory.

The embedded default fleet from a directory without a config, ``stellate init``, reasons while
retrying, ``--json`` with every device's reasons, honest summaries and exit codes, ``--timeout``,
NDJSON streaming, and saying up front when a fleet cannot fit the open-file limit.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
from cli_support import (
    REPO,
    STELLATE,
    interrupt,
    lines_until,
    refused_url,
    running,
    stellate,
    unreachable_fleet,
)
from cli_support import write_config as write
from real_time import HANG_GUARD

from stellate.cli.up import AS_WRITTEN_NOTE, EMBEDDED_NOTE
from stellate.config import DEFAULT_CONFIG_PATH
from stellate.local import example_config, example_config_path

EXAMPLE_IDS = ["windowsagent", "linuxagent", "macagent"]


# -- 1. the embedded default works from anywhere ------------------------------------------------


def test_up_from_a_directory_without_config_uses_the_shipped_example(tmp_path: Path) -> None:
    result = stellate("up", "--once", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    profiles = json.loads(result.stdout)
    assert [p["device_id"] for p in profiles] == EXAMPLE_IDS
    assert {p["status"] for p in profiles} == {"idle"}
    assert "using the example fleet shipped with stellate" in result.stderr
    assert str(example_config_path()) in result.stderr
    # Its servers exist nowhere: embedded mode, said on stderr and in every JSON object.
    assert f"stellate up: {EMBEDDED_NOTE}" in result.stderr
    assert all(p["embedded"] is True for p in profiles)


def test_up_uses_the_working_directory_s_config_as_written(tmp_path: Path) -> None:
    """No false green: the file's servers are the ones contacted, not local stand-ins."""
    (tmp_path / "config" / "galaxy").mkdir(parents=True)
    url = refused_url()
    write(
        tmp_path / "config" / "galaxy",
        f"manager: {{reconnect_delay: 0.01}}\n"
        f"devices:\n  - {{device_id: mine, server_url: '{url}', max_retries: 1}}\n",
    )
    result = stellate("up", "--once", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    (profile,) = json.loads(result.stdout)
    assert profile["device_id"] == "mine" and profile["status"] == "failed"
    assert profile["server_url"] == url and profile["embedded"] is False
    assert "connection refused" in profile["failure_reason"]
    assert f"using {DEFAULT_CONFIG_PATH}, as written ({AS_WRITTEN_NOTE})" in result.stderr
    assert "embedded mode" not in result.stderr
    # --embedded (what `make run` passes) asks for the local stand-ins, and says so.
    embedded = stellate("up", "--embedded", "--once", "--json", cwd=tmp_path)
    assert embedded.returncode == 0, embedded.stderr
    (profile,) = json.loads(embedded.stdout)
    assert profile["status"] == "idle" and profile["embedded"] is True
    assert profile["server_url"] != url
    assert f"stellate up: {EMBEDDED_NOTE}" in embedded.stderr


def test_init_then_up_once_contacts_the_servers_the_file_names(tmp_path: Path) -> None:
    """The issue's run: `stellate init`, then `stellate up --once` with no path. Before, it
    ran the embedded fleet, printed `3/3 idle` and exited 0 without contacting anyone."""
    assert stellate("init", cwd=tmp_path).returncode == 0
    result = stellate("up", "--once", "--timeout", "3", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    profiles = json.loads(result.stdout)
    assert [p["device_id"] for p in profiles] == EXAMPLE_IDS
    written = {d.device_id: d.server_url for d in example_config().devices}
    for p in profiles:
        assert p["server_url"] == written[p["device_id"]] and p["embedded"] is False
        assert p["status"] != "idle"
    assert "embedded mode" not in result.stderr


def test_make_run_passes_embedded() -> None:
    """`make run` shows the example fleet on local stand-ins, now that a file found in the
    working directory is used as written."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    (recipe,) = [line for line in makefile.splitlines() if "/stellate up" in line]
    assert "--embedded" in recipe.split()


def test_validate_without_a_file_says_which_it_checked(tmp_path: Path) -> None:
    result = stellate("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "OK: 3 devices\n"
    assert "example fleet shipped with stellate" in result.stderr


def test_init_writes_a_commented_starter_and_will_not_overwrite(tmp_path: Path) -> None:
    result = stellate("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / DEFAULT_CONFIG_PATH
    assert written.read_text(encoding="utf-8") == example_config_path().read_text("utf-8")
    assert written.read_text(encoding="utf-8").count("#") > 20  # commented
    assert f"wrote {DEFAULT_CONFIG_PATH}" in result.stdout
    assert stellate("validate", cwd=tmp_path).stdout == "OK: 3 devices\n"
    again = stellate("init", cwd=tmp_path)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    written.write_text("changed", encoding="utf-8")
    assert stellate("init", "--force", cwd=tmp_path).returncode == 0
    assert written.read_text(encoding="utf-8") == example_config_path().read_text("utf-8")
    custom = stellate("init", "elsewhere/fleet.yaml", cwd=tmp_path)
    assert custom.returncode == 0 and (tmp_path / "elsewhere" / "fleet.yaml").is_file()


def test_the_example_is_package_data_and_the_repo_copy_is_the_same_file() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = pyproject["tool"]["setuptools"]["package-data"]["stellate"]
    assert "config/example_devices.yaml" in package_data
    assert example_config_path().resolve() == (REPO / DEFAULT_CONFIG_PATH).resolve()
    assert [d.device_id for d in example_config().devices] == EXAMPLE_IDS


def test_the_example_says_what_embedded_mode_really_does() -> None:
    text = example_config_path().read_text(encoding="utf-8")
    assert "starts a local agent server at\n# ws://localhost:5005/ws" not in text
    assert "free port of 127.0.0.1" in text


# -- 2. open files ------------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="ulimit")
def test_up_says_up_front_when_a_fleet_cannot_fit_the_open_file_limit(tmp_path: Path) -> None:
    devices = "".join(f"  - {{device_id: d{i}, server_url: 'ws://h/ws'}}\n" for i in range(100))
    config = write(tmp_path, f"devices:\n{devices}")
    result = subprocess.run(
        ["bash", "-c", f'ulimit -n 128 && exec "{STELLATE}" up "{config}" --embedded --once'],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    # Before starting anything, not device by device: no transition was ever shown.
    assert "->" not in result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"stellate up: a fleet of 100 devices in embedded mode \(4 per device\) needs about 400 "
        r"open files, but only \d+ are available \(ulimit -n is 128, hard limit 128\): raise "
        r"the limit \(ulimit -n \d+\) or run fewer devices",
        message,
    ), message
    assert result.stdout == ""


@pytest.mark.skipif(os.name != "posix", reason="ulimit")
def test_a_manager_sharing_a_fleet_warns_of_the_open_file_limit_and_runs_its_part(
    tmp_path: Path,
) -> None:
    # Shared through a store, a manager runs only its part of the fleet: a limit too low for
    # the whole of it is a warning (naming what it can run at once), not a refusal to start.
    devices = "".join(f"  - {{device_id: d{i}, server_url: 'ws://h/ws'}}\n" for i in range(200))
    config = write(tmp_path, f"devices:\n{devices}")
    with socket.socket() as sock:  # a port where no store answers: up keeps trying to join
        sock.bind(("127.0.0.1", 0))
        store = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    command = f'ulimit -n 128 && exec "{STELLATE}" up "{config}" --store {store}'
    proc = subprocess.Popen(["bash", "-c", command], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = iter(proc.stderr.readline, "")
        timer = threading.Timer(HANG_GUARD, proc.kill)
        timer.start()
        try:
            warning = next(line for line in lines if "warning" in line)
            retrying = next(line for line in lines if "retrying" in line)
        finally:
            timer.cancel()
    finally:
        proc.kill()
        proc.wait()
    assert re.fullmatch(
        r"stellate up: warning: a fleet of 200 devices \(1 per device\) needs about \d+ open "
        r"files, but only (\d+) are available \(ulimit -n is 128, hard limit 128\): raise the "
        r"limit \(ulimit -n \d+\) or run fewer devices; sharing the fleet, this manager can run "
        r"at most \1 of its devices at once\n",
        warning,
    ), warning
    assert "unreachable" in retrying or "refused" in retrying.lower(), retrying


# -- 3. reasons while still trying; --json reasons; no "None" -----------------------------------


def test_backoff_lines_say_why_and_when_and_the_json_carries_both_reasons(
    tmp_path: Path,
) -> None:
    config = unreachable_fleet(
        tmp_path, "reconnect_delay: 0.05, backoff_cap: 0.1", gone="max_retries: 3"
    )
    result = stellate("up", config, "--once", "--json", cwd=tmp_path)
    assert result.returncode == 1
    waits = re.findall(r"^gone: connecting -> backoff: (.+)$", result.stderr, re.MULTILINE)
    assert len(waits) == 2, result.stderr
    for attempt, line in enumerate(waits, start=2):
        assert re.fullmatch(rf".*[Cc]onnection refused.*; attempt {attempt}/3 in \d+\.\d s", line)
    (profile,) = json.loads(result.stdout)
    assert profile["failure_reason"].startswith("gave up after 3 attempts: ")
    assert "refused" in profile["failure_reason"].lower()
    assert profile["last_error"] and "refused" in profile["last_error"].lower()


def test_the_text_summary_omits_what_is_unknown(tmp_path: Path) -> None:
    config = unreachable_fleet(
        tmp_path, "reconnect_delay: 0.05, backoff_cap: 0.1", gone="max_retries: 1"
    )
    result = stellate("up", config, "--once", cwd=tmp_path)
    assert result.returncode == 1
    assert "None" not in result.stdout
    assert "  Reason: gave up after 1 attempts: " in result.stdout
    assert "System Info" not in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("stellate up: 0/1 idle, 1 failed")


# -- 4. honest summaries, exit codes, --timeout, NDJSON -----------------------------------------


def test_timeout_exits_1_naming_the_devices_still_pending(tmp_path: Path) -> None:
    config = unreachable_fleet(
        tmp_path, "reconnect_delay: 600, backoff_cap: 600", slow="max_retries: 5"
    )
    # The refused first attempt has 3 real seconds (a loaded machine can take more than 1);
    # its backoff (at least 60 s) then outlasts the --timeout for sure.
    result = stellate("up", config, "--once", "--timeout", "3", "--json", cwd=tmp_path)
    assert result.returncode == 1
    assert "--timeout 3 s passed with 1 device(s) still pending: slow (backoff: " in result.stderr
    assert json.loads(result.stdout)[0]["status"] == "backoff"


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_timeout_must_be_positive_seconds(tmp_path: Path, value: str) -> None:
    result = stellate("up", "--once", "--timeout", value, cwd=tmp_path)
    assert result.returncode == 2 and "--timeout" in result.stderr


def test_timeout_needs_once(tmp_path: Path) -> None:
    result = stellate("up", "--timeout", "5", cwd=tmp_path)
    assert result.returncode == 2
    assert "--timeout applies to --once" in result.stderr


def test_up_without_once_exits_1_when_every_device_failed_for_good(tmp_path: Path) -> None:
    """With ``retry_failed_after: null`` FAILED waits for the owner: a fleet with every device
    failed is over, and says so with exit 1 for a supervisor."""
    config = unreachable_fleet(
        tmp_path,
        "reconnect_delay: 0.05, backoff_cap: 0.1, retry_failed_after: null",
        a="max_retries: 1",
        b="max_retries: 1",
    )
    result = stellate("up", config, cwd=tmp_path)
    assert result.returncode == 1
    assert "fleet up" not in result.stdout + result.stderr
    assert "stellate up: every device failed (0/2 idle, 2 failed (a: gave up" in result.stderr


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child process")
def test_up_keeps_a_failed_fleet_that_retries_by_itself(tmp_path: Path) -> None:
    """With ``retry_failed_after`` set (the default is 300 s) every device failing is not the
    end: stdout shows each failed device starting a fresh run once the setting has passed, and
    the run ends as a kept fleet does (Ctrl-C: exit 0)."""
    config = unreachable_fleet(
        tmp_path,
        "reconnect_delay: 0.05, backoff_cap: 0.1, retry_failed_after: 0.3",
        a="max_retries: 1",
    )
    with running("up", config, cwd=tmp_path) as proc:
        lines = lines_until(proc, lambda seen: "wait over" in seen[-1] and "failed" in seen[-1])
        _out, err = interrupt(proc)
    text = "".join(lines)
    assert "a: connecting -> failed: gave up after 1 attempts" in text
    assert "retrying in 0.3 s" in text  # the failure says when the next run starts
    assert "a: failed -> connecting (wait over, retrying)" in lines[-1]
    assert proc.returncode == 0, err
    assert "every device failed (0/1 idle, 1 failed" in err
    assert "each starts a fresh run 0.3 s after it failed (retry_failed_after)" in err


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child process")
def test_up_json_without_once_streams_one_event_per_line(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "devices:\n"
        "  - {device_id: one, server_url: 'ws://h/ws'}\n"
        "  - {device_id: two, server_url: 'ws://h/ws'}\n",
    )
    with running("up", config, "--embedded", "--json", cwd=tmp_path) as proc:
        # each line arrives as it happens (flushed)
        seen = lines_until(
            proc, lambda lines: sum(json.loads(x)["event"] == "ready" for x in lines) == 2
        )
        events: list[dict[str, object]] = [json.loads(line) for line in seen]
        rest, err = interrupt(proc)
    assert proc.returncode == 0, err
    for line in rest.splitlines():  # the disconnects, still one object per line
        events.append(json.loads(line))
    first = events[0]
    assert list(first) == [
        "time",
        "event",
        "device_id",
        "trigger",
        "source",
        "dest",
        "reason",
        "retry_in",
        "profile",
        "embedded",
    ]
    assert all(e["embedded"] is True for e in events)  # --embedded: local stand-in servers
    assert (first["source"], first["dest"], first["trigger"]) == (
        "disconnected",
        "connecting",
        "connect",
    )
    ready = [e for e in events if e["event"] == "ready"]
    assert {e["device_id"] for e in ready} == {"one", "two"}
    assert "fleet up: 2/2 idle" in err
