"""`sluice dcr ...`: data collection rules of the Logs Ingestion API (which principals may send which
streams to which workspace)."""

from __future__ import annotations

import argparse
from typing import Any

from shared.audit import AuditAction
from shared.cli.common import audit_admin, print_record, print_rows, services
from shared.dcrs import DataCollectionRule, create_rule
from shared.ids import parse_workspace_id


def rule_row(rule: DataCollectionRule) -> dict[str, Any]:
    return {
        "immutable_id": rule.immutable_id,
        "workspace_id": rule.workspace_id,
        "streams": list(rule.streams),
        "principals": list(rule.principals),
        "created_at": rule.created_at.isoformat(),
    }


def cmd_create(args: argparse.Namespace) -> int:
    current = services()
    rule = create_rule(
        rules=current.dcrs,
        workspaces=current.registry,
        workspace_id=parse_workspace_id(args.workspace),
        streams=[args.stream],
        principals=args.principal,
    )
    audit_admin(
        rule.workspace_id,
        AuditAction.DCR_CREATE,
        dcr_id=rule.immutable_id,
        streams=list(rule.streams),
        principals=list(rule.principals),
    )
    # `stream` on its own: what LogsIngestionClient.upload(rule_id=..., stream_name=...) takes.
    print_record(
        {"immutable_id": rule.immutable_id, "stream": args.stream, **rule_row(rule)}, as_json=args.json
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rules = services().dcrs.list_rules(parse_workspace_id(args.workspace))
    print_rows([rule_row(r) for r in rules], as_json=args.json)
    return 0


def register(commands: Any) -> None:
    dcr = commands.add_parser("dcr", help="data collection rules of the Logs Ingestion API")
    sub = dcr.add_subparsers(dest="dcr_command", required=True)

    create = sub.add_parser("create", help="a rule sending one stream to a workspace")
    create.add_argument("--workspace", required=True)
    create.add_argument(
        "--principal",
        required=True,
        action="append",
        help="Entra object or application id allowed to send (repeat for more)",
    )
    create.add_argument("--stream", required=True, help="Custom-<Table>_CL")
    create.set_defaults(run=cmd_create)

    listing = sub.add_parser("list", help="the rules of a workspace")
    listing.add_argument("--workspace", required=True)
    listing.set_defaults(run=cmd_list)

    for parser in sub.choices.values():
        parser.add_argument("--json", action="store_true", help="machine-readable output")
