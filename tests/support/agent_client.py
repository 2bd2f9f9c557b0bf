"""The agent driven as its user drives it: `sluice agent ...` in subprocesses on a state dir of its
own, against a local host that can go down and come back on the same endpoint; and what reached the
service, read back independently of the agent (raw blobs straight from Azurite, `sluice usage`)."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.azurite import REPO_ROOT, AzuritePorts
from tests.e2e.support import REQUEST_TIMEOUT_SECONDS, SLUICE_COMMAND, LocalHost, host_environment
from tests.support.storage import blob_service

AGENT_TIMEOUT_SECONDS = 60.0


class RestartableHost:
    """The local host on one state dir and one port: `stop()` takes the endpoint down, `start()`
    brings the same endpoint back (Azurite's data and the database are kept)."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.env = host_environment(tmp_path, AzuritePorts.free())
        self.host = self._new_host()
        self.running = False

    def _new_host(self) -> LocalHost:
        return LocalHost(state_dir=self._tmp_path / "state", logs=self._tmp_path / "logs", env=self.env)

    @property
    def endpoint(self) -> str:
        return self.host.endpoint

    @property
    def ca_file(self) -> str:
        return str(self.host.state_dir / "ca.pem")

    def start(self) -> None:
        if self.running:
            return
        port = self.host.port
        self.host = self._new_host()
        self.host.port = port
        # Readiness is this run writing the demo file with its endpoint; an earlier run's names it too.
        self.host.demo_file.unlink(missing_ok=True)
        self.host.start()
        self.running = True

    def stop(self) -> None:
        assert self.host.stop() == 0
        self.running = False

    def kill(self) -> None:
        self.host.kill()

    def sluice(self, *args: str) -> Any:
        """An operator's `sluice ... --json` against this host's storage and database."""
        result = subprocess.run(
            [str(SLUICE_COMMAND), *args, "--json"],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            timeout=REQUEST_TIMEOUT_SECONDS * 3,
        )
        assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
        return json.loads(result.stdout)

    def usage_records(self, workspace_id: str, log_type: str) -> int:
        rows = self.sluice("usage", "--workspace", workspace_id)
        return sum(int(row["records"]) for row in rows if row["log_type"] == log_type)

    def raw_batches(self, workspace_id: str, log_type: str) -> list[RawBatch]:
        """Every raw blob of the log type, read with the storage SDK."""
        container = blob_service(self.env["SLUICE_STORAGE"]).get_container_client(f"ws-{workspace_id}")
        found = []
        for blob in container.list_blobs(name_starts_with="raw/", include=["metadata"]):
            if f"/{log_type}/" in blob.name:
                data = container.download_blob(blob.name, decompress=False).readall()
                found.append(RawBatch(blob.name, blob.metadata["sha256"], json.loads(gzip.decompress(data))))
        return found


@dataclass(frozen=True)
class RawBatch:
    name: str
    sha256: str  # of the gzip bytes as stored: the agent's spooled bytes, the same on every re-send
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class Workspace:
    """What `sluice workspace create` answers, the parts an agent uses."""

    workspace_id: str
    enrollment_key: str
    primary_key: str


@dataclass(frozen=True)
class AgentRun:
    returncode: int
    stdout: str
    stderr: str

    def log_messages(self) -> list[str]:
        return log_messages(self.stderr)


def log_messages(stderr: str) -> list[str]:
    """The messages of the agent's JSON log lines."""
    messages = []
    for line in stderr.splitlines():
        try:
            messages.append(str(json.loads(line)["message"]))
        except (ValueError, KeyError, TypeError):
            continue  # the summary line, or not a log record
    return messages


class AgentCli:
    """`sluice agent ...` on one state dir, each run's stderr kept in `logs`. `kill_all()` ends what
    `start()` started and is still running (for a test that failed half-way)."""

    def __init__(self, state_dir: Path, logs: Path) -> None:
        self.state_dir = state_dir
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self._started: list[StartedAgent] = []

    def command(self, *args: str) -> list[str]:
        return [str(SLUICE_COMMAND), "agent", *args, "--state-dir", str(self.state_dir)]

    def run(self, *args: str, stdin: bytes | None = None) -> AgentRun:
        result = subprocess.run(
            self.command(*args),
            input=stdin,
            capture_output=True,
            cwd=REPO_ROOT,
            timeout=AGENT_TIMEOUT_SECONDS,
        )
        return AgentRun(
            result.returncode,
            result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace"),
        )

    def start(self, *args: str) -> StartedAgent:
        """In the background; stdin is closed (give input as a file)."""
        stderr_file = self.logs / f"agent-{len(self._started) + 1}.err"
        with stderr_file.open("wb") as stderr:
            process = subprocess.Popen(
                self.command(*args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=REPO_ROOT,
            )
        started = StartedAgent(process, stderr_file)
        self._started.append(started)
        return started

    def kill_all(self) -> None:
        for started in self._started:
            if started.process.poll() is None:
                started.process.kill()
                started.process.wait()

    def enroll(self, endpoint: str, ca_file: str, workspace_id: str, *auth: str) -> None:
        """`auth`: `--enrollment-key K`, or `--auth shared-key --shared-key-file F`, ..."""
        result = self.run(
            "enroll", "--endpoint", endpoint, "--workspace", workspace_id, "--ca-file", ca_file, *auth
        )
        assert result.returncode == 0, result.stderr

    def spooled_batches(self) -> int:
        return len(list((self.state_dir / "spool").glob("*.batch")))


@dataclass
class StartedAgent:
    process: subprocess.Popen[bytes]
    stderr_file: Path

    def log_messages(self) -> list[str]:
        return log_messages(self.stderr_file.read_text(encoding="utf-8", errors="replace"))

    def wait(self) -> int:
        return self.process.wait(timeout=AGENT_TIMEOUT_SECONDS)


def json_lines(records: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)
