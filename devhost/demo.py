"""The demo workspace: made on the first start, kept across restarts, and described at every start in
`demo-workspace.json` (id, primary key, endpoint, CA file) so a client or test can post right away."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from shared.durable import write_durably
from shared.errors import NotFound
from shared.runtime import Services
from shared.workspaces import create_workspace, shared_key_secret_name

DEMO_FILE = "demo-workspace.json"

log = logging.getLogger("sluice.devhost.demo")


def write_demo_workspace(path: Path, current: Services, *, endpoint: str, ca_file: Path) -> None:
    workspace_id, primary_key = _existing(path, current) or _create(current)
    document = {
        "workspace_id": workspace_id,
        "primary_key": primary_key,
        "endpoint": endpoint,
        "ca_file": str(ca_file.resolve()),
    }
    # Owner-only, since it holds a key; replaced whole, so a reader never sees half a file.
    write_durably(path, json.dumps(document, indent=2).encode("utf-8"))


def _existing(path: Path, current: Services) -> tuple[str, str] | None:
    """The workspace named in an earlier file, if the registry and the secret store still have it."""
    try:
        workspace_id = str(json.loads(path.read_text(encoding="utf-8"))["workspace_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        current.registry.get_workspace(workspace_id)
        key = current.secrets.get_secret(shared_key_secret_name(workspace_id, "primary"))
    except NotFound:
        log.info("demo workspace %s is gone; creating another", workspace_id)
        return None
    return workspace_id, key


def _create(current: Services) -> tuple[str, str]:
    created = create_workspace(
        registry=current.registry, secrets=current.secrets, containers=current.raw_store
    )
    workspace_id = created.workspace.workspace_id
    log.info("created demo workspace %s", workspace_id, extra={"workspace_id": workspace_id})
    return workspace_id, created.primary_key
