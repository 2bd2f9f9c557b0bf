"""Fixtures for the local host: its own Azurite ports, state dir and SQLite file per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhost.azurite import AzuritePorts
from tests.e2e.support import LocalHost, host_environment


@dataclass(frozen=True)
class HostSetup:
    state_dir: Path
    ports: AzuritePorts
    start: Callable[[], LocalHost]


@pytest.fixture
def local_host(tmp_path: Path) -> Iterator[HostSetup]:
    """`start()` runs the host on the test's state dir; every run is stopped at teardown."""
    ports = AzuritePorts.free()
    env = host_environment(tmp_path, ports)
    state_dir = tmp_path / "state"
    started: list[LocalHost] = []

    def start() -> LocalHost:
        host = LocalHost(state_dir=state_dir, logs=tmp_path / "logs", env=env)
        started.append(host)
        return host.start()

    try:
        yield HostSetup(state_dir=state_dir, ports=ports, start=start)
    finally:
        for host in started:
            host.kill()
