"""The four aggregate tables on real engines (SQLite file, PostgreSQL through psqlODBC): each upsert
against totals computed by hand, blobs merging, the ledger making redelivery harmless, one transaction
per blob, and concurrent processors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import shared.sql as sql_module
from shared.aggregate import Aggregates, EventRow, PerfRow, SyslogRow, UsageRow
from shared.processing import LedgerEntry
from shared.settings import SqlDialect
from shared.sql import Database
from tests.support.aggregates import sorted_aggregates
from tests.support.concurrency import run_together
from tests.support.postgres import PostgresDatabase
from tests.support.runtime import SqlTarget

pytestmark = pytest.mark.integration

HOUR = datetime(2024, 5, 1, 13, tzinfo=UTC)
NEXT_HOUR = datetime(2024, 5, 1, 14, tzinfo=UTC)
RACE_ROUNDS = 5
REDELIVERIES = 10
CPU = ("Processor", "% Processor Time", "_Total")
MEMORY = ("Memory", "Available MBytes", "")


def ws() -> str:
    return str(uuid.uuid4())


def entry(workspace_id: str, *, records: int = 10) -> LedgerEntry:
    return LedgerEntry(
        workspace_id=workspace_id,
        blob_name=f"raw/2024/05/01/13/Perf/{uuid.uuid4().hex}.json.gz",
        etag='"0x8DC0000000000"',
        sha256="cd" * 32,
        record_count=records,
    )


def perf(
    samples: int,
    total: float,
    low: float,
    high: float,
    *,
    counter: tuple[str, str, str] = CPU,
    computer: str = "web-1",
    hour: datetime = HOUR,
) -> PerfRow:
    return PerfRow(hour, computer, *counter, samples=samples, total=total, minimum=low, maximum=high)


def event(
    count: int, *, event_id: int = 4624, level: str = "Information", computer: str = "dc-1",
    log_type: str = "SecurityEvent", hour: datetime = HOUR,
) -> EventRow:  # fmt: skip
    return EventRow(hour, log_type, computer, event_id, level, count)


def syslog(
    count: int,
    *,
    facility: str = "auth",
    severity: str = "err",
    computer: str = "lx-1",
    hour: datetime = HOUR,
) -> SyslogRow:
    return SyslogRow(hour, computer, facility, severity, count)


def usage(records: int, size: int, *, log_type: str = "Perf", computer: str = "web-1") -> UsageRow:
    return UsageRow(HOUR, log_type, computer, records, size)


def everything(scale: int = 1) -> Aggregates:
    """One blob touching every table."""
    return Aggregates(
        usage=[usage(4 * scale, 400 * scale)],
        perf=[
            perf(3 * scale, 60.5 * scale, 10.25, 30.0),
            perf(1 * scale, 512.0 * scale, 512.0, 512.0, counter=MEMORY),
        ],
        events=[event(2 * scale), event(1 * scale, event_id=4625, level="Warning")],
        syslog=[syslog(5 * scale), syslog(1 * scale, severity="info")],
    )


def listed(db: Database, workspace_id: str) -> Aggregates:
    return Aggregates(
        usage=db.list_usage(workspace_id),
        perf=db.list_perf(workspace_id),
        events=db.list_events(workspace_id),
        syslog=db.list_syslog(workspace_id),
    )


@pytest.fixture
def database(sql_target: SqlTarget) -> Iterator[Database]:
    db = Database.open(sql_target.dialect, sql_target.connection)
    db.migrate()
    yield db
    db.close()


# -- each table against hand-computed totals -------------------------------------------------------


def test_given_two_blobs_with_the_same_counter_when_applied_then_count_sum_min_max_merge(
    database: Database,
) -> None:
    workspace = ws()
    first = [perf(3, 60.5, 10.25, 30.0), perf(1, 512.0, 512.0, 512.0, counter=MEMORY)]
    # Same CPU key: a lower minimum, a maximum below the stored one. Memory: a higher maximum only.
    second = [perf(2, 15.5, 5.5, 10.0), perf(2, 1536.0, 512.0, 1024.0, counter=MEMORY)]

    assert database.apply_blob(entry(workspace), Aggregates(perf=first))
    assert database.apply_blob(entry(workspace), Aggregates(perf=second))

    assert database.list_perf(workspace) == [
        perf(3, 2048.0, 512.0, 1024.0, counter=MEMORY),  # samples 1+2, total 512+1536, min 512, max 1024
        perf(5, 76.0, 5.5, 30.0),  # samples 3+2, total 60.5+15.5, min(10.25, 5.5), max(30, 10)
    ]


def test_given_negative_and_fractional_values_when_merged_then_extremes_are_kept_exactly(
    database: Database,
) -> None:
    workspace = ws()

    database.apply_blob(entry(workspace), Aggregates(perf=[perf(2, -1.5, -3.25, 1.75)]))
    database.apply_blob(entry(workspace), Aggregates(perf=[perf(1, 0.125, 0.125, 0.125)]))
    database.apply_blob(entry(workspace), Aggregates(perf=[perf(4, 400.0, -7.0, 250.0)]))

    assert database.list_perf(workspace) == [perf(7, 398.625, -7.0, 250.0)]


def test_given_counters_in_two_hours_and_computers_when_listed_then_each_key_is_separate_and_ordered(
    database: Database,
) -> None:
    workspace = ws()
    rows = [
        perf(1, 2.0, 2.0, 2.0, hour=NEXT_HOUR),
        perf(1, 1.0, 1.0, 1.0, computer="web-2"),
        perf(1, 3.0, 3.0, 3.0),
        perf(1, 4.0, 4.0, 4.0, counter=("Processor", "% Processor Time", "0")),
    ]

    database.apply_blob(entry(workspace), Aggregates(perf=rows))

    assert database.list_perf(workspace) == [
        perf(1, 4.0, 4.0, 4.0, counter=("Processor", "% Processor Time", "0")),  # "0" < "_Total"
        perf(1, 3.0, 3.0, 3.0),
        perf(1, 1.0, 1.0, 1.0, computer="web-2"),
        perf(1, 2.0, 2.0, 2.0, hour=NEXT_HOUR),
    ]


def test_given_two_blobs_of_events_when_applied_then_counts_add_per_event_id_level_and_log_type(
    database: Database,
) -> None:
    workspace = ws()
    first = [event(2), event(1, event_id=4625, level="Warning"), event(7, log_type="Event", event_id=7036)]
    second = [event(3), event(4, event_id=4625, level="Error"), event(1, log_type="Event", event_id=7036)]

    assert database.apply_blob(entry(workspace), Aggregates(events=first))
    assert database.apply_blob(entry(workspace), Aggregates(events=second))

    assert database.list_events(workspace) == [
        event(8, log_type="Event", event_id=7036),  # 7 + 1
        event(5),  # 2 + 3
        event(4, event_id=4625, level="Error"),
        event(1, event_id=4625, level="Warning"),
    ]


def test_given_negative_and_large_event_ids_when_stored_then_they_come_back_as_ints(
    database: Database,
) -> None:
    workspace = ws()
    rows = [event(1, event_id=-(2**31)), event(1, event_id=2**31 - 1), event(1, event_id=0, level="")]

    database.apply_blob(entry(workspace), Aggregates(events=rows))

    assert database.list_events(workspace) == sorted(rows, key=lambda r: (r.event_id, r.level))


def test_given_two_blobs_of_syslog_when_applied_then_counts_add_per_facility_and_severity(
    database: Database,
) -> None:
    workspace = ws()
    first = [syslog(5), syslog(1, severity="info"), syslog(2, facility="kern", computer="lx-2")]
    second = [syslog(3), syslog(6, facility="daemon"), syslog(2, facility="kern", computer="lx-2")]

    assert database.apply_blob(entry(workspace), Aggregates(syslog=first))
    assert database.apply_blob(entry(workspace), Aggregates(syslog=second))

    assert database.list_syslog(workspace) == [
        syslog(8),  # 5 + 3
        syslog(1, severity="info"),
        syslog(6, facility="daemon"),
        syslog(4, facility="kern", computer="lx-2"),  # 2 + 2
    ]


def test_given_a_key_twice_in_one_blob_when_applied_then_the_rows_are_merged_not_refused(
    database: Database,
) -> None:
    """The aggregator never sends a key twice, but the statements group their source anyway:
    PostgreSQL's ON CONFLICT refuses to touch a row twice in one statement."""
    workspace = ws()
    doubled = Aggregates(
        usage=[usage(1, 10), usage(2, 20)],
        perf=[perf(1, 4.0, 4.0, 4.0), perf(2, 3.0, 1.0, 2.0)],
        events=[event(1), event(2)],
        syslog=[syslog(1), syslog(2)],
    )

    assert database.apply_blob(entry(workspace), doubled)

    assert listed(database, workspace) == Aggregates(
        usage=[usage(3, 30)], perf=[perf(3, 7.0, 1.0, 4.0)], events=[event(3)], syslog=[syslog(3)]
    )


def test_given_names_differing_only_in_case_when_applied_then_they_are_separate_keys(
    database: Database,
) -> None:
    workspace = ws()
    rows = Aggregates(
        perf=[perf(1, 1.0, 1.0, 1.0, computer="WEB-1"), perf(1, 2.0, 2.0, 2.0, computer="web-1")],
        syslog=[syslog(1, severity="ERR"), syslog(1, severity="err")],
    )

    database.apply_blob(entry(workspace), rows)

    assert listed(database, workspace) == rows


def test_given_unicode_and_long_names_when_stored_then_they_come_back_unchanged(database: Database) -> None:
    workspace = ws()
    long_name = "Ω" * 256
    rows = Aggregates(
        perf=[perf(1, 1.0, 1.0, 1.0, computer="сервер-1", counter=("Objet é", "Zähler", long_name))],
        events=[event(1, level="情報")],
        syslog=[syslog(1, facility="local7", computer=long_name)],
    )

    database.apply_blob(entry(workspace), rows)

    assert listed(database, workspace) == rows


# -- one transaction per blob ------------------------------------------------------------------------


def test_given_a_blob_with_every_aggregate_when_applied_then_each_table_holds_its_rows(
    database: Database,
) -> None:
    workspace, other = ws(), ws()

    assert database.apply_blob(entry(workspace), everything())
    assert database.apply_blob(entry(other), everything(scale=2))

    assert listed(database, workspace) == sorted_aggregates(everything())
    assert listed(database, other) == sorted_aggregates(everything(scale=2))


def test_given_the_same_ledger_entry_applied_ten_times_then_totals_are_those_of_one_application(
    database: Database,
) -> None:
    workspace = ws()
    ledger = entry(workspace)

    outcomes = [database.apply_blob(ledger, everything()) for _ in range(REDELIVERIES)]

    assert outcomes == [True] + [False] * (REDELIVERIES - 1)
    assert listed(database, workspace) == sorted_aggregates(everything())
    assert database.blob_processed(workspace, ledger.blob_name)


class RecordingConnection:
    """Wraps a DB-API connection and records the statements each transaction ran, and its commits."""

    def __init__(self, connection: Any, log: list[str]) -> None:
        self._connection = connection
        self._log = log

    def cursor(self) -> Any:
        log, cursor = self._log, self._connection.cursor()

        class Cursor:
            def execute(self, sql: str, *params: Any) -> Any:
                log.append(sql)
                return cursor.execute(sql, *params)

            def __getattr__(self, name: str) -> Any:
                return getattr(cursor, name)

        return Cursor()

    def commit(self) -> None:
        self._log.append("COMMIT")
        self._connection.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@pytest.mark.parametrize(
    ("aggregates", "upserts"),
    [
        (Aggregates(perf=[perf(1, 1.0, 1.0, 1.0)]), ["upsert_perf"]),
        (Aggregates(usage=[usage(1, 1)], syslog=[syslog(1)]), ["upsert_usage", "upsert_syslog"]),
        (everything(), ["upsert_usage", "upsert_perf", "upsert_events", "upsert_syslog"]),
        (Aggregates(), []),
    ],
    ids=["perf-only", "usage-and-syslog", "all-four", "none"],
)
def test_given_a_blob_when_applied_then_one_transaction_runs_the_claim_and_only_the_non_empty_upserts(
    sql_target: SqlTarget, aggregates: Aggregates, upserts: list[str]
) -> None:
    Database.open(sql_target.dialect, sql_target.connection).migrate()
    connect = Database.open(sql_target.dialect, sql_target.connection)._connect
    log: list[str] = []
    db = Database(sql_target.dialect, lambda: RecordingConnection(connect(), log))
    texts = {
        sql_module.statement(sql_target.dialect, name).text: name
        for name in ["claim_blob", "upsert_usage", "upsert_perf", "upsert_events", "upsert_syslog"]
    }
    try:
        assert db.apply_blob(entry(ws()), aggregates)
    finally:
        db.close()

    ran = [texts.get(sql, sql) for sql in log if sql != "BEGIN IMMEDIATE"]
    assert ran == ["claim_blob", *upserts, "COMMIT"]


def test_given_the_last_upsert_fails_when_applying_then_no_table_and_no_ledger_row_keeps_anything(
    database: Database,
) -> None:
    workspace = ws()
    ledger = entry(workspace)
    broken = everything()
    # severity is NOT NULL everywhere: usage, perf and events are written, then syslog fails.
    broken.syslog.append(SyslogRow(HOUR, "lx-1", "auth", None, 1))  # type: ignore[arg-type]

    with pytest.raises(Exception):  # noqa: B017 - each driver raises its own IntegrityError
        database.apply_blob(ledger, broken)

    assert not database.blob_processed(workspace, ledger.blob_name)
    assert listed(database, workspace) == Aggregates()
    assert database.apply_blob(ledger, everything())
    assert listed(database, workspace) == sorted_aggregates(everything())


def test_given_every_migration_when_run_again_by_hand_then_it_is_idempotent(sql_target: SqlTarget) -> None:
    """Each migration is recorded and applied once, but its statements are written to be re-runnable
    (a migration interrupted outside a transaction, or run by hand, does no harm)."""
    db = Database.open(sql_target.dialect, sql_target.connection)
    try:
        db.migrate()
        workspace = ws()
        db.apply_blob(entry(workspace), everything())
        with db._transaction() as cursor:
            for migration in sql_module.migrations(sql_target.dialect):
                for batch in migration.batches:
                    cursor.execute(batch)
        assert listed(db, workspace) == sorted_aggregates(everything())
    finally:
        db.close()


# -- concurrency: two processors, two connections -----------------------------------------------------


def test_given_the_same_blob_applied_by_two_processors_at_once_then_every_table_counts_it_once(
    sql_target: SqlTarget,
) -> None:
    databases = [Database.open(sql_target.dialect, sql_target.connection) for _ in range(2)]
    try:
        databases[0].migrate()
        workspace = ws()
        for _ in range(RACE_ROUNDS):
            ledger = entry(workspace)
            outcomes = run_together(2, lambda i, e=ledger: databases[i].apply_blob(e, everything()))  # type: ignore[misc]
            assert sorted(outcomes) == [False, True]
        # RACE_ROUNDS distinct blobs, each counted once: counts and totals scaled, extremes unchanged.
        assert listed(databases[1], workspace) == sorted_aggregates(everything(scale=RACE_ROUNDS))
    finally:
        for db in databases:
            db.close()


def test_given_blobs_sharing_many_keys_applied_at_once_on_postgresql_then_all_add_up_without_deadlock(
    pg_database: PostgresDatabase,
) -> None:
    """Two processors upsert the same 200 keys per table from different blobs, listed in opposite
    orders: the statements insert in key order, so the two never wait on each other in a cycle."""
    keys = 200
    forward = Aggregates(
        usage=[usage(1, 10, computer=f"host-{n:03}") for n in range(keys)],
        perf=[perf(1, float(n), float(n), float(n), computer=f"host-{n:03}") for n in range(keys)],
        events=[event(1, computer=f"host-{n:03}") for n in range(keys)],
        syslog=[syslog(1, computer=f"host-{n:03}") for n in range(keys)],
    )
    backward = Aggregates(
        usage=forward.usage[::-1],
        perf=[perf(1, -float(n), -float(n), -float(n), computer=f"host-{n:03}") for n in range(keys)][::-1],
        events=forward.events[::-1],
        syslog=forward.syslog[::-1],
    )
    databases = [Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string) for _ in range(2)]
    try:
        databases[0].migrate()
        workspace = ws()
        for _ in range(RACE_ROUNDS):
            blobs = [forward, backward]
            outcomes = run_together(2, lambda i, b=blobs: databases[i].apply_blob(entry(workspace), b[i]))  # type: ignore[misc]
            assert outcomes == [True, True]
        result = listed(databases[0], workspace)
        assert [r.records for r in result.usage] == [2 * RACE_ROUNDS] * keys
        assert [(p.samples, p.total, p.minimum, p.maximum) for p in result.perf] == [
            (2 * RACE_ROUNDS, 0.0, -float(n), float(n)) for n in range(keys)
        ]
        assert [e.events for e in result.events] == [2 * RACE_ROUNDS] * keys
        assert [s.messages for s in result.syslog] == [2 * RACE_ROUNDS] * keys
    finally:
        for db in databases:
            db.close()
