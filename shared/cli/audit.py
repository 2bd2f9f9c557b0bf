"""`sluice audit ...`: read and verify the hash-chained audit logs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from shared.audit import SYSTEM_LOG, AuditEntry, canonical_time, log_name, verify_chain, workspace_of_log
from shared.cli.common import print_rows, services
from shared.ids import parse_workspace_id


def chain_argument(text: str) -> str | None:
    """A workspace id, or `system` for the chain of actions that concern no single workspace."""
    workspace_id = workspace_of_log(text)
    return None if workspace_id is None else parse_workspace_id(workspace_id)


def entry_row(entry: AuditEntry, *, as_json: bool) -> dict[str, Any]:
    row = {
        "sequence": entry.sequence,
        "time": canonical_time(entry.time),
        "actor": entry.actor,
        "action": entry.action,
    }
    if as_json:
        return {**row, "details": entry.details, "prev_hash": entry.prev_hash, "hash": entry.hash}
    # The table view leaves the 64-character hashes out and shows the details as one line of JSON.
    return {**row, "details": json.dumps(entry.details, sort_keys=True)}


def cmd_list(args: argparse.Namespace) -> int:
    chain = services().audit.read(chain_argument(args.workspace))
    print_rows([entry_row(e, as_json=args.json) for e in chain.entries], as_json=args.json)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit code 0 when every chain is intact, 1 when any problem is found."""
    audit = services().audit
    chains = [chain_argument(args.workspace)] if args.workspace else audit.workspaces()
    if not chains:
        print("no audit logs yet")
        return 0
    damaged = 0
    for workspace_id in chains:
        chain = audit.read(workspace_id)
        problems = verify_chain(chain.entries, chain.head)
        state = "intact" if not problems else f"{len(problems)} problem(s)"
        print(f"{log_name(workspace_id)}: {len(chain.entries)} entries, {state}")
        for problem in problems:
            print(f"  {problem}")
        damaged += bool(problems)
    if damaged:
        print(f"TAMPERED: {damaged} of {len(chains)} audit log(s) failed verification")
        return 1
    print(f"all {len(chains)} audit log(s) intact")
    return 0


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the tamper-evident audit logs")
    sub = audit.add_subparsers(dest="audit_command", required=True)
    chain_help = f"workspace id, or `{SYSTEM_LOG}` for actions not tied to one workspace"

    listing = sub.add_parser("list", help="the entries of one audit log, oldest first")
    listing.add_argument("--workspace", required=True, help=chain_help)
    listing.add_argument("--json", action="store_true", help="machine-readable output, with hashes")
    listing.set_defaults(run=cmd_list)

    verify = sub.add_parser("verify", help="check the hash chains; exit code 1 if any was tampered with")
    verify.add_argument("--workspace", help=f"{chain_help} (default: every audit log)")
    verify.set_defaults(run=cmd_verify)
