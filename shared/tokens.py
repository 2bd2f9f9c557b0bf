"""Bearer tokens of the Logs Ingestion API: JWTs from the one configured issuer (Entra ID in Azure, the
development issuer of the local stack), verified with PyJWT against that issuer's JWKS.

A token is accepted when its signature verifies with the JWKS key its `kid` names (asymmetric
algorithms only), `iss` is the configured issuer, `aud` is Azure Monitor's
(`https://monitor.azure.com`, with or without the trailing slash, as Entra issues both), and
exp/nbf/iat hold within the 15-minute clock skew the whole service allows. Its principal is `oid`, or
else `appid`/`azp`: an Entra object or application id, a GUID."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import jwt
import orjson
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWKClientError, PyJWKSet

from shared.errors import (
    ConfigurationError,
    InvalidAudience,
    InvalidToken,
    TokenExpired,
    TokenKeysUnavailable,
)
from shared.settings import TOKEN_JWKS_SETTING, TokenSettings
from shared.sharedkey import MAX_CLOCK_SKEW

MONITOR_AUDIENCES = ("https://monitor.azure.com", "https://monitor.azure.com/")
# Asymmetric algorithms only. A JWKS holds public keys: were HS256 allowed, anyone who can read the
# JWKS could sign with it as an HMAC secret (algorithm confusion); "none" is never allowed either.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
PRINCIPAL_CLAIMS = ("oid", "appid", "azp")
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud")
# Entra rotates its keys with weeks of overlap; minutes of caching keep a request from waiting on it.
JWKS_LIFESPAN_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 10

log = logging.getLogger("sluice.tokens")


class SigningKeys(Protocol):
    def signing_key(self, kid: str) -> PyJWK:
        """Raises InvalidToken when no key has that kid, TokenKeysUnavailable when the JWKS itself
        cannot be had (the issuer is down or its JWKS is broken: not the caller's fault)."""


def parse_principal(value: str) -> str | None:
    """The canonical (lower-case, hyphenated) form of an Entra object or application id, else None."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def local_jwks_path(jwks_uri: str) -> Path | None:
    """The JWKS file of the development issuer, or None for an issuer's https JWKS."""
    if jwks_uri.startswith("https://"):
        return None
    if "://" in jwks_uri:
        raise ConfigurationError(
            f"Setting {TOKEN_JWKS_SETTING} must be an https:// URI (the issuer's JWKS) or a file path "
            "(the development issuer's)."
        )
    return Path(jwks_uri)


def signing_keys(jwks_uri: str) -> SigningKeys:
    path = local_jwks_path(jwks_uri)
    return RemoteJwks(jwks_uri) if path is None else LocalJwks(path)


def token_validator(settings: TokenSettings | None) -> TokenValidator | None:
    """None when no issuer is configured: the Logs Ingestion API then refuses every token."""
    if settings is None:
        return None
    return TokenValidator(issuer=settings.issuer, keys=signing_keys(settings.jwks_uri))


class RemoteJwks:
    """An issuer's JWKS over https through PyJWKClient, which caches the set for JWKS_LIFESPAN_SECONDS
    and refetches it once when a token names a kid it does not hold (a rotated key)."""

    def __init__(self, uri: str) -> None:
        self._client = PyJWKClient(uri, lifespan=JWKS_LIFESPAN_SECONDS, timeout=JWKS_TIMEOUT_SECONDS)

    def signing_key(self, kid: str) -> PyJWK:
        try:
            # Served from the cache; fetched first, so a broken JWKS is told apart from an unknown kid.
            self._client.get_signing_keys()
        except (PyJWKClientError, jwt.PyJWTError) as error:
            log.error("the token issuer's JWKS cannot be had: %s", error)
            raise TokenKeysUnavailable("The token issuer's signing keys cannot be fetched.") from error
        try:
            return self._client.get_signing_key(kid)
        except PyJWKClientConnectionError as error:
            raise TokenKeysUnavailable("The token issuer's signing keys cannot be fetched.") from error
        except PyJWKClientError:
            raise InvalidToken("No signing key of the issuer matches the token's kid.") from None


class LocalJwks:
    """The development issuer's JWKS file: read on first use and again whenever it changes (a new key
    made by `sluice dev-token`), so the running host follows without a restart. A missing file means
    no development token was ever issued, so no token can verify."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._version: tuple[int, int, int] | None = None
        self._keys: tuple[PyJWK, ...] = ()

    def signing_key(self, kid: str) -> PyJWK:
        for key in self._current_keys():
            if key.key_id == kid:
                return key
        raise InvalidToken("No signing key of the issuer matches the token's kid.")

    def _current_keys(self) -> tuple[PyJWK, ...]:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return ()
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if version != self._version:
                self._keys = self._read()
                self._version = version
            return self._keys

    def _read(self) -> tuple[PyJWK, ...]:
        try:
            document = json.loads(self._path.read_bytes())
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            keys = PyJWKSet.from_dict(document).keys
        except (OSError, ValueError, jwt.PyJWTError) as error:
            raise TokenKeysUnavailable(
                f"The development issuer's JWKS file {self._path} is unreadable: {error}"
            ) from error
        return tuple(key for key in keys if key.public_key_use in ("sig", None))


def unverified_header(token: str) -> dict[str, Any]:
    """A JWT's header, only to find the key that jwt.decode then verifies everything with. (PyJWT's own
    unverified parse checks the whole token character by character in Python, a second time.)
    ValueError when it is not a JWT header."""
    encoded = token.split(".", 1)[0]
    header = orjson.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    if not isinstance(header, dict):
        raise ValueError("the JWT header is not a JSON object")
    return header


class TokenValidator:
    """`audiences`: what `aud` may be, Azure Monitor's by default (the Logs Ingestion API); the query
    API's validator names Sluice's own application instead (shared.readers)."""

    def __init__(
        self, *, issuer: str, keys: SigningKeys, audiences: tuple[str, ...] = MONITOR_AUDIENCES
    ) -> None:
        self._issuer = issuer
        self._keys = keys
        self._audiences = audiences

    def principal(self, authorization: str | None) -> str:
        """The principal of a valid `Authorization: Bearer <JWT>`; InvalidToken (or TokenExpired,
        InvalidAudience) otherwise. The token itself is never logged nor echoed. Its times are checked
        against the wall clock, which PyJWT reads itself: the issuer's clock is a wall clock too."""
        return principal_of(self.claims(authorization))

    def claims(self, authorization: str | None) -> dict[str, Any]:
        """The verified claims of a valid `Authorization: Bearer <JWT>` (see principal)."""
        token = _bearer_token(authorization)
        try:
            header = unverified_header(token)
        except ValueError:
            raise InvalidToken("The bearer token is not a JWT.") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The bearer token's header names no signing key (kid).")
        key = self._keys.signing_key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=list(self._audiences),
                issuer=self._issuer,
                leeway=MAX_CLOCK_SKEW,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("The bearer token is expired.") from None
        except jwt.InvalidAudienceError:
            raise InvalidAudience(f"The bearer token's audience must be {self._audiences[0]}.") from None
        except jwt.PyJWTError as error:
            raise InvalidToken(f"The bearer token is not valid: {error}.") from None
        return claims


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken("The Authorization header is missing; send 'Bearer <token>'.")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def principal_of(claims: Mapping[str, Any]) -> str:
    for claim in PRINCIPAL_CLAIMS:
        value = claims.get(claim)
        if value is None:
            continue
        principal = parse_principal(value) if isinstance(value, str) else None
        if principal is None:
            raise InvalidToken(f"The bearer token's {claim} claim is not a GUID.")
        return principal
    raise InvalidToken("The bearer token names no principal (oid, appid or azp).")
