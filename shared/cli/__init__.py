"""`sluice`: the operators' command. Settings come from the environment, then from
`local.settings.json` in the current folder (as `func` does), so it works beside `make run`.
Each command group is a module with a `register(subparsers)` function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shared.cli import agents, audit, data, dcr, devtoken, diag, query, retention, workspaces
from shared.errors import SluiceError
from shared.localsettings import LOCAL_SETTINGS_FILE, load_local_settings

COMMAND_GROUPS = (workspaces, agents, data, query, retention, audit, dcr, diag, devtoken)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description="Operate a Sluice deployment.")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
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
