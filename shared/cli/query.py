"""`sluice query`, `sluice summary` and `sluice reader`: a workspace's aggregates as the query API
answers them (the same core, shared.query, with the operator's access instead of a reader's), and the
Entra principals granted to read it."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from shared.audit import AuditAction
from shared.cli.common import audit_admin, print_json, print_record, print_rows, services
from shared.ids import parse_workspace_id
from shared.query import Aggregate, Granularity
from shared.readers import ReaderGrant, canonical_principal


def cmd_query(args: argparse.Namespace) -> int:
    params = {
        name: value
        for name, value in (
            ("from", args.start),
            ("to", args.end),
            ("granularity", args.granularity),
            ("limit", args.limit),
            ("continuation", args.continuation),
        )
        if value is not None
    }
    for condition in args.filter:
        name, separator, value = condition.partition("=")
        if not separator:
            raise SystemExit(f"sluice query: --filter takes NAME=VALUE, not {condition!r}")
        params[name] = value
    page = services().queries.page(parse_workspace_id(args.workspace), Aggregate(args.aggregate), params)
    if args.json:
        print_json(page)
        return 0
    print_rows(page["rows"], as_json=False)
    if page["continuation"]:
        print(f"more rows: --continuation {page['continuation']}", file=sys.stderr)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    current = services()
    workspace = current.registry.get_workspace(parse_workspace_id(args.workspace))
    print_record(current.queries.summary(workspace), as_json=args.json)
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    current = services()
    workspace = current.registry.get_workspace(parse_workspace_id(args.workspace))
    grant = ReaderGrant(
        workspace_id=workspace.workspace_id,
        principal=canonical_principal(args.principal),
        granted_at=datetime.now(UTC),
    )
    if current.reader_grants.grant(grant):
        audit_admin(grant.workspace_id, AuditAction.READER_GRANT, principal=grant.principal)
    print_record(_grant_row(grant), as_json=args.json)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    workspace_id = parse_workspace_id(args.workspace)
    principal = canonical_principal(args.principal)
    revoked = services().reader_grants.revoke(workspace_id, principal)
    if revoked:
        audit_admin(workspace_id, AuditAction.READER_REVOKE, principal=principal)
    print_record(
        {"workspace_id": workspace_id, "principal": principal, "revoked": revoked}, as_json=args.json
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    grants = services().reader_grants.list_grants(parse_workspace_id(args.workspace))
    print_rows([_grant_row(g) for g in grants], as_json=args.json)
    return 0


def _grant_row(grant: ReaderGrant) -> dict[str, Any]:
    return {
        "workspace_id": grant.workspace_id,
        "principal": grant.principal,
        "granted_at": grant.granted_at.isoformat(),
    }


def register(commands: Any) -> None:
    query = commands.add_parser("query", help="a workspace's aggregates, as the query API reads them")
    query.add_argument("aggregate", choices=[a.value for a in Aggregate])
    query.add_argument("--workspace", required=True)
    query.add_argument("--from", dest="start", help="ISO 8601 UTC, inclusive (default: 24 h before --to)")
    query.add_argument("--to", dest="end", help="ISO 8601 UTC, exclusive (default: now)")
    query.add_argument("--granularity", choices=[g.value for g in Granularity])
    query.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="log_type, computer; perf: computer, object, counter, instance; events: event_id, level; "
        "syslog: facility, severity (repeatable)",
    )
    query.add_argument("--limit", help="rows per page, 1 to 1000 (default 100)")
    query.add_argument("--continuation", help="the token printed after the previous page")
    query.add_argument("--json", action="store_true", help="the API's JSON page")
    query.set_defaults(run=cmd_query)

    summary = commands.add_parser("summary", help="a workspace's plan, retention and today's usage")
    summary.add_argument("--workspace", required=True)
    summary.add_argument("--json", action="store_true")
    summary.set_defaults(run=cmd_summary)

    reader = commands.add_parser("reader", help="Entra principals granted to read a workspace")
    sub = reader.add_subparsers(dest="reader_command", required=True)
    for name, run, text in (
        ("grant", cmd_grant, "let a principal (with the Sluice.Reader role) read the workspace"),
        ("revoke", cmd_revoke, "withdraw a grant (honoured from the next request)"),
        ("list", cmd_list, "the workspace's grants"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--workspace", required=True)
        if name != "list":
            command.add_argument("--principal", required=True, help="Entra object or application id")
        command.add_argument("--json", action="store_true")
        command.set_defaults(run=run)
