"""`sluice dev-token`: an access token from the local development issuer, for LogsIngestionClient or
curl against the local host. It signs for the issuer and JWKS file the settings name
(SLUICE_TOKEN_ISSUER, SLUICE_TOKEN_JWKS_URI as a file path), so the host accepts what it prints."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.devissuer import DevelopmentIssuer
from shared.settings import TOKEN_ISSUER_SETTING, TOKEN_JWKS_SETTING, Settings
from shared.tokens import local_jwks_path, parse_principal

DEFAULT_MINUTES = 60
MAX_MINUTES = 24 * 60


def cmd_dev_token(args: argparse.Namespace) -> int:
    tokens = Settings.from_env().tokens
    jwks_file = local_jwks_path(tokens.jwks_uri) if tokens else None
    if tokens is None or jwks_file is None:
        raise SystemExit(
            f"sluice dev-token: the development issuer is not configured: set {TOKEN_ISSUER_SETTING} and "
            f"{TOKEN_JWKS_SETTING} to a JWKS file path (see local.settings.example.json)"
        )
    principal = parse_principal(args.principal)
    if principal is None:
        raise SystemExit("sluice dev-token: --principal must be a GUID (an Entra object or application id)")
    if not 1 <= args.minutes <= MAX_MINUTES:
        raise SystemExit(f"sluice dev-token: --minutes must be between 1 and {MAX_MINUTES}")
    issuer = DevelopmentIssuer(issuer=tokens.issuer, jwks_file=jwks_file)
    print(issuer.token(principal, lifetime=timedelta(minutes=args.minutes), now=datetime.now(UTC)))
    return 0


def register(commands: Any) -> None:
    token = commands.add_parser(
        "dev-token", help="an access token of the local development issuer (Logs Ingestion API)"
    )
    token.add_argument("--principal", required=True, help="the app id (GUID) the token is for")
    token.add_argument("--minutes", type=int, default=DEFAULT_MINUTES, help="lifetime (default: 60)")
    token.set_defaults(run=cmd_dev_token)
