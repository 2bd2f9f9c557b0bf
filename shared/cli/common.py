"""What every command group shares: the services, JSON and table output."""

from __future__ import annotations

import getpass
import json
from collections.abc import Mapping, Sequence
from typing import Any

from shared.audit import AuditAction
from shared.runtime import Services


def services() -> Services:
    from shared.runtime import services as built

    return built()


def operator_actor() -> str:
    """The actor of a command: the operator's login as the OS reports it. The CLI acts with the
    storage account's rights, so this names who ran it; it does not authenticate them."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in the environment nor in the password database
        return "operator:unknown"


def audit_admin(workspace_id: str | None, action: AuditAction, /, **details: Any) -> None:
    """Every administrative change is appended to the workspace's audit log, actor: the operator."""
    services().audit.record(workspace_id, operator_actor(), action, **details)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def print_rows(rows: Sequence[Mapping[str, Any]], *, as_json: bool) -> None:
    """A JSON list, or an aligned table with one column per key of the first row."""
    if as_json:
        print_json(list(rows))
        return
    if not rows:
        print("(none)")
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def print_record(record: Mapping[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(dict(record))
    else:
        for key, value in record.items():
            print(f"{key}: {value}")
