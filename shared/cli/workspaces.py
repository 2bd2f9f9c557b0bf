"""`sluice workspace ...`: tenants, their plans and keys."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.audit import AuditAction
from shared.cli.common import audit_admin, print_record, print_rows, services
from shared.errors import WorkspaceChanged
from shared.ids import parse_workspace_id
from shared.plans import DEFAULT_PLAN, Plan
from shared.workspaces import (
    ROTATABLE_KEYS,
    Workspace,
    WorkspaceRegistry,
    change_plan,
    create_workspace,
    mark_deleted,
    removal_due_at,
    restore_deleted,
    rotate_key,
)


def workspace_row(workspace: Workspace) -> dict[str, Any]:
    return {
        "workspace_id": workspace.workspace_id,
        "plan": workspace.plan.value,
        "state": workspace.state.value,
        "created_at": workspace.created_at.isoformat(),
    }


def cmd_create(args: argparse.Namespace) -> int:
    current = services()
    created = create_workspace(
        registry=current.registry, secrets=current.secrets, containers=current.raw_store, plan=Plan(args.plan)
    )
    audit_admin(
        created.workspace.workspace_id, AuditAction.WORKSPACE_CREATE, plan=created.workspace.plan.value
    )
    print_record(
        {
            **workspace_row(created.workspace),
            "primary_key": created.primary_key,
            "secondary_key": created.secondary_key,
            "enrollment_key": created.enrollment_key,
            "reader_key": created.reader_key,
        },
        as_json=args.json,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print_rows([workspace_row(w) for w in services().registry.list_workspaces()], as_json=args.json)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    workspace = services().registry.get_workspace(parse_workspace_id(args.workspace))
    print_record(workspace_row(workspace), as_json=args.json)
    return 0


def change_workspace(
    registry: WorkspaceRegistry, workspace_id: str, change: Callable[[Workspace], Workspace]
) -> tuple[Workspace, Workspace]:
    """The workspace as first read and after `change`, written conditional on the version read. After
    losing to a concurrent write: if the entry already holds the change, that was this write (its answer
    was lost and the SDK's retry found the entry changed), so it stands; otherwise the change, computed
    from and checked against the state it replaces, is applied once more to a fresh read, as the
    operator would retry. A second loss means the entry keeps changing: WorkspaceChanged."""
    previous = registry.get_workspace(workspace_id)
    target = change(previous)
    if target == previous:
        return previous, previous
    try:
        return previous, registry.update_workspace(target)
    except WorkspaceChanged:
        fresh = registry.get_workspace(workspace_id)
        if fresh == target:
            return previous, fresh
        changed = change(fresh)
        return previous, fresh if changed == fresh else registry.update_workspace(changed)


def cmd_set_plan(args: argparse.Namespace) -> int:
    try:
        previous, workspace = change_workspace(
            services().registry,
            parse_workspace_id(args.workspace),
            lambda read: change_plan(read, Plan(args.plan)),
        )
    except ValueError as error:
        raise SystemExit(f"sluice: {error}") from None
    audit_admin(
        workspace.workspace_id,
        AuditAction.WORKSPACE_SET_PLAN,
        plan=workspace.plan.value,
        previous_plan=previous.plan.value,
    )
    print_record(workspace_row(workspace), as_json=args.json)
    return 0


def cmd_rotate_key(args: argparse.Namespace) -> int:
    current = services()
    workspace = current.registry.get_workspace(parse_workspace_id(args.workspace))
    key = rotate_key(secrets=current.secrets, workspace=workspace, which=args.which)
    audit_admin(workspace.workspace_id, AuditAction.KEY_ROTATE, slot=args.which)
    print_record({"workspace_id": workspace.workspace_id, "key": args.which, "value": key}, as_json=args.json)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Ingestion stops at once; the retention run removes the container, rows, keys and agents after
    the grace period."""
    current = services()
    previous, workspace = change_workspace(
        current.registry,
        parse_workspace_id(args.workspace),
        lambda read: mark_deleted(read, now=datetime.now(UTC)),
    )
    if workspace != previous:
        audit_admin(workspace.workspace_id, AuditAction.WORKSPACE_DELETE)
    print_record(
        _with_removal_due(workspace, current.settings.workspace_delete_grace_days), as_json=args.json
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Undoes a deletion within its grace period: the workspace is active again, data untouched."""
    current = services()
    grace = timedelta(days=current.settings.workspace_delete_grace_days)
    try:
        _, workspace = change_workspace(
            current.registry,
            parse_workspace_id(args.workspace),
            lambda read: restore_deleted(read, now=datetime.now(UTC), grace=grace),
        )
    except ValueError as error:
        raise SystemExit(f"sluice: {error}") from None
    audit_admin(workspace.workspace_id, AuditAction.WORKSPACE_RESTORE)
    print_record(workspace_row(workspace), as_json=args.json)
    return 0


def _with_removal_due(workspace: Workspace, grace_days: int) -> dict[str, Any]:
    due = removal_due_at(workspace, grace=timedelta(days=grace_days))
    return {**workspace_row(workspace), "removal_due": None if due is None else due.isoformat()}


def register(commands: Any) -> None:
    workspace = commands.add_parser("workspace", help="manage workspaces (tenants)")
    sub = workspace.add_subparsers(dest="workspace_command", required=True)
    plans = [p.value for p in Plan]

    create = sub.add_parser("create", help="create a workspace with new keys and enrollment key")
    create.add_argument("--plan", choices=plans, default=DEFAULT_PLAN.value)
    create.set_defaults(run=cmd_create)

    sub.add_parser("list", help="list workspaces").set_defaults(run=cmd_list)

    show = sub.add_parser("show", help="one workspace")
    show.add_argument("workspace")
    show.set_defaults(run=cmd_show)

    set_plan = sub.add_parser("set-plan", help="change a workspace's plan (retention window)")
    set_plan.add_argument("workspace")
    set_plan.add_argument("--plan", choices=plans, required=True)
    set_plan.set_defaults(run=cmd_set_plan)

    rotate = sub.add_parser("rotate-key", help="replace one key (the other shared key stays valid meanwhile)")
    rotate.add_argument("workspace")
    rotate.add_argument("--which", choices=ROTATABLE_KEYS, default="primary")
    rotate.set_defaults(run=cmd_rotate_key)

    delete = sub.add_parser("delete", help="stop ingestion now; data is removed after the grace period")
    delete.add_argument("workspace")
    delete.set_defaults(run=cmd_delete)

    restore = sub.add_parser("restore", help="undo a deletion within its grace period")
    restore.add_argument("workspace")
    restore.set_defaults(run=cmd_restore)

    for parser in sub.choices.values():
        parser.add_argument("--json", action="store_true", help="machine-readable output")
