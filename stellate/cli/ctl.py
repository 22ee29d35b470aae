"""``stellate ctl``: change a running ``stellate up`` through its control API.

``stellate ctl --manager http://HOST:PORT retry DEVICE`` starts a fresh run of a failed or
disconnected device (one backing off tries at once); ``disconnect DEVICE`` disconnects it (a
device working on a task finishes it first and takes no new one) and it stays disconnected
until retried; ``reload`` makes the manager re-read its devices.yaml (added devices start,
removed ones disconnect, changed ones restart, the rest are not touched).

The manager must serve its port with a control key (``stellate up --metrics-port N
--control-key-file F``, or ``$STELLATE_CONTROL_KEY``); ``ctl`` sends the same key, from
``--control-key-file F``, else ``$STELLATE_CONTROL_KEY``. ``--manager`` defaults to
``$STELLATE_MANAGER``.

Prints what the manager did. Exit status (the rule of every command: ``stellate.cli.exits``):
0 the manager did it (or there was nothing to do: the device is already so), 1 the manager
could not be reached or failed, 2 a usage problem or a request the manager refused (no or wrong
key, unknown device, a device another manager runs, a devices.yaml that does not load): the
reason is printed, and nothing was changed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.parse
from typing import Any

import attrs

from ..text.escape import escape_text
from ..text.redact import add_log_secret, shown
from . import exits
from .configs import plain_text
from .keys import CONTROL_KEY_ENV, read_control_key

#: Where ``--manager`` is taken from when it is not given.
MANAGER_ENV = "STELLATE_MANAGER"
#: How long ``ctl`` waits for the manager's answer (a reload waits for removals to close).
TIMEOUT = 30.0


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "ctl",
        parents=parents,
        help="retry or disconnect a device, or reload devices.yaml, in a running stellate up",
        description=plain_text(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--manager",
        default=None,
        metavar="URL",
        help=f"the manager's port, http://HOST:PORT (stellate up --metrics-port; default "
        f"${MANAGER_ENV})",
    )
    p.add_argument(
        "--control-key-file",
        default=None,
        metavar="FILE",
        help=f"read the control key from FILE (else ${CONTROL_KEY_ENV})",
    )
    actions = p.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="retry, disconnect or reload"
    )
    for name, text in (
        ("retry", "start a fresh run of a failed or disconnected device"),
        ("disconnect", "disconnect a device (after its task); it stays so until retried"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("device", metavar="DEVICE", help="the device id")
    actions.add_parser(
        "reload",
        help="re-read devices.yaml: start added devices, stop removed ones, restart changed ones",
    )
    p.set_defaults(handler=run)


def _fail(message: str, code: int = exits.USAGE) -> int:
    print(f"stellate ctl: {message}", file=sys.stderr)
    return code


@attrs.frozen
class _Target:
    host: str
    port: int
    secure: bool


def _target(url: str) -> _Target | str:
    """The manager's address, or why ``url`` is not one."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--manager {shown(url)}: expected http://HOST:PORT"
    try:
        port = parts.port
    except ValueError:
        return f"--manager {shown(url)}: the port is not a number from 0 to 65535"
    if port is None:
        return f"--manager {shown(url)}: the port is missing (the one --metrics-port serves)"
    if parts.path not in ("", "/"):
        return f"--manager {shown(url)}: give the address only, without a path"
    return _Target(parts.hostname, port, parts.scheme == "https")


def _path(args: argparse.Namespace) -> str:
    if args.action == "reload":
        return "/api/reload"
    device = urllib.parse.quote(args.device, safe="")
    return f"/api/devices/{device}/{args.action}"


def run(args: argparse.Namespace) -> int:
    url = args.manager or os.environ.get(MANAGER_ENV)
    if not url:
        return _fail(f"which manager? give --manager http://HOST:PORT (or ${MANAGER_ENV})")
    target = _target(url)
    if isinstance(target, str):
        return _fail(target)
    try:
        key = read_control_key(args)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read the control key: {exc}")
    if key.value is None:
        return _fail(f"no control key: give --control-key-file FILE or set ${CONTROL_KEY_ENV}")
    add_log_secret(key.value)
    connection_type = http.client.HTTPSConnection if target.secure else http.client.HTTPConnection
    connection = connection_type(target.host, target.port, timeout=TIMEOUT)
    try:
        connection.request("POST", _path(args), headers={"X-API-Key": key.value})
        response = connection.getresponse()
        status, body = response.status, response.read(1 << 20)
    except (OSError, http.client.HTTPException) as exc:
        return _fail(f"cannot reach the manager at {shown(url)}: {exc}", exits.FAILED)
    finally:
        connection.close()
    detail, extra = _detail(body)
    if 200 <= status < 300:
        print(detail)
        return exits.OK
    if status in (401, 403):
        detail += f" ({key.source})"
    for line in extra:
        detail += f"\n  {line}"
    return _fail(f"{status}: {detail}", exits.USAGE if 400 <= status < 500 else exits.FAILED)


def _detail(body: bytes) -> tuple[str, list[str]]:
    """The answer's ``detail`` in words and its ``problems`` (a reload's file), escaped: the
    text comes from the other end of a socket."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("detail"), str):
        text = body.decode("utf-8", errors="replace").strip() or "(no answer body)"
        return f"not a stellate manager's answer: {escape_text(text, limit=200)}", []
    problems = answer.get("problems")
    extra = [escape_text(str(p), limit=400) for p in problems] if isinstance(problems, list) else []
    return escape_text(answer["detail"], limit=2000), extra
