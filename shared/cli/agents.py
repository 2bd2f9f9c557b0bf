"""`sluice agent ...`: enrolled agents and their certificates."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from shared.agents import Agent, revoke_agent
from shared.audit import AuditAction
from shared.cli.common import audit_admin, print_record, print_rows, services
from shared.ids import parse_workspace_id


def agent_row(agent: Agent) -> dict[str, Any]:
    return {
        "agent_id": agent.agent_id,
        "workspace_id": agent.workspace_id,
        "thumbprint": agent.thumbprint,
        "state": agent.state.value,
        "not_after": agent.not_after.isoformat(),
        "registered_at": agent.registered_at.isoformat(),
    }


def cmd_list(args: argparse.Namespace) -> int:
    agents = services().agents.list_agents(parse_workspace_id(args.workspace))
    print_rows([agent_row(a) for a in agents], as_json=args.json)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    agent = revoke_agent(
        services().agents, parse_workspace_id(args.workspace), args.agent, now=datetime.now(UTC)
    )
    audit_admin(agent.workspace_id, AuditAction.AGENT_REVOKE, agent_id=agent.agent_id)
    print_record(agent_row(agent), as_json=args.json)
    return 0


def register(commands: Any) -> None:
    agent = commands.add_parser("agent", help="enrolled agents")
    sub = agent.add_subparsers(dest="agent_command", required=True)
    listing = sub.add_parser("list", help="agents of a workspace")
    listing.add_argument("--workspace", required=True)
    listing.set_defaults(run=cmd_list)
    revoke = sub.add_parser("revoke", help="refuse an agent's certificate from its next request on")
    revoke.add_argument("--workspace", required=True)
    revoke.add_argument("agent", help="agent id")
    revoke.set_defaults(run=cmd_revoke)
    for parser in sub.choices.values():
        parser.add_argument("--json", action="store_true", help="machine-readable output")
