"""`python -m devhost` end to end: HTTPS ingest, BlobCreated processing, restart, clean stop."""

from __future__ import annotations

import pytest

from devhost.azurite import is_listening
from shared.workspaces import new_shared_key
from tests.e2e.conftest import HostSetup
from tests.e2e.support import eventually, total_records

pytestmark = pytest.mark.e2e

PROCESSED_TIMEOUT_SECONDS = 10.0


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


def test_given_a_wrong_key_when_posting_then_403_invalid_authorization(local_host: HostSetup) -> None:
    host = local_host.start()

    response = host.post_logs([{"Message": "x"}], log_type="AppEvents", key=new_shared_key())

    assert response.status == 403
    assert response.json()["Error"] == "InvalidAuthorization"
    assert "Message" in response.json()


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
