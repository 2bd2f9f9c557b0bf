"""The development token issuer of the local stack, so the Logs Ingestion API can be driven end to end
without Entra ID: an RSA key and its JWKS, two files in one owner-only folder (`.local/dev-issuer/`).
The service reads the JWKS file exactly as it reads Entra's JWKS over https (shared.tokens), so a
development token goes through the same checks as a real one. Azure deployments configure Entra's
issuer and never this one."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.tokens import MONITOR_AUDIENCES

KEY_FILE = "key.pem"
ALGORITHM = "RS256"  # what Entra ID signs access tokens with
RSA_BITS = 2048


class DevelopmentIssuer:
    """`issuer` is the `iss` of its tokens; `jwks_file` is where the service reads its public key. The
    private key lives beside it, made on first use."""

    def __init__(self, *, issuer: str, jwks_file: Path) -> None:
        self.issuer = issuer
        self.jwks_file = jwks_file
        self.key_file = jwks_file.with_name(KEY_FILE)

    def token(self, principal: str, *, lifetime: timedelta, now: datetime) -> str:
        """An access token for Azure Monitor whose principal (`appid`, as in Entra's app-only tokens)
        is `principal`."""
        key = self._ensure_key()
        claims = {
            "iss": self.issuer,
            "aud": MONITOR_AUDIENCES[0],
            "sub": principal,
            "appid": principal,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        }
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": _kid(key.public_key())})

    def _ensure_key(self) -> rsa.RSAPrivateKey:
        """The issuer's key, made on first use; its JWKS is (re)written whenever it does not match, so
        the service's copy of the public key always follows the key."""
        folder = self.key_file.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)  # mkdir's mode is masked by the umask and ignored for an existing folder
        if not self.key_file.exists():
            new_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
            # Two first uses at once: the first key written wins and both read it back.
            _write_private(self.key_file, _pem(new_key), replace=False)
        loaded = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{self.key_file} does not hold an RSA private key")
        jwks = json.dumps({"keys": [_jwk(loaded.public_key())]}, indent=2).encode("utf-8")
        if not self.jwks_file.exists() or self.jwks_file.read_bytes() != jwks:
            _write_private(self.jwks_file, jwks, replace=True)
        return loaded


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _jwk(public_key: rsa.RSAPublicKey) -> dict[str, Any]:
    return {**_rsa_members(public_key), "kid": _kid(public_key), "use": "sig", "alg": ALGORITHM}


def _kid(public_key: rsa.RSAPublicKey) -> str:
    """The key's RFC 7638 thumbprint: stable for the key, new for a new key."""
    canonical = json.dumps(_rsa_members(public_key), separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode("ascii")).digest()).rstrip(b"=").decode()


def _rsa_members(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The required members of an RSA public JWK (PyJWT adds `key_ops`, which RFC 7517 advises against
    beside `use`)."""
    jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    return {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}


def _write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Owner-only, and atomic: a reader (the service rereading the JWKS) sees the old file or the new
    one, never half of one. With replace=False an existing file is kept."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
