"""`sluice retention run` and `sluice retention report [--verify]`."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shared.cli.common import operator_actor, print_json, print_rows, services
from shared.ids import parse_workspace_id
from shared.retention import HeldRows, Holdings, Retention
from shared.workspaces import Workspace


def cmd_run(args: argparse.Namespace) -> int:
    """As the timer does, audited as the operator. Not as of a later instant: that would delete data
    still inside its window, and remove deleted workspaces before their grace period ends."""
    now = _now(args)
    if now > datetime.now(UTC):
        raise SystemExit("sluice: retention run --now must not be in the future")
    retention = replace(Retention.from_services(services()), actor=operator_actor())
    reports = retention.run(now=now)
    print_json([{"workspace_id": r.workspace_id, "action": r.action.value, **r.details()} for r in reports])
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Exit 1 when --verify finds a violation in any workspace."""
    now = _now(args)
    retention = Retention.from_services(services())
    workspaces = _workspaces(retention, args.workspace)
    documents = []
    for workspace in workspaces:
        document = _holdings_document(retention.holdings(workspace, now=now))
        if args.verify:
            document["violations"] = retention.verify(workspace, now=now)
        documents.append(document)
    if args.json:
        print_json(documents)
    else:
        for document in documents:
            _print_document(document)
    return 1 if any(d.get("violations") for d in documents) else 0


def _workspaces(retention: Retention, workspace_id: str | None) -> list[Workspace]:
    if workspace_id is None:
        return retention.registry.list_workspaces()
    return [retention.registry.get_workspace(parse_workspace_id(workspace_id))]


def _holdings_document(holdings: Holdings) -> dict[str, Any]:
    windows, workspace = holdings.windows, holdings.workspace
    raw_outside = [d for d in holdings.raw_days if d < windows.raw_from]
    return {
        "workspace_id": workspace.workspace_id,
        "plan": workspace.plan.value,
        "state": workspace.state.value,
        "removal_due": None if holdings.removal_due is None else holdings.removal_due.isoformat(),
        "held": [
            {
                "what": "raw days",
                "kept_from": windows.raw_from.isoformat(),
                "count": len(holdings.raw_days),
                "oldest": holdings.raw_days[0].isoformat() if holdings.raw_days else None,
                "outside": len(raw_outside),
            },
            *(_rows_document(held, windows.aggregates_from.isoformat()) for held in holdings.aggregates),
            _rows_document(holdings.ledger, windows.raw_from.isoformat()),
        ],
    }


def _rows_document(held: HeldRows, kept_from: str) -> dict[str, Any]:
    return {
        "what": held.table,
        "kept_from": kept_from,
        "count": held.rows,
        "oldest": None if held.oldest is None else held.oldest.isoformat(),
        "outside": held.outside,
    }


def _print_document(document: dict[str, Any]) -> None:
    removal = f", removal due {document['removal_due']}" if document["removal_due"] else ""
    print(f"workspace {document['workspace_id']}: plan {document['plan']}, {document['state']}{removal}")
    print_rows(document["held"], as_json=False)
    if "violations" in document:
        violations = document["violations"]
        print(f"verify: {len(violations)} violation(s)" if violations else "verify: ok")
        for violation in violations:
            print(f"  {violation}")
    print()


def _now(args: argparse.Namespace) -> datetime:
    if not args.now:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(args.now)
    if moment.tzinfo is None:
        raise SystemExit("sluice: --now needs a time zone (for example 2026-11-22T02:00:00Z)")
    return moment.astimezone(UTC)


def register(commands: Any) -> None:
    retention = commands.add_parser("retention", help="retention of raw data, aggregates and the ledger")
    sub = retention.add_subparsers(dest="retention_command", required=True)
    run = sub.add_parser(
        "run", help="purge what is past each workspace's windows and remove deleted workspaces, now"
    )
    run.set_defaults(run=cmd_run)
    report = sub.add_parser("report", help="each workspace's windows and what it holds")
    report.add_argument("--workspace", help="one workspace (default: all)")
    report.add_argument(
        "--verify",
        action="store_true",
        help="also check that nothing outside a window remains and nothing inside is missing (exit 1)",
    )
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(run=cmd_report)
    for parser in (run, report):
        parser.add_argument("--now", help="ISO 8601 instant with time zone to act as of (default: now)")
