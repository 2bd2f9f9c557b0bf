"""The local host as a process that can be killed with SIGKILL: it runs on an Azurite the test started
(`--no-azurite`), so a kill ends the host alone and the blobs it committed stay where they are; it comes
back on the same port and state dir (receipts, database), as a restarted Functions instance would."""

from __future__ import annotations

import signal
from pathlib import Path

from devhost.azurite import Azurite, AzuritePorts
from tests.e2e.support import LocalHost
from tests.support.agent_client import RestartableHost
from tests.support.storage import check_azurite_installed


class HostOnTestStorage(LocalHost):
    """One run of `python -m devhost --no-azurite`; its output is appended to the logs of the port."""

    host_args = ("--no-azurite",)
    log_mode = "ab"

    def kill_hard(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, requests in flight get no answer."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()


class KillableHost(RestartableHost):
    """RestartableHost on the test's own Azurite; `kill_hard()` ends the host with SIGKILL."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        ports = AzuritePorts.from_connection_string(self.env["SLUICE_STORAGE"])
        check_azurite_installed()
        self.azurite = Azurite(
            location=tmp_path / "azurite", ports=ports, log_file=tmp_path / "azurite.log"
        ).start()

    def _new_host(self) -> LocalHost:
        return HostOnTestStorage(
            state_dir=self._tmp_path / "state", logs=self._tmp_path / "logs", env=self.env
        )

    def kill_hard(self) -> None:
        assert isinstance(self.host, HostOnTestStorage)
        self.host.kill_hard()
        self.running = False

    def close(self) -> None:
        self.kill()
        self.azurite.stop()
