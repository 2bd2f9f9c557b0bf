"""`sluice agent ...`: enrolled agents as the operator sees them (`list`, `revoke`), and the agent
itself as it runs on a customer machine (`enroll`, `send`, `tail`, `flush`, `status`; see
shared.agentclient). The agent's commands read only their state dir and flags, never the service's
settings."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from shared.agentclient.agent import Agent as LocalAgent
from shared.agentclient.agent import utc_now
from shared.agentclient.batching import record_from_line, records_from_json
from shared.agentclient.config import (
    BATCH_MAX_BYTES,
    REQUEST_TIMEOUT_SECONDS,
    RETRY_INTERVAL,
    RETRY_WINDOW,
    SPOOL_MAX_BYTES,
    STATE_DIR_SETTING,
    AgentConfig,
    AgentIdentity,
    AuthMode,
    DeliveryOptions,
    RetryPolicy,
    StateDir,
    parse_duration,
    parse_endpoint,
    parse_size,
)
from shared.agentclient.enrollment import AgentCredentials, enroll, use_shared_key
from shared.agentclient.errors import AgentConfigError, AgentError
from shared.agentclient.sender import RoundReport
from shared.agentclient.spool import Spool
from shared.agentclient.transport import HttpsTransport
from shared.agents import Agent, revoke_agent
from shared.audit import AuditAction
from shared.cli.common import audit_admin, print_record, print_rows, services
from shared.ids import parse_log_type, parse_workspace_id
from shared.telemetry import install_json_logging

ENROLLMENT_KEY_SETTING = "SLUICE_ENROLLMENT_KEY"
# `send --no-wait` left batches in the spool for a later attempt (sysexits.h EX_TEMPFAIL).
EXIT_BATCHES_WAIT = 75
EXIT_NOT_DELIVERED = 1
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT


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


def agent_command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The agent's commands log JSON lines to stderr and report their own errors."""

    def command(args: argparse.Namespace) -> int:
        install_json_logging("INFO")
        try:
            return run(args)
        except AgentError as error:
            print(f"sluice agent: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # while waiting for a retry: what was taken stays in the spool
            print("sluice agent: interrupted; spooled batches wait for the next run", file=sys.stderr)
            return EXIT_INTERRUPTED

    return command


def identity_row(state: StateDir, identity: AgentIdentity) -> dict[str, Any]:
    return {
        "state_dir": str(state.path),
        "endpoint": identity.endpoint,
        "workspace_id": identity.workspace_id,
        "auth": identity.auth.value,
        "agent_id": identity.agent_id,
    }


def cmd_enroll(args: argparse.Namespace) -> int:
    state = _state_dir(args)
    endpoint = parse_endpoint(args.endpoint)
    workspace_id = parse_workspace_id(args.workspace)
    ca_file = args.ca_file.resolve() if args.ca_file else None
    if args.auth is AuthMode.SHARED_KEY:
        if not args.shared_key_file:
            raise AgentConfigError("--auth shared-key needs --shared-key-file (- for stdin)")
        identity = use_shared_key(
            state,
            endpoint=endpoint,
            workspace_id=workspace_id,
            shared_key=_read_secret(args.shared_key_file),
            ca_file=ca_file,
        )
    else:
        enrollment_key = args.enrollment_key or os.environ.get(ENROLLMENT_KEY_SETTING)
        if not enrollment_key:
            raise AgentConfigError(f"give --enrollment-key or set {ENROLLMENT_KEY_SETTING}")
        identity = enroll(
            state,
            endpoint=endpoint,
            workspace_id=workspace_id,
            enrollment_key=enrollment_key,
            auth=args.auth,
            ca_file=ca_file,
            # No client certificate: it is registered by this very request.
            transport=HttpsTransport(ca_file=ca_file, timeout_seconds=args.timeout.total_seconds()),
            now=utc_now(),
        )
    print_record(identity_row(state, identity), as_json=args.json)
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    agent = _agent(args)
    log_type = parse_log_type(args.log_type)
    with _input(args.file) as source:
        records = records_from_json(source.read()) if args.format == "json" else _line_records(source)
        return _exit_code(agent.send(records, log_type=log_type, wait=not args.no_wait))


def cmd_flush(args: argparse.Namespace) -> int:
    return _exit_code(_agent(args).deliver(wait=not args.no_wait))


def cmd_tail(args: argparse.Namespace) -> int:
    agent = _agent(args)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    agent.follow(
        args.file,
        log_type=parse_log_type(args.log_type),
        stop=stop,
        from_beginning=args.from_beginning,
        poll_seconds=args.poll_interval.total_seconds(),
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    config = AgentConfig.load(_state_dir(args), DeliveryOptions())
    identity, state = config.identity, config.state
    record = identity_row(state, identity)
    if identity.auth is not AuthMode.SHARED_KEY:
        not_after = AgentCredentials.load(state).certificate.not_valid_after_utc
        record["certificate_not_after"] = not_after.isoformat()
    spool = Spool(state.spool_dir, max_bytes=config.options.spool_max_bytes, clock=utc_now).summary()
    record.update(
        spool_batches=spool.batches,
        spool_records=spool.records,
        spool_bytes=spool.bytes,
        oldest_batch_at=spool.oldest_created_at.isoformat() if spool.oldest_created_at else None,
        rejected_batches=spool.rejected_batches,
        rejected_bytes=spool.rejected_bytes,
    )
    print_record(record, as_json=args.json)
    return 0


def _agent(args: argparse.Namespace) -> LocalAgent:
    return LocalAgent(AgentConfig.load(_state_dir(args), _options(args)))


def _state_dir(args: argparse.Namespace) -> StateDir:
    return StateDir(args.state_dir) if args.state_dir else StateDir.default()


def _options(args: argparse.Namespace) -> DeliveryOptions:
    return DeliveryOptions(
        retry=RetryPolicy(interval=args.retry_interval, window=args.retry_window),
        spool_max_bytes=args.spool_max_bytes,
        batch_max_bytes=args.batch_max_bytes,
        request_timeout_seconds=args.timeout.total_seconds(),
    )


def _exit_code(report: RoundReport | None) -> int:
    """0 all sent (or left to the process that delivers this spool), 1 some batches were refused or
    dropped, 75 some wait for a later attempt (only without waiting)."""
    if report is None:
        print("sluice agent: another process delivers this spool; it sends these batches", file=sys.stderr)
        return 0
    print(_summary(report), file=sys.stderr)
    if report.refused.batches or report.expired.batches:
        return EXIT_NOT_DELIVERED
    return EXIT_BATCHES_WAIT if report.retry_at is not None else 0


def _summary(report: RoundReport) -> str:
    text = (
        f"sluice agent: delivered {report.delivered.batches} batches ({report.delivered.records} records), "
        f"refused {report.refused.batches}, dropped {report.expired.batches} past the retry window"
    )
    if report.retry_at is not None:
        text += f"; the rest waits for the next attempt at {report.retry_at.isoformat(timespec='seconds')}"
    return text


def _line_records(source: IO[bytes]) -> Iterator[dict[str, Any]]:
    computer = socket.gethostname()
    for line in source:
        record = record_from_line(line.decode("utf-8", "replace"), computer=computer, now=utc_now())
        if record is not None:
            yield record


@contextmanager
def _input(name: str) -> Iterator[IO[bytes]]:
    """A file, or stdin for `-`, as bytes."""
    if name == "-":
        yield sys.stdin.buffer
        return
    path = Path(name)
    if not path.is_file() or not os.access(path, os.R_OK):
        raise AgentConfigError(f"cannot read {name}: not a readable file")
    with path.open("rb") as handle:
        yield handle


def _read_secret(name: str) -> str:
    with _input(name) as source:
        return source.read().decode("ascii", "replace").strip()


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except AgentConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except AgentConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(commands: Any) -> None:
    agent = commands.add_parser("agent", help="enrolled agents (operator), and the agent itself")
    sub = agent.add_subparsers(dest="agent_command", required=True)

    listing = sub.add_parser("list", help="agents of a workspace")
    listing.add_argument("--workspace", required=True)
    listing.set_defaults(run=cmd_list)
    revoke = sub.add_parser("revoke", help="refuse an agent's certificate from its next request on")
    revoke.add_argument("--workspace", required=True)
    revoke.add_argument("agent", help="agent id")
    revoke.set_defaults(run=cmd_revoke)

    enrollment = sub.add_parser("enroll", help="make this machine's key and certificate and register them")
    enrollment.add_argument("--endpoint", required=True, help="the service's base URL, https://...")
    enrollment.add_argument("--workspace", required=True)
    enrollment.add_argument(
        "--enrollment-key", help=f"the workspace's enrollment key (default: ${ENROLLMENT_KEY_SETTING})"
    )
    enrollment.add_argument(
        "--auth", type=AuthMode, choices=list(AuthMode), default=AuthMode.ASSERTION, help="default: assertion"
    )
    enrollment.add_argument("--shared-key-file", help="with --auth shared-key: file holding the key, - stdin")
    enrollment.add_argument("--ca-file", type=Path, help="CA certificates to trust (default: the system's)")
    enrollment.set_defaults(run=agent_command(cmd_enroll))

    send = sub.add_parser("send", help="spool records from a file or stdin, then deliver them")
    send.add_argument("file", nargs="?", default="-", help="FILE or - for stdin (default)")
    send.add_argument("--log-type", required=True)
    send.add_argument(
        "--format",
        choices=("lines", "json"),
        default="lines",
        help="lines: one record per line, JSON objects pass through (default); json: one object or array",
    )
    send.set_defaults(run=agent_command(cmd_send))

    tail = sub.add_parser("tail", help="follow a log file across rotation and deliver its lines")
    tail.add_argument("file", type=Path)
    tail.add_argument("--log-type", required=True)
    tail.add_argument("--from-beginning", action="store_true", help="with no checkpoint yet: from the start")
    tail.add_argument("--poll-interval", type=_duration, default=_duration("1s"))
    tail.set_defaults(run=agent_command(cmd_tail))

    flush = sub.add_parser("flush", help="deliver what is in the spool")
    flush.set_defaults(run=agent_command(cmd_flush))

    status = sub.add_parser("status", help="identity and spool: batches, bytes, oldest batch")
    status.set_defaults(run=agent_command(cmd_status))

    for name in ("send", "flush"):
        sub.choices[name].add_argument(
            "--no-wait", action="store_true", help="one attempt; what fails stays spooled (exit 75)"
        )
    for name in ("list", "revoke", "enroll", "status"):
        sub.choices[name].add_argument("--json", action="store_true", help="machine-readable output")
    for name in ("enroll", "send", "tail", "flush", "status"):
        sub.choices[name].add_argument(
            "--state-dir",
            type=Path,
            help=f"the agent's key, certificate, spool and checkpoints (default: ${STATE_DIR_SETTING}, "
            "else $XDG_STATE_HOME/sluice-agent, else ~/.local/state/sluice-agent)",
        )
    for name in ("enroll", "send", "tail", "flush"):
        sub.choices[name].add_argument(
            "--timeout",
            type=_duration,
            default=timedelta(seconds=REQUEST_TIMEOUT_SECONDS),
            help="per request",
        )
    for name in ("send", "tail", "flush"):
        _delivery_options(sub.choices[name])


def _delivery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry-interval", type=_duration, default=RETRY_INTERVAL, help="default: 8m")
    parser.add_argument("--retry-window", type=_duration, default=RETRY_WINDOW, help="default: 2h")
    parser.add_argument(
        "--spool-max-bytes",
        type=_size,
        default=SPOOL_MAX_BYTES,
        help="the spool's cap on disk (default: 100M)",
    )
    parser.add_argument(
        "--batch-max-bytes", type=_size, default=BATCH_MAX_BYTES, help="of JSON (default: 1M)"
    )
