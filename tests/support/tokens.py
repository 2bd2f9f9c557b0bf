"""Bearer tokens as an issuer (or an attacker) makes them, built from PyJWT's and cryptography's
primitives rather than by shared.devissuer, so the service's validation is checked against what an
issuer sends rather than against itself. Defaults describe an Entra-like issuer of the unit tests;
the end-to-end tests pass the development issuer's key, kid and issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import PyJWK
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://login.example/tenant/v2.0"
AUDIENCE = "https://monitor.azure.com"
KID = "test-key-1"


@cache
def issuer_key(name: str = "issuer") -> rsa.RSAPrivateKey:
    """One RSA key per name for the session: generation is slow and keys are immutable."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_dict(key: rsa.RSAPrivateKey, kid: str = KID) -> dict[str, Any]:
    """The key's public JWK as an issuer publishes it in its JWKS."""
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def public_jwk(key: rsa.RSAPrivateKey, kid: str = KID) -> PyJWK:
    return PyJWK(jwk_dict(key, kid))


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def claims(
    principal: str, *, now: datetime | None = None, issuer: str = ISSUER, **overrides: Any
) -> dict[str, Any]:
    """An Entra-like app-only access token for Azure Monitor, valid for an hour from `now`; a claim
    overridden with None is left out."""
    issued = now or datetime.now(UTC)
    document: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + timedelta(hours=1),
        "oid": principal,
        "tid": "00000000-0000-0000-0000-00000000aaaa",
    }
    document.update(overrides)
    return {k: v for k, v in document.items() if v is not None}


def sign(document: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str | None = KID) -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(document, key or issuer_key(), algorithm="RS256", headers=headers)


def unsigned(document: dict[str, Any], *, kid: str = KID) -> str:
    """`alg: none`: a token anyone can make."""
    return ".".join((_b64json({"alg": "none", "typ": "JWT", "kid": kid}), _b64json(_numeric(document)), ""))


def hs256_with_public_key(document: dict[str, Any], *, key: rsa.RSAPrivateKey, kid: str = KID) -> str:
    """The algorithm-confusion forgery: HMAC-SHA256 keyed with the issuer's public key PEM, which
    anyone can read from the JWKS. Built by hand, since PyJWT refuses to sign it."""
    signing_input = _b64json({"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + _b64json(_numeric(document))
    digest = hmac.new(public_pem(key), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64(digest)


def _numeric(document: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in document.items()}


def _b64json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
