"""Azure Diagnostics sources against Azurite: the customer's WAD tables (the session's Azurite account
stands for the customer's storage account) are filled with entities shaped as the diagnostics extension
writes them, registered with `sluice diag add-source`, read by the diag_reader function and processed
by process_blob into the aggregates. Azurite enforces SAS permissions, so a read-only SAS proves the
reader only reads."""

from __future__ import annotations

import argparse
import gzip
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.data.tables import (
    AccountSasPermissions,
    EdmType,
    EntityProperty,
    ResourceTypes,
    TableClient,
    TableSasPermissions,
    TableServiceClient,
    generate_account_sas,
    generate_table_sas,
)

import diag_reader
import process_blob
from shared.aggregate import EventRow, PerfRow, SyslogRow, UsageRow
from shared.azure_diagnostics import (
    SOURCES_TABLE,
    diagnostics_reader,
    source_registry,
)
from shared.cli import diag
from shared.diagnostics import DiagnosticsReader, DiagnosticsTable, TableReport, partition_key_at
from shared.errors import BadRequest, NotFound
from shared.runtime import services
from shared.settings import AZURITE_ACCOUNT, AZURITE_KEY
from tests.support.datacollector import blob_created_event, timer_request
from tests.support.runtime import Runtime

pytestmark = pytest.mark.integration

PERF = DiagnosticsTable.PERF
EVENT = DiagnosticsTable.EVENT
SYSLOG = DiagnosticsTable.SYSLOG
CPU = r"\Processor(_Total)\% Processor Time"
MEMORY = r"\Memory\Available MBytes"


@pytest.fixture
def customer(azurite_connection_string: str) -> Iterator[TableServiceClient]:
    """The customer's storage account with empty diagnostics tables. Every test starts without
    diagnostics sources, so a run reads only the sources its own test registered."""
    service = TableServiceClient.from_connection_string(azurite_connection_string)
    names = [*DiagnosticsTable, SOURCES_TABLE]
    for name in names:
        service.delete_table(name)
    for table in DiagnosticsTable:
        service.create_table(table)
    try:
        yield service
    finally:
        for name in names:
            service.delete_table(name)


def table_endpoint(service: TableServiceClient) -> str:
    return service.url.rstrip("/")


def account_key() -> AzureNamedKeyCredential:
    return AzureNamedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)


def read_only_account_sas() -> str:
    # Azurite asks for the container resource type on entity queries; read and list are all it grants.
    return generate_account_sas(
        account_key(),
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def sluice_diag(*argv: str) -> Any:
    """`sluice diag ...` through the command group's own parser; SluiceErrors propagate."""
    parser = argparse.ArgumentParser(prog="sluice")
    diag.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["diag", *argv])
    return args.run(args)


def add_source(runtime: Runtime, service: TableServiceClient, *options: str) -> str:
    """Registers the customer's account as a source of the runtime's workspace; returns its id."""
    sluice_diag(
        "add-source",
        "--workspace",
        runtime.workspace_id,
        "--table-endpoint",
        table_endpoint(service),
        *options,
    )
    return str(source_registry(services()).list_sources(runtime.workspace_id)[-1].source_id)


def hour_ago() -> datetime:
    """An hour whose every minute is past the settle delay and within TimeGenerated's 2 days."""
    return (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)


def perf(minute: datetime, instance: str, counter: str, value: float, *, row: int = 0) -> dict[str, Any]:
    ticks = EntityProperty(int(partition_key_at(minute)), EdmType.INT64)
    return {
        "PartitionKey": partition_key_at(minute),
        "RowKey": f"a1b2c3___WebRole___{instance}___{counter.replace(chr(92), ':')}___{row:04d}",
        "EventTickCount": ticks,
        "DeploymentId": "a1b2c3",
        "Role": "WebRole",
        "RoleInstance": instance,
        "CounterName": counter,
        "CounterValue": value,
    }


def event(minute: datetime, instance: str, event_id: int, level: int, *, row: int) -> dict[str, Any]:
    return {
        "PartitionKey": partition_key_at(minute),
        "RowKey": f"a1b2c3___WebRole___{instance}___{row:019d}",
        "EventTickCount": EntityProperty(int(partition_key_at(minute)) + row, EdmType.INT64),
        "DeploymentId": "a1b2c3",
        "Role": "WebRole",
        "RoleInstance": instance,
        "ProviderGuid": "{555908d1-a6d7-4695-8e1e-26931d2012f4}",
        "ProviderName": "Service Control Manager",
        "EventId": event_id,
        "Level": level,
        "Pid": 640,
        "Tid": 4180,
        "Channel": "System",
        "RawXml": f"<Event><System><EventID>{event_id}</EventID></System></Event>",
        "Description": f"Event {event_id}",
    }


def syslog(minute: datetime, host: str, facility: str, severity: int, *, row: int) -> dict[str, Any]:
    moment = minute + timedelta(seconds=row)
    return {
        "PartitionKey": partition_key_at(minute),
        "RowKey": f"{row:019d}",
        "DeploymentId": "d4e5f6",
        "Host": host,
        "Facility": facility,
        "Severity": severity,
        "EventTime": moment.isoformat(),
        "SendingHost": "127.0.0.1",
        "Msg": f"message {row}",
        "Ignore": "syslog",
        "PreciseTimeStamp": moment,
        "TIMESTAMP": minute,
    }


def fill(service: TableServiceClient, table: DiagnosticsTable, *entities: dict[str, Any]) -> None:
    client = service.get_table_client(table)
    for entity in entities:
        client.create_entity(entity)


def stored_entities(service: TableServiceClient, table: DiagnosticsTable) -> list[tuple[str, str, str]]:
    entities = service.get_table_client(table).list_entities()
    return [(e["PartitionKey"], e["RowKey"], str(e.metadata["etag"])) for e in entities]


def process_new_blobs(runtime: Runtime, processed: set[str]) -> list[str]:
    """Delivers BlobCreated for every raw blob not delivered yet, as Event Grid would."""
    new = [name for name in runtime.blobs() if name not in processed]
    for name in new:
        process_blob.main(blob_created_event(f"ws-{runtime.workspace_id}", name))
    processed.update(new)
    return new


def blob_records(runtime: Runtime) -> list[tuple[str, dict[str, Any]]]:
    """(log type, record) of every record in the workspace's raw blobs, read with the SDK directly."""
    container = runtime.blob_service.get_container_client(f"ws-{runtime.workspace_id}")
    records: list[tuple[str, dict[str, Any]]] = []
    for name in runtime.blobs():
        stored = container.download_blob(name, decompress=False).readall()
        records.extend((name.split("/")[5], record) for record in orjson.loads(gzip.decompress(stored)))
    return records


def blob_metadata(runtime: Runtime) -> list[dict[str, str]]:
    container = runtime.blob_service.get_container_client(f"ws-{runtime.workspace_id}")
    return [dict(container.get_blob_client(name).get_blob_properties().metadata) for name in runtime.blobs()]


def counter_values(runtime: Runtime) -> list[float]:
    return sorted(record["CounterValue"] for _, record in blob_records(runtime))


def diagnostics_run() -> list[TableReport]:
    """What diag_reader's main does, with its reports."""
    return diagnostics_reader(services()).run()


# -- read, processed, aggregated -----------------------------------------------------------------------


def test_given_wad_tables_and_a_read_only_source_when_read_and_processed_then_the_aggregates_match(
    runtime: Runtime, customer: TableServiceClient
) -> None:
    hour = hour_ago()
    at = [hour + timedelta(minutes=m) for m in range(5, 9)]
    fill(
        customer,
        PERF,
        perf(at[0], "WebRole_IN_0", CPU, 10.0),
        perf(at[1], "WebRole_IN_0", CPU, 30.0),
        perf(at[2], "WebRole_IN_0", CPU, 20.0),
        perf(at[0], "WebRole_IN_1", CPU, 50.0),
        perf(at[1], "WebRole_IN_1", CPU, 70.0),
        perf(at[0], "WebRole_IN_0", MEMORY, 2048.0),
        perf(at[3], "WebRole_IN_0", MEMORY, 1024.0),
    )
    fill(
        customer,
        EVENT,
        event(at[0], "WebRole_IN_0", 7036, 4, row=1),
        event(at[0], "WebRole_IN_0", 7036, 4, row=2),
        event(at[1], "WebRole_IN_0", 1000, 2, row=1),
        event(at[2], "WebRole_IN_1", 7036, 4, row=1),
    )
    fill(
        customer,
        SYSLOG,
        syslog(at[0], "linux-1", "authpriv", 3, row=1),
        syslog(at[0], "linux-1", "authpriv", 3, row=2),
        syslog(at[1], "linux-1", "daemon", 6, row=1),
    )
    source_id = add_source(runtime, customer, "--sas", read_only_account_sas())

    diag_reader.main(timer_request())
    names = process_new_blobs(runtime, set())

    database = runtime.services.database
    ws = runtime.workspace_id
    assert sorted(name.split("/")[5] for name in names) == ["Event", "Perf", "Syslog"]
    assert database.list_perf(ws) == [
        PerfRow(hour, "WebRole_IN_0", "Memory", "Available MBytes", "", 2, 3072.0, 1024.0, 2048.0),
        PerfRow(hour, "WebRole_IN_0", "Processor", "% Processor Time", "_Total", 3, 60.0, 10.0, 30.0),
        PerfRow(hour, "WebRole_IN_1", "Processor", "% Processor Time", "_Total", 2, 120.0, 50.0, 70.0),
    ]
    assert database.list_events(ws) == [
        EventRow(hour, "Event", "WebRole_IN_0", 1000, "Error", 1),
        EventRow(hour, "Event", "WebRole_IN_0", 7036, "Information", 2),
        EventRow(hour, "Event", "WebRole_IN_1", 7036, "Information", 1),
    ]
    assert database.list_syslog(ws) == [
        SyslogRow(hour, "linux-1", "authpriv", "err", 2),
        SyslogRow(hour, "linux-1", "daemon", "info", 1),
    ]
    stored = blob_records(runtime)
    sizes: dict[tuple[str, str], int] = {}  # each record's bytes as stored, which volume counts
    for log_type, record in stored:
        key = (log_type, record["Computer"])
        sizes[key] = sizes.get(key, 0) + len(orjson.dumps(record))
    counts = {("Event", "WebRole_IN_0"): 3, ("Event", "WebRole_IN_1"): 1, ("Perf", "WebRole_IN_0"): 5}
    counts |= {("Perf", "WebRole_IN_1"): 2, ("Syslog", "linux-1"): 3}
    assert database.list_usage(ws) == [
        UsageRow(hour, log_type, computer, n, sizes[(log_type, computer)])
        for (log_type, computer), n in sorted(counts.items())
    ]
    assert all(record["TimeGenerated"].startswith(hour.strftime("%Y-%m-%dT%H:")) for _, record in stored)
    assert {r["diagnostics_source"] for r in blob_metadata(runtime)} == {source_id}


# -- the checkpoint ------------------------------------------------------------------------------------


def test_given_runs_before_and_after_new_entities_when_read_in_small_batches_then_every_entity_is_read_once(
    sqlite_runtime: Runtime, customer: TableServiceClient
) -> None:
    runtime = sqlite_runtime
    hour = hour_ago()
    first, second, third = (hour + timedelta(minutes=m) for m in (10, 11, 12))
    fill(customer, PERF, *(perf(first, "WebRole_IN_0", CPU, float(v), row=v) for v in range(1, 6)))
    add_source(runtime, customer, "--sas", read_only_account_sas(), "--tables", PERF)
    processed: set[str] = set()

    [report] = diagnostics_reader(services(), max_records=2).run()
    after_first = process_new_blobs(runtime, processed)
    [idle] = diagnostics_reader(services(), max_records=2).run()
    after_second = process_new_blobs(runtime, processed)
    # Late rows of the partition read last (sorting after the position) and a new partition.
    fill(customer, PERF, *(perf(first, "WebRole_IN_0", CPU, float(v), row=v) for v in range(6, 8)))
    fill(customer, PERF, *(perf(second, "WebRole_IN_1", CPU, float(v), row=v) for v in range(8, 11)))
    diag_reader.main(timer_request())
    after_third = process_new_blobs(runtime, processed)
    fill(customer, PERF, perf(third, "WebRole_IN_1", CPU, 11.0, row=11))
    diagnostics_reader(services(), max_records=2).run()
    process_new_blobs(runtime, processed)

    assert (report.records, report.blobs, len(after_first)) == (5, 3, 3)
    assert (idle.records, idle.blobs, after_second) == (0, 0, [])
    assert len(after_third) == 1  # one batch of the default size
    assert counter_values(runtime) == [float(v) for v in range(1, 12)]
    assert runtime.services.database.list_perf(runtime.workspace_id) == [
        PerfRow(hour, "WebRole_IN_0", "Processor", "% Processor Time", "_Total", 7, 28.0, 1.0, 7.0),
        PerfRow(hour, "WebRole_IN_1", "Processor", "% Processor Time", "_Total", 4, 38.0, 8.0, 11.0),
    ]


def test_given_two_overlapping_runs_then_each_entity_is_written_once(
    sqlite_runtime: Runtime, customer: TableServiceClient
) -> None:
    runtime = sqlite_runtime
    minute = hour_ago() + timedelta(minutes=20)
    fill(customer, PERF, *(perf(minute, "WebRole_IN_0", CPU, float(v), row=v) for v in range(40)))
    add_source(runtime, customer, "--sas", read_only_account_sas(), "--tables", PERF)
    readers = [diagnostics_reader(services(), max_records=3) for _ in range(2)]
    start = threading.Barrier(len(readers))
    reports: list[TableReport] = []

    def run(reader: DiagnosticsReader) -> None:
        start.wait()
        reports.extend(reader.run())

    threads = [threading.Thread(target=run, args=(reader,)) for reader in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counter_values(runtime) == [float(v) for v in range(40)]
    assert sum(r.records for r in reports) == 40
    assert sorted(r.skipped for r in reports) in ([False, False], [False, True])


def test_given_the_daily_cap_is_reached_when_the_reader_runs_then_the_table_waits_without_failing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, customer: TableServiceClient
) -> None:
    # A 1-byte cap on the runtime workspace's plan, set before the services are built: the first blob
    # is taken (the day's count is still below the cap), the second is refused.
    monkeypatch.setenv("SLUICE_PLANS", json.dumps({"standard": {"daily_cap_bytes": 1}}))
    runtime: Runtime = request.getfixturevalue("sqlite_runtime")
    minute = hour_ago() + timedelta(minutes=25)
    fill(customer, PERF, *(perf(minute, "WebRole_IN_0", CPU, float(v), row=v) for v in range(4)))
    source_id = add_source(runtime, customer, "--sas", read_only_account_sas(), "--tables", PERF)

    [capped] = diagnostics_reader(services(), max_records=2).run()
    [again] = diagnostics_reader(services(), max_records=2).run()

    checkpoint = source_registry(services()).get_checkpoint(source_id, PERF)
    assert (capped.records, capped.blobs, counter_values(runtime)) == (2, 1, [0.0, 1.0])
    assert (checkpoint.position, checkpoint.leased_until) == (capped.position, None)
    assert (again.skipped, again.records, again.position) == (False, 0, capped.position)


# -- read only -----------------------------------------------------------------------------------------


def test_given_a_sas_that_can_write_when_adding_the_source_then_it_is_refused_and_nothing_is_kept(
    sqlite_runtime: Runtime, customer: TableServiceClient
) -> None:
    writable = generate_account_sas(
        account_key(),
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, delete=True, list=True, add=True, update=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )

    with pytest.raises(BadRequest) as refused:
        add_source(sqlite_runtime, customer, "--sas", writable)

    message = refused.value.message
    assert "The SAS grants add (a), delete (d), update (u), write (w)" in message
    assert "must never be able to change them" in message and "(sp=rl)" in message
    assert source_registry(services()).list_sources() == []
    assert not any(sqlite_runtime.secrets_dir.glob("diag-*"))


@pytest.mark.parametrize("kind", ["account", "table"])
def test_given_a_read_only_sas_azurite_enforces_when_the_reader_runs_then_it_reads_and_that_sas_cannot_write(
    sqlite_runtime: Runtime, customer: TableServiceClient, kind: str
) -> None:
    minute = hour_ago() + timedelta(minutes=30)
    fill(customer, PERF, *(perf(minute, "WebRole_IN_0", CPU, float(v), row=v) for v in range(3)))
    if kind == "account":
        sas = read_only_account_sas()
    else:
        sas = generate_table_sas(
            account_key(),
            PERF,
            permission=TableSasPermissions(read=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
    add_source(sqlite_runtime, customer, "--sas", sas, "--tables", PERF)
    before = stored_entities(customer, PERF)

    [report] = diagnostics_run()

    assert (report.records, report.blobs) == (3, 1)
    assert stored_entities(customer, PERF) == before  # not one entity touched
    with_same_sas = TableClient(table_endpoint(customer), PERF, credential=AzureSasCredential(sas))
    for write in (
        lambda: with_same_sas.create_entity({"PartitionKey": "0", "RowKey": "planted"}),
        lambda: with_same_sas.upsert_entity({"PartitionKey": before[0][0], "RowKey": before[0][1]}),
        lambda: with_same_sas.delete_entity(before[0][0], before[0][1]),
    ):
        with pytest.raises(HttpResponseError) as refused:
            write()
        assert refused.value.status_code == 403
    assert stored_entities(customer, PERF) == before


def test_given_a_key_in_the_secret_store_when_the_source_names_it_then_the_reader_reads_with_it(
    sqlite_runtime: Runtime, customer: TableServiceClient
) -> None:
    fill(customer, SYSLOG, syslog(hour_ago() + timedelta(minutes=40), "linux-1", "user", 5, row=1))
    services().secrets.set_secret("contoso-diag-key", AZURITE_KEY)

    add_source(sqlite_runtime, customer, "--key-secret", "contoso-diag-key", "--tables", "linuxsyslogver2v0")
    [report] = diagnostics_run()

    assert (report.table, report.records) == (SYSLOG, 1)
    assert services().secrets.get_secret("contoso-diag-key") == AZURITE_KEY


# -- the commands --------------------------------------------------------------------------------------


def test_given_sources_when_listing_and_removing_then_the_sas_goes_with_the_source_and_both_are_audited(
    sqlite_runtime: Runtime, customer: TableServiceClient, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = sqlite_runtime
    other = runtime.new_workspace().workspace.workspace_id
    sas = read_only_account_sas()
    source_id = add_source(runtime, customer, "--sas", sas)
    sluice_diag(
        "add-source", "--workspace", other, "--table-endpoint", table_endpoint(customer), "--sas", sas
    )
    secret_name = f"diag-{source_id}-sas"
    capsys.readouterr()

    sluice_diag("list-sources", "--workspace", runtime.workspace_id, "--json")
    [listed] = json.loads(capsys.readouterr().out)
    sluice_diag("remove-source", "--workspace", runtime.workspace_id, source_id)

    assert listed["source_id"] == source_id
    assert (listed["tables"], listed["access"], listed["secret"]) == (
        "WADPerformanceCountersTable,WADWindowsEventLogsTable,LinuxSyslogVer2v0",
        "sas",
        secret_name,
    )
    assert sas not in json.dumps(listed)
    assert source_registry(services()).list_sources(runtime.workspace_id) == []
    assert [s.workspace_id for s in source_registry(services()).list_sources()] == [other]
    with pytest.raises(NotFound):
        services().secrets.get_secret(secret_name)
    with pytest.raises(NotFound):
        sluice_diag("remove-source", "--workspace", runtime.workspace_id, source_id)
    entries = services().audit.read(runtime.workspace_id).entries
    diag_entries = [(e.action, e.details) for e in entries if e.action.startswith("diag.")]
    assert [action for action, _ in diag_entries] == ["diag.add_source", "diag.remove_source"]
    assert diag_entries[0][1]["source_id"] == source_id and diag_entries[0][1]["access"] == "sas"
    assert sas not in json.dumps([details for _, details in diag_entries])
