"""``stellate status``: the whole fleet as its store holds it — every manager, every device.

Reads a fleet store shared by several managers (``stellate up --store``; docs/scaling.md):
each live manager (id, devices it owns, units it holds, when it last renewed) and each device
(its status as its owner last wrote it, its owner, its failure reason). ``--json`` prints
``{"managers": [{"id": ...}, ...], "devices": [{"device_id": ..., "status": ..., "owner":
..., "failure_reason": ...}, ...]}``.

The store is ``--store URL``, else the ``store:`` block of CONFIG (or of the devices.yaml
``stellate up`` would use). Its password comes from the URL, the block's ``password_file`` or
``STELLATE_STORE_PASSWORD``, and is never shown. Exit status: 0 the fleet was read, 1 the store
could not be read (the reason names the store), 2 a usage or configuration problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any

import trio

from ..config.model import StoreSettings
from ..store.port import StoreUnavailable
from ..store.report import FleetReport, fleet_report
from ..text.escape import escape_text
from ..text.redact import add_log_secret
from ..text.urls import parse_store_url, store_url_problems
from . import exits
from .configs import load_chosen, plain_text


def add_command(subparsers: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "status",
        parents=parents,
        help="every manager and every device of a fleet shared through a store",
        description=plain_text(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="a devices.yaml whose store: block names the store (when --store is not given)",
    )
    p.add_argument("--store", default=None, metavar="URL", help="the fleet store to read")
    p.add_argument("--json", action="store_true", help="print the fleet as one JSON object")
    p.add_argument(
        "--cafile", default=None, help="CA certificates that sign a rediss:// store's certificate"
    )
    p.set_defaults(handler=run)


def _fail(message: str, code: int = exits.USAGE) -> int:
    print(f"stellate status: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    if args.store is not None:
        problems = store_url_problems(args.store)
        if problems:
            return _fail(f"--store: {problems[0]}")
        settings = StoreSettings(url=args.store, cafile=args.cafile)
    else:
        config = load_chosen(args.config, "status")
        if config is None:
            return exits.USAGE
        if config.store is None:
            return _fail(f"{config.source} has no store: block: give --store URL")
        settings = config.store
    if args.cafile is not None and not os.path.isfile(args.cafile):
        return _fail(f"--cafile {args.cafile}: no such file")
    try:
        password = settings.password(os.environ)
    except OSError as exc:
        return _fail(f"store.password_file {settings.password_file}: {exc.strerror or exc}")
    add_log_secret(password)
    add_log_secret(parse_store_url(settings.url).password)
    try:
        report = trio.run(_read, settings, password, args.cafile or settings.cafile)
    except StoreUnavailable as exc:
        return _fail(str(exc), exits.FAILED)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_report(report, parse_store_url(settings.url).safe, sys.stdout)
    return exits.OK


async def _read(settings: StoreSettings, password: str | None, cafile: str | None) -> FleetReport:
    from ..adapters.store_redis import open_redis_store

    async with open_redis_store(settings.url, password=password, cafile=cafile) as store:
        return fleet_report(await store.view())


def print_report(report: FleetReport, store: str, out: Any) -> None:
    """The report as two aligned tables (text from the store escaped: one line each)."""
    counts = Counter(device.status or "unreadable" for device in report.devices)
    summary = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    print(
        f"fleet store {store}: {len(report.managers)} manager(s), "
        f"{len(report.devices)} device(s)" + (f" ({summary})" if summary else ""),
        file=out,
    )
    _table(
        ["MANAGER", "DEVICES", "UNITS", "LAST RENEWAL"],
        [
            [escape_text(m.id), str(m.devices), str(m.units), f"{m.last_renewal:.1f} s ago"]
            for m in report.managers
        ],
        out,
    )
    _table(
        ["DEVICE", "STATUS", "OWNER", "FAILURE REASON"],
        [
            [
                escape_text(d.device_id),
                d.status or "?",
                escape_text(d.owner) if d.owner is not None else "-",
                escape_text(d.failure_reason or d.problem or "", limit=200),
            ]
            for d in report.devices
        ],
        out,
    )


def _table(header: list[str], rows: list[list[str]], out: Any) -> None:
    print(file=out)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )
