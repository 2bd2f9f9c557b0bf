"""A throwaway PostgreSQL cluster for the test session: initdb in a temporary folder, a server on a
free loopback port with password authentication (psqlODBC connects over TCP), one database per test.

PostgreSQL refuses to run as root, so when the tests run as root the server runs as the `postgres`
OS user (through `runuser`) and owns its folder."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devhost.azurite import free_port

ODBC_DRIVER = "PostgreSQL Unicode"
SEARCHED_BIN_DIRS = ("/usr/lib/postgresql",)
SERVER_OS_USER = "postgres"
APP_ROLE = "sluice"
START_TIMEOUT_SECONDS = 60
COMMAND_TIMEOUT_SECONDS = 120
INSTALL_HINT = (
    "Install them with: sudo apt-get install -y postgresql odbc-postgresql unixodbc (or run `make deps`)."
)


class MissingTool(RuntimeError):
    """A binary or driver the integration tests need is not installed; the message says what to install."""


def find_bin_dir() -> Path:
    """The folder holding initdb, pg_ctl and postgres: $SLUICE_PG_BIN, then PATH, then the newest
    /usr/lib/postgresql/*/bin (Debian keeps them off PATH)."""
    override = os.environ.get("SLUICE_PG_BIN")
    candidates: list[Path] = [Path(override)] if override else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for root in SEARCHED_BIN_DIRS:
        versions = sorted(Path(root).glob("*/bin"), key=lambda p: _version_key(p.parent.name), reverse=True)
        candidates.extend(versions)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise MissingTool(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH nor in "
        f"/usr/lib/postgresql/*/bin; set SLUICE_PG_BIN to their folder. {INSTALL_HINT}"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def check_odbc_driver() -> None:
    try:
        import pyodbc
    except ImportError as error:
        raise MissingTool(f"pyodbc cannot be imported ({error}). {INSTALL_HINT}") from error
    if ODBC_DRIVER not in pyodbc.drivers():
        raise MissingTool(
            f"The ODBC driver {{{ODBC_DRIVER}}} is not registered with unixODBC "
            f"(found: {pyodbc.drivers()}). {INSTALL_HINT}"
        )


def odbc_connection_string(*, port: int, database: str, user: str, password: str) -> str:
    return (
        f"Driver={{{ODBC_DRIVER}}};Server=127.0.0.1;Port={port};Database={database};"
        f"Uid={user};Pwd={password};BoolsAsChar=0"
    )


@dataclass(frozen=True)
class PostgresDatabase:
    name: str
    connection_string: str


class PostgresCluster:
    """initdb + `pg_ctl start -w` on a free port; `create_database()` hands out fresh databases owned
    by an unprivileged role (so row-level security applies to it); `stop()` ends it and removes it."""

    def __init__(self, *, bin_dir: Path, base_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="sluice-pg-"))
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "server.log"
        self.port = 0
        self.superuser = "postgres"
        self.superuser_password = secrets.token_urlsafe(24)
        self.app_user = APP_ROLE
        self.app_password = secrets.token_urlsafe(24)
        self._as_other_user = os.geteuid() == 0
        self._started = False
        self._counter = 0
        self._counter_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PostgresCluster:
        check_odbc_driver()
        self._prepare_dir()
        password_file = self.base_dir / "pwfile"
        password_file.write_text(self.superuser_password + "\n", encoding="utf-8")
        self._own(password_file)
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", self.superuser,
            "--pwfile", str(password_file),
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_SECONDS),
            "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
        )  # fmt: skip
        self._started = True
        self.admin_execute(
            f"CREATE ROLE {self.app_user} LOGIN PASSWORD '{self.app_password}' "
            "NOSUPERUSER NOCREATEDB NOCREATEROLE"
        )
        # What an administrator does once per server when the app's login may not create roles: the
        # reader group, which the app's reader sessions SET ROLE to (migrations V0003, V0004).
        self.admin_execute("CREATE ROLE sluice_reader NOLOGIN")
        self.admin_execute(f"GRANT sluice_reader TO {self.app_user}")
        return self

    def stop(self) -> None:
        try:
            if self._started:
                self._started = False
                self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data_dir))
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------------------

    def connection_string(self, database: str, *, superuser: bool = False) -> str:
        if superuser:
            return odbc_connection_string(
                port=self.port, database=database, user=self.superuser, password=self.superuser_password
            )
        return odbc_connection_string(
            port=self.port, database=database, user=self.app_user, password=self.app_password
        )

    def create_database(self, prefix: str = "sluice_test") -> PostgresDatabase:
        with self._counter_lock:
            self._counter += 1
            name = f"{prefix}_{os.getpid()}_{self._counter}"
        self.admin_execute(f'CREATE DATABASE "{name}" OWNER {self.app_user} TEMPLATE template0')
        return PostgresDatabase(name=name, connection_string=self.connection_string(name))

    def drop_database(self, name: str) -> None:
        self.admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def admin_execute(self, sql: str, *, database: str = "postgres") -> list[Any]:
        """Runs one statement as the superuser in autocommit (CREATE/DROP DATABASE need that)."""
        import pyodbc

        connection = pyodbc.connect(self.connection_string(database, superuser=True), autocommit=True)
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    # -- helpers -----------------------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._as_other_user:
            try:
                import pwd

                pwd.getpwnam(SERVER_OS_USER)
            except KeyError:
                raise MissingTool(
                    f"Running as root, but there is no `{SERVER_OS_USER}` OS user to run PostgreSQL as "
                    f"(PostgreSQL refuses to run as root). {INSTALL_HINT}"
                ) from None
            if shutil.which("runuser") is None:
                raise MissingTool("Running as root needs `runuser` (util-linux) to start PostgreSQL.")
            self._own(self.base_dir)
        self.base_dir.chmod(0o700)

    def _own(self, path: Path) -> None:
        if self._as_other_user:
            shutil.chown(path, user=SERVER_OS_USER, group=SERVER_OS_USER)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self._as_other_user:
            command = ["runuser", "-u", SERVER_OS_USER, "--", *command]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            cwd=self.base_dir,
            check=False,
        )
        if result.returncode != 0:
            server_log = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{tool} failed with exit code {result.returncode}:\n{result.stdout}\n{result.stderr}\n"
                f"server log tail:\n{server_log}"
            )
