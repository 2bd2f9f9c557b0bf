"""`sluice diag ...`: Azure Diagnostics sources, the storage accounts whose diagnostics tables the
diag_reader function reads into a workspace with a read-only SAS (or a storage key from the secret
store)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from shared.audit import AuditAction
from shared.azure_diagnostics import source_registry
from shared.cli.common import audit_admin, print_record, print_rows, services
from shared.diagnostics import (
    DiagnosticsSource,
    DiagnosticsTable,
    parse_source_id,
    register_source,
    remove_source,
)
from shared.ids import parse_workspace_id
from shared.ingest import require_active


def source_row(source: DiagnosticsSource) -> dict[str, Any]:
    """What the source is, never its SAS or key: `secret` names where that is kept."""
    return {
        "source_id": source.source_id,
        "workspace_id": source.workspace_id,
        "table_endpoint": source.table_endpoint,
        "tables": ",".join(source.tables),
        "access": source.credential_kind.value,
        "secret": source.credential_secret,
        "created_at": source.created_at.isoformat(),
    }


def cmd_add_source(args: argparse.Namespace) -> int:
    current = services()
    workspace = require_active(current.registry.get_workspace(parse_workspace_id(args.workspace)))
    source = register_source(
        sources=source_registry(current),
        secrets=current.secrets,
        workspace=workspace,
        table_endpoint=args.table_endpoint,
        tables=args.tables,
        sas=args.sas,
        key_secret=args.key_secret,
        now=datetime.now(UTC),
    )
    audit_admin(
        source.workspace_id,
        AuditAction.DIAG_SOURCE_ADD,
        source_id=source.source_id,
        table_endpoint=source.table_endpoint,
        tables=list(source.tables),
        access=source.credential_kind.value,
    )
    print_record(source_row(source), as_json=args.json)
    return 0


def cmd_list_sources(args: argparse.Namespace) -> int:
    workspace_id = parse_workspace_id(args.workspace) if args.workspace else None
    sources = source_registry(services()).list_sources(workspace_id)
    print_rows([source_row(s) for s in sources], as_json=args.json)
    return 0


def cmd_remove_source(args: argparse.Namespace) -> int:
    current = services()
    source = remove_source(
        sources=source_registry(current),
        secrets=current.secrets,
        workspace_id=parse_workspace_id(args.workspace),
        source_id=parse_source_id(args.source),
    )
    audit_admin(source.workspace_id, AuditAction.DIAG_SOURCE_REMOVE, source_id=source.source_id)
    print_record(source_row(source), as_json=args.json)
    return 0


def register(commands: Any) -> None:
    diag = commands.add_parser("diag", help="Azure Diagnostics sources read into a workspace")
    sub = diag.add_subparsers(dest="diag_command", required=True)

    add = sub.add_parser("add-source", help="read a storage account's diagnostics tables into a workspace")
    add.add_argument("--workspace", required=True)
    add.add_argument("--table-endpoint", required=True, help="https://ACCOUNT.table.core.windows.net")
    access = add.add_mutually_exclusive_group(required=True)
    access.add_argument("--sas", help="a SAS granting read and list only (sp=rl); anything more is refused")
    access.add_argument(
        "--key-secret", help="name of the secret in the secret store that holds the account key"
    )
    add.add_argument(
        "--tables",
        nargs="+",
        metavar="TABLE",
        help=f"tables to read (default: all of {', '.join(DiagnosticsTable)})",
    )
    add.set_defaults(run=cmd_add_source)

    listing = sub.add_parser("list-sources", help="registered diagnostics sources")
    listing.add_argument("--workspace", help="only this workspace's sources")
    listing.set_defaults(run=cmd_list_sources)

    remove = sub.add_parser("remove-source", help="stop reading a source; its SAS is deleted")
    remove.add_argument("--workspace", required=True)
    remove.add_argument("source", help="source id")
    remove.set_defaults(run=cmd_remove_source)

    for parser in sub.choices.values():
        parser.add_argument("--json", action="store_true", help="machine-readable output")
