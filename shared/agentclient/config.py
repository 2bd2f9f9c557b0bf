"""The agent's settings, kept apart from the service's (shared.settings): the agent runs on customer
machines, not in the function app. What enrollment decided (endpoint, workspace, agent id, how to
authenticate) is in the state dir's `agent.json`; how to deliver (retry schedule, spool cap, batch
size) comes from flags, with the defaults below.

State dir (owner-only, 0700; every file in it 0600):

    agent.json          endpoint, workspace_id, auth, agent_id, ca_file, thumbprint
    agent-key-T.pem     the private key (assertion and client-certificate modes)
    agent-cert-T.pem    its self-signed certificate, registered at enrollment; T is its thumbprint
                        (sha256, hex), which agent.json names
    shared-key          the workspace key (shared-key mode only)
    spool/              batches not yet delivered, oldest first; spool/rejected/ the refused ones
    tail/               one checkpoint per followed file
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from shared.agentclient.errors import AgentConfigError
from shared.errors import InvalidCustomerId
from shared.ids import parse_workspace_id

STATE_DIR_SETTING = "SLUICE_AGENT_STATE_DIR"
# The seeds: "tries to resend the data every 8 minutes for 2 hours".
RETRY_INTERVAL = timedelta(minutes=8)
RETRY_WINDOW = timedelta(hours=2)
SPOOL_MAX_BYTES = 100 * 1024 * 1024
# Small enough that a batch lost to the cap or sent twice is little; the service takes up to 30 MB.
BATCH_MAX_BYTES = 1024 * 1024
REQUEST_TIMEOUT_SECONDS = 30.0

_THUMBPRINT = re.compile(r"[0-9a-f]{64}")
_DURATION = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h|d)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE = re.compile(r"(?P<amount>[0-9]+)(?P<unit>[kKmMgG]?)i?[bB]?")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class AuthMode(StrEnum):
    ASSERTION = "assertion"  # a JWT signed with the agent's key, on every request
    CLIENT_CERTIFICATE = "client-certificate"  # TLS client authentication with the agent's certificate
    SHARED_KEY = "shared-key"  # the Data Collector API's SharedKey signature with the workspace key


class StateDir:
    """Where one agent keeps its identity, spool and checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> StateDir:
        """$SLUICE_AGENT_STATE_DIR, else $XDG_STATE_HOME/sluice-agent, else ~/.local/state/sluice-agent."""
        explicit = os.environ.get(STATE_DIR_SETTING)
        if explicit:
            return cls(Path(explicit))
        state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        return cls(Path(state_home) / "sluice-agent")

    @property
    def agent_file(self) -> Path:
        return self.path / "agent.json"

    def key_file(self, thumbprint: str) -> Path:
        """The private key of the certificate with this thumbprint. Each key pair has files of its own,
        so a new pair can be written in full before agent.json names it (see enrollment.enroll)."""
        return self.path / f"agent-key-{thumbprint}.pem"

    def certificate_file(self, thumbprint: str) -> Path:
        return self.path / f"agent-cert-{thumbprint}.pem"

    @property
    def shared_key_file(self) -> Path:
        return self.path / "shared-key"

    @property
    def spool_dir(self) -> Path:
        return self.path / "spool"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "tail"


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What enrollment wrote to agent.json."""

    endpoint: str
    workspace_id: str
    auth: AuthMode
    agent_id: str | None = None  # none in shared-key mode, which does not enroll
    ca_file: Path | None = None  # None: the system's trust store
    thumbprint: str | None = None  # the registered certificate's; none in shared-key mode

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "endpoint": self.endpoint,
            "workspace_id": self.workspace_id,
            "auth": self.auth.value,
            "agent_id": self.agent_id,
            "ca_file": str(self.ca_file) if self.ca_file else None,
            "thumbprint": self.thumbprint,
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2)

    @classmethod
    def load(cls, state: StateDir) -> AgentIdentity:
        try:
            data = state.agent_file.read_bytes()
        except FileNotFoundError:
            raise AgentConfigError(
                f"{state.agent_file} does not exist: run `sluice agent enroll` first"
            ) from None
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: bytes) -> AgentIdentity:
        try:
            document = orjson.loads(data)
            auth = AuthMode(document["auth"])
            agent_id = document.get("agent_id")
            thumbprint = document.get("thumbprint")
            if auth is not AuthMode.SHARED_KEY:
                if not isinstance(agent_id, str):
                    raise ValueError("no agent_id")
                # It names files in the state dir: nothing but a sha256 in hex.
                if not isinstance(thumbprint, str) or not _THUMBPRINT.fullmatch(thumbprint):
                    raise ValueError("no certificate thumbprint")
            ca_file = document.get("ca_file")
            return cls(
                endpoint=parse_endpoint(document["endpoint"]),
                workspace_id=parse_workspace_id(document["workspace_id"]),
                auth=auth,
                agent_id=agent_id,
                ca_file=Path(ca_file) if ca_file else None,
                thumbprint=thumbprint,
            )
        except (ValueError, KeyError, TypeError, AttributeError, InvalidCustomerId) as error:
            raise AgentConfigError(f"agent.json is not usable ({error}); enroll again") from None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    interval: timedelta = RETRY_INTERVAL  # between attempts, unless the service says Retry-After
    window: timedelta = RETRY_WINDOW  # a batch this old whose attempt fails is dropped


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    spool_max_bytes: int = SPOOL_MAX_BYTES
    batch_max_bytes: int = BATCH_MAX_BYTES
    request_timeout_seconds: float = REQUEST_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class AgentConfig:
    state: StateDir
    identity: AgentIdentity
    options: DeliveryOptions

    @classmethod
    def load(cls, state: StateDir, options: DeliveryOptions) -> AgentConfig:
        return cls(state=state, identity=AgentIdentity.load(state), options=options)


def parse_endpoint(url: str) -> str:
    """The service's base URL: https only (the seeds promise TLS), no path beyond `/`, no query."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise AgentConfigError(f"the endpoint must be an https:// URL, not {url!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise AgentConfigError(f"the endpoint is the service's base URL, without a path: {url!r}")
    return f"https://{parts.netloc.lower()}"


def parse_duration(text: str) -> timedelta:
    """`90s`, `8m`, `2h`, `1d`, `250ms`; a bare number is seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise AgentConfigError(f"not a duration: {text!r} (for example 30s, 8m, 2h)")
    return timedelta(seconds=float(match["amount"]) * _DURATION_UNITS[match["unit"]])


def parse_size(text: str) -> int:
    """`4096`, `64k`, `100M`, `1GiB`: bytes, with binary multiples."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise AgentConfigError(f"not a size: {text!r} (for example 100M)")
    return int(match["amount"]) * _SIZE_UNITS[match["unit"].lower()]
