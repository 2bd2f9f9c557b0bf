"""`python -m devhost` (`make run`): Azurite, then every function folder of the app on local parts:
HTTP triggers over HTTPS (with optional TLS client certificates forwarded as App Service forwards them),
BlobCreated events from Azurite, timers. SIGINT or SIGTERM stops it all, in this order: the HTTP server
(no new connections; requests in flight finish, for at most STOP_TIMEOUT_SECONDS), timers, event
delivery, the services (database connections), Azurite; so nothing still running needs what is gone."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from devhost.azurite import REPO_ROOT, Azurite, AzuritePorts, is_listening
from devhost.certs import ensure_tls_files
from devhost.clientcerts import ClientCertificateTrust
from devhost.demo import DEMO_FILE, write_demo_workspace
from devhost.events import BlobCreatedDispatcher, Receipts, StorageBlobSource
from devhost.functions import FunctionLoadError, FunctionSpec, discover
from devhost.routes import Router, http_route, route_prefix
from devhost.server import FunctionHttpServer
from devhost.timers import TimerScheduler
from shared.azure_storage import blob_service
from shared.errors import SluiceError
from shared.localsettings import EXAMPLE_SETTINGS_FILE, LOCAL_SETTINGS_FILE, load_local_settings
from shared.runtime import Services, reset_services, services
from shared.settings import TRUST_CLIENT_CERT_SETTING, Settings
from shared.telemetry import install_json_logging

DEFAULT_PORT = 7071
DEFAULT_STATE_DIR = REPO_ROOT / ".local"
# How long the HTTP server and each worker may take to finish their current invocations when stopping.
STOP_TIMEOUT_SECONDS = 10.0
SUPPORTED_TRIGGERS = frozenset({"httpTrigger", "eventGridTrigger", "timerTrigger"})

log = logging.getLogger("sluice.devhost")


class StartupError(Exception):
    pass


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Run the function app locally: Azurite, HTTPS, BlobCreated events, timers.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTPS port on 127.0.0.1")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="Azurite data, certificates, receipts, dead letters, demo-workspace.json (default: .local)",
    )
    parser.add_argument(
        "--no-azurite", action="store_true", help="do not start Azurite: storage is already running"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    # Relative paths in the settings (.local/sluice.db) mean the app root, as under `func start`.
    os.chdir(REPO_ROOT)
    # Before any function is imported, so services() sees them; variables already set win.
    if not load_local_settings(REPO_ROOT / LOCAL_SETTINGS_FILE):
        load_local_settings(REPO_ROOT / EXAMPLE_SETTINGS_FILE)
    # This host sets X-ARR-ClientCert itself and removes clients' copies, so the app may trust it; an
    # explicit false is kept, to run the app as on a plan without client certificates.
    os.environ.setdefault(TRUST_CLIENT_CERT_SETTING, "true")
    try:
        settings = Settings.from_env()
    except SluiceError as error:
        print(f"devhost: {error.message}", file=sys.stderr)
        return 2
    install_json_logging(settings.log_level)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        serve(settings, state_dir=state_dir, port=args.port, azurite=not args.no_azurite, stopping=stopping)
    except StartupError as error:
        log.error("the local host could not start: %s", error)
        return 1
    except (FunctionLoadError, SluiceError, OSError, RuntimeError, ValueError) as error:
        log.error("the local host could not start: %s", error, exc_info=True)
        return 1
    return 0


def serve(
    settings: Settings, *, state_dir: Path, port: int, azurite: bool, stopping: threading.Event
) -> None:
    """Starts everything, HTTP last, waits for `stopping`, then stops everything in reverse order: HTTP
    first (its requests in flight finish), so nothing still running needs what was stopped before it."""
    with ExitStack() as stack:
        if azurite:
            stack.callback(start_azurite(settings, state_dir).stop)
        tls = ensure_tls_files(state_dir, now=datetime.now(UTC))
        current = services()
        stack.callback(reset_services)
        # Locally the host migrates; in Azure a deployment step does.
        current.database.migrate()

        trust = ClientCertificateTrust(tls, lambda: registered_certificates(current))
        trust.reload()
        by_trigger = _by_trigger(discover(REPO_ROOT, os.environ))
        for function in by_trigger.get("eventGridTrigger", []):
            dispatcher = BlobCreatedDispatcher(
                function,
                source=StorageBlobSource(blob_service(settings.storage)),
                receipts=Receipts(state_dir / "receipts" / f"{function.name}.jsonl"),
                dead_letter_dir=state_dir / "deadletter" / function.name,
            )
            dispatcher.start()
            stack.callback(dispatcher.stop, STOP_TIMEOUT_SECONDS)
        if timers := by_trigger.get("timerTrigger", []):
            scheduler = TimerScheduler(timers)
            scheduler.start()
            stack.callback(scheduler.stop, STOP_TIMEOUT_SECONDS)
        prefix = route_prefix(REPO_ROOT / "host.json")
        http_functions = [trust.reloading_after_enrollment(f) for f in by_trigger.get("httpTrigger", [])]
        server = start_http(stack, http_functions, prefix=prefix, port=port, tls=trust.context)

        # Written last: its presence tells a client (or a test) that the host is ready.
        demo_file = state_dir / DEMO_FILE
        write_demo_workspace(demo_file, current, endpoint=server.origin, ca_file=tls.ca_file)
        print(
            f"Sluice local host on {server.origin}/{prefix} (demo workspace: {demo_file}); Ctrl-C stops it.",
            flush=True,
        )
        stopping.wait()
        log.info("stopping")


def registered_certificates(current: Services) -> list[str]:
    """The PEM of every agent certificate in the registry, whatever its workspace and state."""
    return [
        agent.certificate_pem
        for workspace in current.registry.list_workspaces()
        for agent in current.agents.list_agents(workspace.workspace_id)
    ]


def _by_trigger(functions: list[FunctionSpec]) -> dict[str, list[FunctionSpec]]:
    grouped: dict[str, list[FunctionSpec]] = {}
    for function in functions:
        grouped.setdefault(function.trigger_type, []).append(function)
    for trigger_type in grouped.keys() - SUPPORTED_TRIGGERS:
        names = ", ".join(f.name for f in grouped[trigger_type])
        log.warning("%s functions are not run by the local host: %s", trigger_type, names)
    return grouped


def start_http(
    stack: ExitStack,
    functions: list[FunctionSpec],
    *,
    prefix: str,
    port: int,
    tls: Callable[[], ssl.SSLContext],
) -> FunctionHttpServer:
    routes = [http_route(f.name, f.trigger, prefix=prefix) for f in functions]
    try:
        server = FunctionHttpServer(
            port, functions={f.name: f for f in functions}, router=Router(routes), tls=tls
        )
    except OSError as error:
        raise StartupError(f"cannot listen on 127.0.0.1:{port}: {error.strerror}") from error
    stack.callback(server.server_close)  # if the thread does not start; closing twice is harmless
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="devhost-http", daemon=True
    ).start()
    stack.callback(server.stop, STOP_TIMEOUT_SECONDS)
    for route in routes:
        log.info("%s %s -> %s", " ".join(sorted(route.methods)), route.template, route.function_name)
    return server


def start_azurite(settings: Settings, state_dir: Path) -> Azurite:
    connection_string = settings.storage.connection_string
    if connection_string is None:
        raise StartupError("SLUICE_STORAGE names no emulator (identity-based); use --no-azurite")
    ports = AzuritePorts.from_connection_string(connection_string)
    busy = [p for p in (ports.blob, ports.queue, ports.table) if is_listening(p)]
    if busy:
        raise StartupError(f"ports {busy} are in use; if Azurite already runs there, use --no-azurite")
    log.info("starting Azurite (blob %d, queue %d, table %d)", ports.blob, ports.queue, ports.table)
    return Azurite(location=state_dir / "azurite", ports=ports, log_file=state_dir / "azurite.log").start()


if __name__ == "__main__":
    sys.exit(main())
