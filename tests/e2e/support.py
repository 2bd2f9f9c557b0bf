"""`python -m devhost` as a subprocess, driven the way a client drives `make run`: readiness through
demo-workspace.json, SharedKey-signed posts over HTTPS checked against the generated CA, and the
`sluice` command for what reached SQL. Every wait is bounded."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from devhost.azurite import REPO_ROOT, AzuritePorts, free_port
from shared import sharedkey

READY_TIMEOUT_SECONDS = 45.0
STOP_TIMEOUT_SECONDS = 20.0
REQUEST_TIMEOUT_SECONDS = 10.0
SLUICE_COMMAND = Path(sys.executable).with_name("sluice")

T = TypeVar("T")


def eventually(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


def host_environment(tmp_path: Path, ports: AzuritePorts) -> dict[str, str]:
    """Everything the host and `sluice` read, in the environment, which wins over local.settings.json."""
    return {
        **os.environ,
        "SLUICE_STORAGE": ports.connection_string,
        "SLUICE_SQL_DIALECT": "sqlite",
        "SLUICE_SQL_CONNECTION": str(tmp_path / "sluice.db"),
        "SLUICE_SECRETS_DIR": str(tmp_path / "secrets"),
        "SLUICE_LOG_LEVEL": "INFO",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
    }


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LocalHost:
    """One run of the host; `logs` holds its stdout and stderr files."""

    host_args: tuple[str, ...] = ()  # beyond --state-dir and --port
    log_mode = "wb"  # a subclass whose runs share the port's log files appends ("ab")

    def __init__(self, *, state_dir: Path, logs: Path, env: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.env = env
        self.port = free_port()
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout = logs / f"host-{self.port}.out"
        self.stderr = logs / f"host-{self.port}.err"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def demo_file(self) -> Path:
        return self.state_dir / "demo-workspace.json"

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> LocalHost:
        with self.stdout.open(self.log_mode) as out, self.stderr.open(self.log_mode) as err:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devhost",
                    *self.host_args,
                    "--state-dir",
                    str(self.state_dir),
                    "--port",
                    str(self.port),
                ],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
            )
        # A file left by an earlier run names another port: only this run's endpoint means ready.
        eventually(self._ready, timeout=READY_TIMEOUT_SECONDS, what=f"the host is ready\n{self.output()}")
        return self

    def _ready(self) -> bool | None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"the host exited with {self._process.returncode}\n{self.output()}")
        try:
            return self.demo()["endpoint"] == self.endpoint or None
        except (OSError, ValueError):
            return None

    def demo(self) -> dict[str, str]:
        document: dict[str, str] = json.loads(self.demo_file.read_text(encoding="utf-8"))
        return document

    def post_logs(self, records: list[dict[str, Any]], *, log_type: str, key: str | None = None) -> Response:
        demo = self.demo()
        body = json.dumps(records).encode("utf-8")
        x_ms_date = sharedkey.rfc1123(datetime.now(UTC))
        authorization = sharedkey.authorization_header(
            demo["workspace_id"],
            key or demo["primary_key"],
            content_length=len(body),
            content_type="application/json",
            x_ms_date=x_ms_date,
        )
        context = ssl.create_default_context(cafile=demo["ca_file"])
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=REQUEST_TIMEOUT_SECONDS
        )
        try:
            connection.request(
                "POST",
                "/api/logs?api-version=2016-04-01",
                body=body,
                headers={
                    "Authorization": authorization,
                    "Content-Type": "application/json",
                    "Log-Type": log_type,
                    "x-ms-date": x_ms_date,
                },
            )
            response = connection.getresponse()
            return Response(status=response.status, body=response.read())
        finally:
            connection.close()

    def usage(self) -> list[dict[str, Any]]:
        """`sluice usage --json` for the demo workspace, run as an operator would."""
        result = subprocess.run(
            [str(SLUICE_COMMAND), "usage", "--workspace", self.demo()["workspace_id"], "--json"],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            timeout=REQUEST_TIMEOUT_SECONDS * 3,
            check=True,
        )
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def stop(self) -> int:
        """SIGINT, as Ctrl-C sends it; returns the exit code."""
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        try:
            return self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the host did not stop after SIGINT\n{self.output()}") from None

    def kill(self) -> None:
        """Teardown for a test that failed half-way: SIGINT first, so Azurite is stopped too."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.stderr.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # not a log record (a traceback printed by something else)
        return records

    def output(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(encoding='utf-8', errors='replace')[-6000:]}"
            for path in (self.stdout, self.stderr)
            if path.exists()
        )


def total_records(rows: list[dict[str, Any]]) -> int:
    return sum(int(row["records"]) for row in rows)
