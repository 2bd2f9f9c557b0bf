"""`sluice usage`, `db migrate` and `sign`: the data path."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared import sharedkey
from shared.cli.common import print_rows, services
from shared.ids import parse_log_type, parse_workspace_id

DEMO_WORKSPACE_FILE = Path(".local/demo-workspace.json")


def cmd_usage(args: argparse.Namespace) -> int:
    rows = services().database.list_usage(parse_workspace_id(args.workspace))
    print_rows(
        [
            {
                "hour": r.hour.isoformat(),
                "log_type": r.log_type,
                "computer": r.computer,
                "records": r.records,
                "bytes": r.bytes,
            }
            for r in rows
        ],
        as_json=args.json,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = services().database.migrate()
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    """Prints the request headers of a signed Data Collector post, one per line (for `curl -H @file`)."""
    if args.demo:
        demo = json.loads(DEMO_WORKSPACE_FILE.read_text(encoding="utf-8"))
        workspace_id, key = demo["workspace_id"], demo["primary_key"]
    elif args.workspace and args.key:
        workspace_id, key = parse_workspace_id(args.workspace), args.key
    else:
        raise SystemExit("sluice sign: give --demo, or --workspace and --key")
    body = Path(args.file).read_bytes() if args.file else (args.body or "").encode("utf-8")
    x_ms_date = sharedkey.rfc1123(datetime.now(UTC))
    content_type = "application/json"
    authorization = sharedkey.authorization_header(
        workspace_id, key, content_length=len(body), content_type=content_type, x_ms_date=x_ms_date
    )
    print(f"Authorization: {authorization}")
    print(f"Content-Type: {content_type}")
    print(f"Log-Type: {parse_log_type(args.log_type)}")
    print(f"x-ms-date: {x_ms_date}")
    return 0


def register(commands: Any) -> None:
    usage = commands.add_parser("usage", help="hourly volume aggregates of a workspace")
    usage.add_argument("--workspace", required=True)
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(run=cmd_usage)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="apply pending migrations").set_defaults(run=cmd_migrate)

    sign = commands.add_parser("sign", help="print SharedKey-signed headers for a Data Collector post")
    sign.add_argument("--demo", action="store_true", help=f"use the workspace in {DEMO_WORKSPACE_FILE}")
    sign.add_argument("--workspace")
    sign.add_argument("--key", help="base64 shared key")
    sign.add_argument("--log-type", required=True)
    source = sign.add_mutually_exclusive_group(required=True)
    source.add_argument("--body", help="the exact body that will be sent")
    source.add_argument("--file", help="file holding the exact body that will be sent")
    sign.set_defaults(run=cmd_sign)
