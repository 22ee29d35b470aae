"""The command line of a shared fleet: ``stellate up --store/--manager-id``, ``stellate status``,
``stellate validate`` on a ``store:`` block — bad input exits 2 naming the flag or the line, a
bad store is said with its reason and never its password, and ``status`` prints what the store
holds (text, and the JSON the issue specifies).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio
from cli_support import interrupt, running, stellate, write_config
from redis_servers import MISSING, redis_binary, redis_server

from stellate.adapters.store_redis import open_redis_store
from stellate.fsm import DeviceStatus
from stellate.store.ownership import unit_of
from stellate.store.port import SnapshotWrite
from stellate.store.snapshot import DeviceSnapshot, encode

PASSWORD = "pa55-not-for-eyes"
DEVICES = 'devices:\n  - {device_id: dev-a, server_url: "ws://127.0.0.1:9/ws"}\n'
needs_redis = pytest.mark.skipif(redis_binary() is None, reason=MISSING)


def config(tmp_path: Path, store: str = "") -> str:
    return write_config(tmp_path, store + DEVICES)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--store", "http://h/0"], "--store: must be a redis:// or rediss:// URL"),
        (["--store", "redis://h/x"], "--store: must name its database as a number"),
        (["--store", "redis://h/0", "--manager-id", "a b"], "--manager-id: must be printable"),
        (["--manager-id", "m1"], "--manager-id names this manager in a fleet store"),
        (["--store", "redis://h/0", "--embedded"], "embedded mode starts a private agent server"),
        (["--store", "redis://h/0", "--once"], "--once stops this manager"),
    ],
)
def test_up_refuses_a_bad_store_flag_naming_it(tmp_path: Path, args: list[str], words: str) -> None:
    result = stellate("up", config(tmp_path), *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr


def test_a_password_given_on_the_command_line_is_never_shown(tmp_path: Path) -> None:
    result = stellate("up", config(tmp_path), "--store", f"redis://:{PASSWORD}@h:0/0")
    assert result.returncode == 2
    assert "redis://***@h:0/0" in result.stderr and PASSWORD not in result.stderr


def test_a_malformed_store_block_is_refused_with_its_line(tmp_path: Path) -> None:
    path = config(tmp_path, f"store:\n  url: redis://:{PASSWORD}@h:99999/0\n  lease: 1\n")
    for command in ("validate", "up", "status"):
        result = stellate(command, path)
        assert result.returncode == 2, (command, result.stderr)
        assert f"{path}:2: store.url: has an invalid port" in result.stderr
        assert f"{path}:3: store.lease: must be between 5 and 600 seconds" in result.stderr
        assert PASSWORD not in result.stderr + result.stdout


def test_validate_names_the_store_a_fleet_is_shared_through(tmp_path: Path) -> None:
    path = config(tmp_path, f"store:\n  url: redis://:{PASSWORD}@10.0.0.5:6380/2\n  lease: 30\n")
    result = stellate("validate", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "OK: 1 devices, shared through the fleet store redis://***@10.0.0.5:6380/2 (lease 30 s)"
    )


def test_status_without_a_store_says_how_to_name_one(tmp_path: Path) -> None:
    result = stellate("status", config(tmp_path))
    assert result.returncode == 2
    assert "has no store: block: give --store URL" in result.stderr


def test_status_of_a_store_nobody_answers_exits_1_naming_it(tmp_path: Path) -> None:
    result = stellate("status", "--store", f"redis://:{PASSWORD}@127.0.0.1:1/0")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "stellate status: fleet store redis://***@127.0.0.1:1/0: unreachable"
    )
    assert PASSWORD not in result.stderr + result.stdout


@needs_redis
@pytest.mark.parametrize("wrong", ["password", "port"])
def test_up_says_why_the_store_is_away_and_retries_running_nothing(
    tmp_path: Path, wrong: str
) -> None:
    with redis_server(password=PASSWORD) as server:
        port = server.port if wrong == "password" else 1
        url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{port}/0"
        kind = "authentication" if wrong == "password" else "unreachable"
        with running("up", config(tmp_path), "--store", url, "--manager-id", "m1") as proc:
            assert proc.stderr is not None
            seen: list[str] = []
            for line in proc.stderr:
                seen.append(line)
                if "retrying" in line:
                    break
            proc.terminate()
            out, err = proc.communicate()
        text = "".join(seen) + err + out
        assert f"fleet store redis://***@127.0.0.1:{port}/0: {kind}" in text
        assert "not acting as owner of any device until it answers, retrying" in text
        assert "dev-a" not in text  # no device ran unowned
        assert PASSWORD not in text


@needs_redis
def test_status_prints_every_manager_and_every_device(tmp_path: Path) -> None:
    with redis_server(password=PASSWORD) as server:
        url = server.url()
        trio.run(_two_devices, url)
        result = stellate("status", "--store", url, "--json")
        assert result.returncode == 0, result.stderr
        fleet = json.loads(result.stdout)
        assert [m["id"] for m in fleet["managers"]] == ["m1"]
        assert fleet["managers"][0]["devices"] == 2
        assert [
            {k: d[k] for k in ("device_id", "status", "owner", "failure_reason")}
            for d in fleet["devices"]
        ] == [
            {"device_id": "dev-a", "status": "idle", "owner": "m1", "failure_reason": None},
            {"device_id": "dev-b", "status": "failed", "owner": "m1", "failure_reason": "gone"},
        ]
        text = stellate("status", "--store", url)
        assert text.returncode == 0
        lines = text.stdout.splitlines()
        assert lines[0] == (
            f"fleet store redis://***@127.0.0.1:{server.port}/0: 1 manager(s), 2 device(s) "
            "(failed 1, idle 1)"
        )
        assert any(line.split()[:2] == ["m1", "2"] for line in lines)
        assert ["dev-b", "failed", "m1", "gone"] in [line.split() for line in lines]
        assert PASSWORD not in text.stdout + text.stderr + result.stdout + result.stderr


async def _two_devices(url: str) -> None:
    """The store as a manager ``m1`` running an IDLE and a FAILED device leaves it."""
    async with open_redis_store(url) as store:
        await store.join("m1", 60)
        writes = []
        for device_id, status, reason in (
            ("dev-a", DeviceStatus.IDLE, None),
            ("dev-b", DeviceStatus.FAILED, "gone"),
        ):
            claimed = await store.claim("m1", [unit_of(device_id)], 60)
            (lease,) = claimed.granted or [
                holder.lease for holder in claimed.taken.values()
            ]  # both may share a slot
            snapshot = DeviceSnapshot(device_id, status, failure_reason=reason)
            writes.append(SnapshotWrite(lease, device_id, encode(snapshot)))
        written = await store.write_snapshots(writes)
        assert written.refused == ()


def test_sighup_to_a_shared_fleet_is_refused_saying_to_restart_and_the_manager_keeps_running(
    tmp_path: Path,
) -> None:
    """A reload is for a manager that runs its whole file: a shared one says so on SIGHUP
    instead of dying without handing its devices over (SIGHUP's default)."""
    url = "redis://127.0.0.1:1/0"  # nobody answers: the manager waits for its store
    with running("up", config(tmp_path), "--store", url, "--manager-id", "m1") as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "retrying" in line:
                break
        proc.send_signal(signal.SIGHUP)
        for line in proc.stderr:
            if "not reloaded" in line:
                break
        assert proc.poll() is None  # still running
        _out, err = interrupt(proc)
    assert line == (
        "stellate up: not reloaded: a fleet shared through a store is not reloaded: restart "
        "each manager with the new file; nothing was changed\n"
    )
    assert proc.returncode == 0, err
