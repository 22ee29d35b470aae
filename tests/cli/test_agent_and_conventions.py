"""The agent stops on errors it cannot fix, and the CLI follows the conventions users expect.

Every test runs the real ``stellate`` command in a subprocess against a real server on
127.0.0.1 (``stellate serve --port 0``, its port read from its first line).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
from cli_support import lines_until, running, stellate
from real_time import HANG_GUARD

from stellate.cli import build_parser

KEY = "the-right-key"


@attrs.define
class Served:
    """A running ``stellate serve``: its URL, and its stderr once it has stopped."""

    url: str
    stderr: str = ""


@contextmanager
def keyed_server() -> Iterator[Served]:
    """A ``stellate serve`` with an API key on a free port of 127.0.0.1, stopped on exit."""
    with running("serve", "--port", "0", env={"STELLATE_API_KEY": KEY}) as proc:
        (line,) = lines_until(proc, lambda lines: True)
        match = re.search(r"on (ws://127\.0\.0\.1:\d+/ws)", line)
        assert match, line
        served = Served(match.group(1))
        yield served
        proc.terminate()
        served.stderr = proc.communicate(timeout=HANG_GUARD)[1]


@pytest.fixture
def server_url() -> Iterator[str]:
    """A ``stellate serve`` with an API key on a free port of 127.0.0.1."""
    with keyed_server() as served:
        yield served.url


# -- 5. the agent stops on errors it cannot fix ---------------------------------------------------


def test_agent_with_a_wrong_key_stops_with_status_2(server_url: str) -> None:
    result = stellate(
        "agent", "--server", server_url, "--device-id", "dev-a", "--api-key", "wrong-key-123"
    )
    assert result.returncode == 2
    # At once: one refused attempt, no wait, no second try.
    assert result.stderr.count("rejected the API key (HTTP 403); not retrying") == 1
    assert "reconnecting" not in result.stderr and "cannot connect" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "stellate agent: dev-a: server rejected the API key (HTTP 403), the key from --api-key; "
        "stopped"
    )
    assert (
        "WARNING stellate.agent.device_agent: dev-a: server rejected the API key" in result.stderr
    )
    assert "wrong-key-123" not in result.stderr  # the key is never shown


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:5005/ws", "must be a ws:// or wss:// URL"),
        ("127.0.0.1:5005", "must be a ws:// or wss:// URL"),
        ("ws:///ws", "has no host"),
        ("ws://127.0.0.1:99999/ws", "invalid port"),
    ],
)
def test_agent_with_a_malformed_server_url_stops_with_status_2(url: str, why: str) -> None:
    result = stellate("agent", "--server", url, "--device-id", "x")
    assert result.returncode == 2
    assert result.stderr.startswith("stellate agent: --server ") and why in result.stderr


def test_agent_whose_id_is_taken_stops_with_status_2(server_url: str) -> None:
    env = {"STELLATE_API_KEY": KEY}
    with running("agent", "--server", server_url, "--device-id", "twin", env=env) as first:
        assert "1 agent(s) registered" in lines_until(first, lambda lines: True)[0]
        second = stellate("agent", "--server", server_url, "--device-id", "twin", env=env)
    assert second.returncode == 2
    assert (
        "WARNING stellate.agent.device_agent: twin: registration rejected: "
        "client_id 'twin' is already " in second.stderr
    )
    assert second.stderr.strip().endswith("; stopped")


# -- 6. conventions -------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_serve_port_is_validated(port: str) -> None:
    result = stellate("serve", "--port", port)
    assert result.returncode == 2
    assert "argument --port: " in result.stderr
    assert "a port is 1-65535" in result.stderr or "expected a port number" in result.stderr


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_argument_has_help() -> None:
    missing = [
        f"{name} {action.dest}"
        for name, sub in _subparsers().items()
        for action in sub._actions
        if action.help is None
    ]
    assert missing == []


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_help_has_no_rest_markup(command: str) -> None:
    result = stellate(command, "--help")
    assert result.returncode == 0
    assert "``" not in result.stdout and not re.search(r":\w+:`", result.stdout)


def test_one_v_shows_stellate_debug_but_not_transitions_noise(tmp_path: Path) -> None:
    config = tmp_path / "devices.yaml"
    config.write_text("devices:\n  - {device_id: one, server_url: 'ws://h/ws'}\n", "utf-8")
    quiet = stellate("up", str(config), "--embedded", "--once")
    once = stellate("up", str(config), "--embedded", "--once", "-v")
    twice = stellate("-v", "up", str(config), "--embedded", "--once", "-v")
    assert quiet.returncode == once.returncode == twice.returncode == 0
    assert " DEBUG stellate." not in quiet.stderr
    assert " DEBUG stellate." in once.stderr
    assert "transitions" not in once.stderr
    assert " DEBUG transitions." in twice.stderr


# -- 3. a wrong key is final for the manager too --------------------------------------------------


def up_failure(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """The failure reason of the one device of ``config`` after ``stellate up --once``."""
    result = stellate("up", str(config), "--once", "--json", *args, env=env)
    assert result.returncode == 1, result.stderr
    (profile,) = json.loads(result.stdout)
    assert profile["connection_attempts"] == 1, profile
    assert KEY not in result.stdout + result.stderr and "wrong-one" not in result.stderr
    reason: str = profile["failure_reason"]
    return reason


def test_up_takes_the_key_by_the_documented_rule_and_names_its_source(
    server_url: str, tmp_path: Path
) -> None:
    """--api-key-file, then $STELLATE_API_KEY, then manager.api_key; a URL's own token= wins.

    The server has the key and no device agent: an accepted key ends in "registration
    rejected: Target device ... is not connected", a refused one names where it came from.
    """
    accepted = "registration rejected: Target device 'dev-a' is not connected"
    refused = "server rejected the API key"
    right, wrong = tmp_path / "right.key", tmp_path / "wrong.key"
    right.write_text(KEY + "\n", encoding="utf-8")
    wrong.write_text("wrong-one\n", encoding="utf-8")

    def config(api_key: str | None, url: str = server_url) -> Path:
        path = tmp_path / "devices.yaml"
        manager = f"manager: {{api_key: {api_key}}}\n" if api_key else ""
        path.write_text(
            f"{manager}devices:\n  - {{device_id: dev-a, server_url: '{url}', max_retries: 5}}\n",
            encoding="utf-8",
        )
        return path

    env_wrong = {"STELLATE_API_KEY": "wrong-one"}
    env_right = {"STELLATE_API_KEY": KEY}
    none = {"STELLATE_API_KEY": ""}
    # The YAML alone.
    assert up_failure(config(KEY), env=none) == accepted
    in_yaml = up_failure(config("wrong-one"), env=none)
    assert in_yaml == f"{refused} (the key from manager.api_key in {tmp_path / 'devices.yaml'})"
    # The environment before the YAML.
    assert up_failure(config("wrong-one"), env=env_right) == accepted
    assert up_failure(config(KEY), env=env_wrong) == f"{refused} (the key from $STELLATE_API_KEY)"
    # The key file before both.
    assert up_failure(config("wrong-one"), "--api-key-file", str(right), env=env_wrong) == accepted
    from_file = up_failure(config(KEY), "--api-key-file", str(wrong), env=env_right)
    assert from_file == f"{refused} (the key from --api-key-file {wrong})"
    # A URL's own token= before everything.
    assert up_failure(config(None, f"{server_url}?token={KEY}"), env=env_wrong) == accepted
    own = up_failure(config(None, f"{server_url}?token=wrong-one"), env=env_right)
    assert own == f"{refused} (the token= in its server_url)"
    # No key at all.
    assert up_failure(config(None), env=none) == f"{refused} (no key was given)"


def test_serve_logs_refused_keys_with_the_peer_rate_limited(tmp_path: Path) -> None:
    """At the default level: before, 52 refused keys left nothing in the server's log."""
    with keyed_server() as served:
        devices = "".join(
            f"  - {{device_id: d{i}, server_url: '{served.url}'}}\n" for i in range(5)
        )
        config = tmp_path / "devices.yaml"
        config.write_text(f"manager: {{api_key: wrong-one}}\ndevices:\n{devices}", "utf-8")
        assert stellate("up", str(config), "--once", "--json").returncode == 1
    err = served.stderr
    refused = re.findall(r"WARNING \S+: refused (127\.0\.0\.1:\d+): wrong token \(403\)", err)
    assert len(refused) == 3, err  # five refusals: three lines a minute, the rest counted
    assert "wrong-one" not in err and KEY not in err


def test_up_refuses_an_empty_or_missing_key_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_text("\n", encoding="utf-8")
    for path, why in ((empty, "the key file is empty"), (tmp_path / "absent", "No such file")):
        result = stellate("up", "--once", "--embedded", "--api-key-file", str(path))
        assert result.returncode == 2 and "stellate up: cannot read the API key" in result.stderr
        assert why in result.stderr


def test_up_with_a_wrong_key_fails_at_once_saying_so(server_url: str, tmp_path: Path) -> None:
    config = tmp_path / "devices.yaml"
    config.write_text(
        f"manager: {{api_key: not-the-key}}\ndevices:\n  - {{device_id: dev-a, server_url: "
        f"'{server_url}', max_retries: 5}}\n",
        encoding="utf-8",
    )
    result = stellate("up", str(config), "--once", "--json")
    assert result.returncode == 1
    (profile,) = json.loads(result.stdout)
    assert profile["connection_attempts"] == 1  # not five attempts with backoff in between
    assert profile["failure_reason"].startswith("server rejected the API key")
    assert "dev-a: connecting -> failed: server rejected the API key" in result.stderr
    assert "-> backoff" not in result.stderr
    assert "not-the-key" not in result.stdout + result.stderr
