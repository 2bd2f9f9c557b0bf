"""`python -m devhost` end to end (HTTPS ingest, BlobCreated processing, restart, clean stop), and
in-process with stand-ins for storage and services: the order in which a stop takes things down, and
the demo workspace file."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import pytest

import devhost.__main__ as host
from devhost.azurite import REPO_ROOT, is_listening
from devhost.demo import write_demo_workspace
from devhost.events import BlobCreatedDispatcher, BlobVersion
from devhost.functions import FunctionSpec
from devhost.routes import route_prefix
from devhost.server import FunctionHttpServer
from devhost.timers import TimerScheduler
from shared.workspaces import new_shared_key
from tests.e2e.conftest import HostSetup
from tests.e2e.support import eventually, total_records

PROCESSED_TIMEOUT_SECONDS = 10.0
TIMEOUT_SECONDS = 10.0


@pytest.mark.e2e
def test_given_a_signed_post_when_it_is_accepted_then_usage_shows_its_records_and_sigint_stops_all(
    local_host: HostSetup,
) -> None:
    host = local_host.start()
    records = [{"Computer": "web-1", "Message": "started"}, {"Computer": "web-1", "Message": "ready"}]

    response = host.post_logs(records, log_type="AppEvents")

    assert response.status == 200, response.body
    rows = eventually(
        lambda: host.usage() or None, timeout=PROCESSED_TIMEOUT_SECONDS, what="usage rows appear"
    )
    assert [(r["log_type"], r["computer"], r["records"]) for r in rows] == [("AppEvents", "web-1", 2)]
    ports = local_host.ports
    assert all(is_listening(p) for p in (ports.blob, ports.queue, ports.table))

    assert host.stop() == 0

    assert not any(is_listening(p) for p in (ports.blob, ports.queue, ports.table))


@pytest.mark.e2e
def test_given_a_wrong_key_when_posting_then_403_invalid_authorization(local_host: HostSetup) -> None:
    host = local_host.start()

    response = host.post_logs([{"Message": "x"}], log_type="AppEvents", key=new_shared_key())

    assert response.status == 403
    assert response.json()["Error"] == "InvalidAuthorization"
    assert "Message" in response.json()


@pytest.mark.e2e
def test_given_a_restart_on_the_same_state_dir_then_the_workspace_is_kept_and_nothing_is_redelivered(
    local_host: HostSetup,
) -> None:
    first = local_host.start()
    assert first.post_logs([{"Computer": "a"}] * 3, log_type="Before").status == 200
    eventually(
        lambda: total_records(first.usage()) == 3 or None,
        timeout=PROCESSED_TIMEOUT_SECONDS,
        what="the first post is processed",
    )
    demo_before = first.demo()
    assert first.stop() == 0

    second = local_host.start()
    assert second.post_logs([{"Computer": "b"}] * 2, log_type="After").status == 200
    eventually(
        lambda: total_records(second.usage()) == 5 or None,
        timeout=PROCESSED_TIMEOUT_SECONDS,
        what="the second post is processed",
    )
    assert second.stop() == 0

    demo_after = second.demo()
    assert demo_after["workspace_id"] == demo_before["workspace_id"]
    assert demo_after["primary_key"] == demo_before["primary_key"]
    # Blobs are delivered oldest first, so a redelivered first blob would have come before the new one.
    deliveries = [
        r["subject"]
        for r in second.log_records()
        if r["logger"] == "sluice.devhost.events" and r["message"].startswith("delivered")
    ]
    assert len(deliveries) == 1
    assert "/After/" in deliveries[0]


class NoBlobs:
    account = "devstoreaccount1"

    def list_blobs(self) -> list[BlobVersion]:
        return []


def _recording_stop(monkeypatch: pytest.MonkeyPatch, cls: type, order: list[str], label: str) -> None:
    original: Callable[..., None] = cls.stop  # type: ignore[attr-defined]

    def stop(self: object, *args: Any) -> None:
        original(self, *args)
        order.append(label)

    monkeypatch.setattr(cls, "stop", stop)


def test_given_a_request_in_flight_when_the_host_stops_then_it_finishes_before_anything_it_needs_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def slow(req: func.HttpRequest) -> func.HttpResponse:
        entered.set()
        assert release.wait(TIMEOUT_SECONDS)
        order.append("request finished")
        return func.HttpResponse("finished")

    functions = [
        FunctionSpec(
            name="slow", trigger={"type": "httpTrigger", "name": "req", "methods": ["get"]}, entry=slow
        ),
        FunctionSpec(
            name="process_blob",
            trigger={"type": "eventGridTrigger", "name": "event"},
            entry=lambda event: None,
        ),
        FunctionSpec(
            name="yearly",
            trigger={"type": "timerTrigger", "name": "timer", "schedule": "0 0 0 1 1 *"},
            entry=lambda timer: None,
        ),
    ]
    ready: dict[str, str] = {}
    ready_event = threading.Event()

    def demo(path: Path, current: object, *, endpoint: str, ca_file: Path) -> None:
        ready.update(endpoint=endpoint, ca_file=str(ca_file))
        ready_event.set()

    current = SimpleNamespace(
        database=SimpleNamespace(migrate=lambda: None), registry=SimpleNamespace(list_workspaces=lambda: [])
    )
    monkeypatch.setattr(host, "discover", lambda root, environ: functions)
    monkeypatch.setattr(
        host,
        "start_azurite",
        lambda settings, state_dir: SimpleNamespace(stop=lambda: order.append("azurite")),
    )
    monkeypatch.setattr(host, "services", lambda: current)
    monkeypatch.setattr(host, "reset_services", lambda: order.append("services reset"))
    monkeypatch.setattr(host, "blob_service", lambda storage: None)
    monkeypatch.setattr(host, "StorageBlobSource", lambda service: NoBlobs())
    monkeypatch.setattr(host, "write_demo_workspace", demo)
    _recording_stop(monkeypatch, FunctionHttpServer, order, "http")
    _recording_stop(monkeypatch, TimerScheduler, order, "timers")
    _recording_stop(monkeypatch, BlobCreatedDispatcher, order, "events")
    stopping = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            host.serve(
                SimpleNamespace(storage=None),  # type: ignore[arg-type]
                state_dir=tmp_path / "state",
                port=0,
                azurite=True,
                stopping=stopping,
            )
        except BaseException as error:
            failures.append(error)

    serving = threading.Thread(target=run, daemon=True)
    serving.start()
    assert ready_event.wait(TIMEOUT_SECONDS), failures
    port = int(ready["endpoint"].rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection(
        "127.0.0.1",
        port,
        context=ssl.create_default_context(cafile=ready["ca_file"]),
        timeout=TIMEOUT_SECONDS,
    )
    answer: dict[str, Any] = {}

    def request() -> None:
        connection.request("GET", f"/{route_prefix(REPO_ROOT / 'host.json')}/slow")
        response = connection.getresponse()
        answer.update(status=response.status, body=response.read())

    client = threading.Thread(target=request, daemon=True)
    client.start()
    try:
        assert entered.wait(TIMEOUT_SECONDS)
        stopping.set()
        serving.join(0.5)
        stopped_while_in_flight = list(order)
        release.set()
        serving.join(TIMEOUT_SECONDS)
        client.join(TIMEOUT_SECONDS)
    finally:
        release.set()
        stopping.set()
        connection.close()

    assert not failures
    assert stopped_while_in_flight == []
    assert answer == {"status": 200, "body": b"finished"}
    assert order == ["request finished", "http", "timers", "events", "services reset", "azurite"]


def test_given_a_world_readable_temporary_file_left_behind_then_the_demo_file_is_still_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "demo-workspace.json"
    path.write_text(json.dumps({"workspace_id": "w-1"}), encoding="utf-8")
    leftover = tmp_path / "demo-workspace.json.tmp"
    leftover.write_text("left by a crashed run", encoding="utf-8")
    os.chmod(leftover, 0o666)  # noqa: S103 - the permissive leftover is the point
    current = SimpleNamespace(
        registry=SimpleNamespace(get_workspace=lambda workspace_id: object()),
        secrets=SimpleNamespace(get_secret=lambda name: "the-primary-key"),
    )

    write_demo_workspace(
        path,
        current,  # type: ignore[arg-type]
        endpoint="https://127.0.0.1:1",
        ca_file=tmp_path / "ca.pem",
    )

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text(encoding="utf-8"))["primary_key"] == "the-primary-key"
