"""`sluice`: the operators' command. Settings come from the environment, then from
`local.settings.json` in the current folder (as `func` does), so it works beside `make run`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared import sharedkey
from shared.errors import SluiceError
from shared.ids import parse_log_type, parse_workspace_id
from shared.localsettings import LOCAL_SETTINGS_FILE, load_local_settings
from shared.plans import DEFAULT_PLAN, Plan

DEMO_WORKSPACE_FILE = Path(".local/demo-workspace.json")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _services() -> Any:
    from shared.runtime import services

    return services()


def cmd_usage(args: argparse.Namespace) -> int:
    workspace_id = parse_workspace_id(args.workspace)
    rows = _services().database.list_usage(workspace_id)
    if args.json:
        _print_json(
            [
                {
                    "hour": r.hour.isoformat(),
                    "log_type": r.log_type,
                    "computer": r.computer,
                    "records": r.records,
                    "bytes": r.bytes,
                }
                for r in rows
            ]
        )
        return 0
    print(f"{'hour':<26} {'log_type':<24} {'computer':<24} {'records':>10} {'bytes':>12}")
    for r in rows:
        print(f"{r.hour.isoformat():<26} {r.log_type:<24} {r.computer:<24} {r.records:>10} {r.bytes:>12}")
    return 0


def cmd_workspace_create(args: argparse.Namespace) -> int:
    from shared.workspaces import create_workspace

    current = _services()
    created = create_workspace(
        registry=current.registry, secrets=current.secrets, containers=current.raw_store, plan=Plan(args.plan)
    )
    result = {
        "workspace_id": created.workspace.workspace_id,
        "plan": created.workspace.plan.value,
        "primary_key": created.primary_key,
        "secondary_key": created.secondary_key,
    }
    if args.json:
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def cmd_workspace_list(args: argparse.Namespace) -> int:
    workspaces = _services().registry.list_workspaces()
    rows = [
        {
            "workspace_id": w.workspace_id,
            "plan": w.plan.value,
            "state": w.state.value,
            "created_at": w.created_at.isoformat(),
        }
        for w in workspaces
    ]
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print(f"{row['workspace_id']}  {row['plan']:<9} {row['state']:<9} {row['created_at']}")
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    applied = _services().database.migrate()
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


def cmd_retention_run(args: argparse.Namespace) -> int:
    from shared.retention import run_retention

    current = _services()
    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    reports = run_retention(now=now, registry=current.registry, raw_store=current.raw_store)
    _print_json(
        [
            {
                "workspace_id": r.workspace_id,
                "days_deleted": [d.isoformat() for d in r.days_deleted],
                "blobs_deleted": r.blobs_deleted,
            }
            for r in reports
        ]
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description="Operate a Sluice deployment.")
    commands = parser.add_subparsers(dest="command", required=True)

    usage = commands.add_parser("usage", help="hourly volume aggregates of a workspace")
    usage.add_argument("--workspace", required=True)
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(run=cmd_usage)

    workspace = commands.add_parser("workspace", help="manage workspaces (tenants)")
    workspace_commands = workspace.add_subparsers(dest="workspace_command", required=True)
    create = workspace_commands.add_parser("create", help="create a workspace with new keys")
    create.add_argument("--plan", choices=[p.value for p in Plan], default=DEFAULT_PLAN.value)
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=cmd_workspace_create)
    listing = workspace_commands.add_parser("list", help="list workspaces")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_workspace_list)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("migrate", help="apply pending migrations").set_defaults(run=cmd_db_migrate)

    retention = commands.add_parser("retention", help="raw-data retention")
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_commands.add_parser("run", help="purge what is past each workspace's window now")
    run.add_argument("--now", help="ISO 8601 instant to purge as of (default: the current time)")
    run.set_defaults(run=cmd_retention_run)

    sign = commands.add_parser("sign", help="print SharedKey-signed headers for a Data Collector post")
    sign.add_argument("--demo", action="store_true", help=f"use the workspace in {DEMO_WORKSPACE_FILE}")
    sign.add_argument("--workspace")
    sign.add_argument("--key", help="base64 shared key")
    sign.add_argument("--log-type", required=True)
    source = sign.add_mutually_exclusive_group(required=True)
    source.add_argument("--body", help="the exact body that will be sent")
    source.add_argument("--file", help="file holding the exact body that will be sent")
    sign.set_defaults(run=cmd_sign)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_local_settings(LOCAL_SETTINGS_FILE)
    try:
        code: int = args.run(args)
    except SluiceError as error:
        print(f"sluice: {error.code}: {error.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
