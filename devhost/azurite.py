"""Starting and stopping Azurite (the npm package pinned in package.json) on loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from urllib.parse import urlsplit

from shared.settings import AZURITE_ACCOUNT, AZURITE_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_SCRIPT = REPO_ROOT / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def is_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass(frozen=True)
class AzuritePorts:
    blob: int
    queue: int
    table: int

    @classmethod
    def free(cls) -> AzuritePorts:
        return cls(blob=free_port(), queue=free_port(), table=free_port())

    @classmethod
    def from_connection_string(cls, connection_string: str) -> AzuritePorts:
        """The ports a storage connection string points at; it must name loopback endpoints, since the
        emulator is started there. A missing queue endpoint gets a free port (Sluice uses no queues)."""
        fields = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
        ports = {}
        for service in ("Blob", "Queue", "Table"):
            endpoint = fields.get(f"{service}Endpoint")
            if endpoint is None and service == "Queue":
                ports[service] = free_port()
                continue
            url = urlsplit(endpoint or "")
            if url.hostname not in LOOPBACK_HOSTS or url.port is None:
                raise ValueError(
                    f"The storage connection string's {service}Endpoint ({endpoint!r}) is not a loopback "
                    "address with a port, so it is not an emulator this host can start."
                )
            ports[service] = url.port
        return cls(blob=ports["Blob"], queue=ports["Queue"], table=ports["Table"])

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue}/{AZURITE_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table}/{AZURITE_ACCOUNT};"
        )


class Azurite:
    """One Azurite process; `stop()` ends it and its children (it runs in its own process group)."""

    def __init__(self, *, location: Path, ports: AzuritePorts, log_file: Path | None = None) -> None:
        self.location = location
        self.ports = ports
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Azurite:
        """Returns once every port listens; on failure the process is stopped before raising."""
        if not AZURITE_SCRIPT.is_file():
            raise RuntimeError(f"Azurite is not installed ({AZURITE_SCRIPT} missing): run `npm install`.")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js is not installed (`node` is not on PATH); Azurite needs it.")
        self.location.mkdir(parents=True, exist_ok=True)
        options = {
            "--location": str(self.location),
            "--blobHost": "127.0.0.1",
            "--blobPort": str(self.ports.blob),
            "--queueHost": "127.0.0.1",
            "--queuePort": str(self.ports.queue),
            "--tableHost": "127.0.0.1",
            "--tablePort": str(self.ports.table),
        }
        flags = ["--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose"]
        with ExitStack() as files:
            output = files.enter_context(open(self._log_file, "ab")) if self._log_file else subprocess.DEVNULL
            self._process = subprocess.Popen(
                [node, str(AZURITE_SCRIPT), *flags, *chain.from_iterable(options.items())],
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        try:
            for port in (self.ports.blob, self.ports.queue, self.ports.table):
                wait_for_port(port, timeout=STARTUP_TIMEOUT_SECONDS, process=self._process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None
