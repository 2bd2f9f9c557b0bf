"""The query API's statements (shared/sql/*/query_*.sql) through shared.query on SQLite and on
PostgreSQL through reader sessions of the app's login (dropped to sluice_reader, under row-level
security): keyset
pages of one workspace never hold another's rows, days sum hours, filters hold, and neither a
garbled statement nor a forged workspace value reaches another workspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.aggregate import Aggregates, EventRow, PerfRow, SyslogRow, UsageRow
from shared.limits import NO_COUNT
from shared.processing import LedgerEntry
from shared.query import Aggregate, ContinuationSigner, Queries, Query, parse_query, statement_values
from shared.settings import SqlDialect
from shared.sql import Database, statement
from tests.support.postgres import PostgresCluster, PostgresDatabase
from tests.support.reader_sessions import bind, connect

pytestmark = pytest.mark.integration

DAY = datetime(2024, 5, 1, tzinfo=UTC)
NOW = DAY + timedelta(days=3)
WINDOW = {"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z"}


@dataclass
class Target:
    database: Database  # the processor's, whose reader sessions the queries use (as in a deployment)
    a: str
    b: str

    def queries(self) -> Queries:
        return Queries(
            readers=self.database.reader,
            counters=NoCounters(),
            plans={},
            signer=ContinuationSigner(lambda: b"k"),
            clock=lambda: NOW,
        )


class NoCounters:
    def read(self, workspace_id: str, day: Any) -> Any:
        return NO_COUNT


def blob(workspace_id: str) -> LedgerEntry:
    return LedgerEntry(workspace_id, f"raw/2024/05/01/00/X/{uuid.uuid4().hex}.json.gz", '"e"', "ab" * 32, 1)


def interleaved(computers: list[str], scale: int) -> Aggregates:
    """Rows in two days, three hours each, for the given computers: B's keys fall between A's and
    equal them, so a page boundary that ignored the workspace would pick B's rows up."""
    hours = [DAY + timedelta(days=d, hours=h) for d in (0, 1) for h in (1, 2, 3)]
    return Aggregates(
        usage=[UsageRow(h, "App", c, scale, 10 * scale) for h in hours for c in computers],
        perf=[
            PerfRow(
                h,
                c,
                "Processor",
                "% Processor Time",
                "_Total",
                2,
                10.0 * (i + 1),
                1.0 * (i + 1),
                9.0 * (i + 1),
            )
            for i, h in enumerate(hours)
            for c in computers
        ],
        events=[EventRow(h, "Event", c, 7036, "Error", scale) for h in hours for c in computers],
        syslog=[SyslogRow(h, c, "auth", "err", scale) for h in hours for c in computers],
    )


def fill(owner: Database, a: str, b: str) -> None:
    assert owner.apply_blob(blob(a), interleaved(["web-1", "web-3"], 1))
    assert owner.apply_blob(blob(b), interleaved(["web-0", "web-1", "web-2", "web-4"], 100))


@pytest.fixture(params=[SqlDialect.SQLITE, SqlDialect.POSTGRESQL], ids=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    if request.param is SqlDialect.SQLITE:
        database = Database.open(SqlDialect.SQLITE, str(tmp_path / "sluice.db"))
    else:
        pg: PostgresDatabase = request.getfixturevalue("pg_database")
        database = Database.open(SqlDialect.POSTGRESQL, pg.connection_string)
    try:
        database.migrate()
        fill(database, a, b)
        yield Target(database, a, b)
    finally:
        database.close()


def all_pages(queries: Queries, workspace_id: str, aggregate: Aggregate, params: dict[str, str]) -> list[Any]:
    rows, continuation, pages = [], None, 0
    while True:
        page = queries.page(
            workspace_id, aggregate, {**params, **({"continuation": continuation} if continuation else {})}
        )
        rows.extend(page["rows"])
        pages += 1
        continuation = page["continuation"]
        if continuation is None:
            return rows
        assert pages < 100


@pytest.mark.parametrize("aggregate", list(Aggregate))
@pytest.mark.parametrize("granularity", ["hour", "day"])
def test_given_interleaved_workspaces_when_paging_a_one_row_at_a_time_then_exactly_a_s_rows_in_order(
    target: Target, aggregate: Aggregate, granularity: str
) -> None:
    queries = target.queries()
    params = {**WINDOW, "granularity": granularity}

    one_by_one = all_pages(queries, target.a, aggregate, {**params, "limit": "1"})
    whole = queries.page(target.a, aggregate, {**params, "limit": "1000"})

    assert one_by_one == whole["rows"]
    assert whole["continuation"] is None
    assert {row["computer"] for row in one_by_one} == {"web-1", "web-3"}  # none of B's computers
    assert len(one_by_one) == (12 if granularity == "hour" else 4)
    keys = [tuple(v for k, v in row.items() if k in ("time", "log_type", "computer")) for row in one_by_one]
    assert keys == sorted(keys)


def test_given_hours_when_asked_by_day_then_each_day_sums_its_hours(target: Target) -> None:
    queries = target.queries()

    usage = queries.page(target.a, Aggregate.USAGE, {**WINDOW, "granularity": "day", "computer": "web-1"})
    perf = queries.page(target.a, Aggregate.PERF, {**WINDOW, "granularity": "day", "computer": "web-1"})

    assert [(r["time"], r["records"], r["bytes"]) for r in usage["rows"]] == [
        ("2024-05-01T00:00:00+00:00", 3, 30),
        ("2024-05-02T00:00:00+00:00", 3, 30),
    ]
    first_day = perf["rows"][0]
    # Hours 1..3 of day one: samples 2 each, totals 10/20/30, minimum 1/2/3, maximum 9/18/27.
    assert (first_day["samples"], first_day["total"], first_day["minimum"], first_day["maximum"]) == (
        6,
        60.0,
        1.0,
        27.0,
    )
    assert first_day["average"] == 10.0


def test_given_filters_when_querying_then_only_matching_rows_and_the_window_is_half_open(
    target: Target,
) -> None:
    queries = target.queries()
    narrow = {"from": "2024-05-01T02:00:00Z", "to": "2024-05-01T03:00:00Z"}

    syslog = queries.page(target.a, Aggregate.SYSLOG, {**narrow, "computer": "web-3", "facility": "auth"})
    events = queries.page(target.a, Aggregate.EVENTS, {**WINDOW, "event_id": "7036", "level": "Error"})
    none = queries.page(target.a, Aggregate.EVENTS, {**WINDOW, "event_id": "1"})
    perf = queries.page(
        target.a, Aggregate.PERF, {**WINDOW, "counter": "% Processor Time", "instance": "_Total"}
    )

    assert [(r["time"], r["computer"], r["messages"]) for r in syslog["rows"]] == [
        ("2024-05-01T02:00:00+00:00", "web-3", 1)
    ]
    assert len(events["rows"]) == 12
    assert none["rows"] == []
    assert len(perf["rows"]) == 12


def test_given_a_reader_session_for_a_when_values_name_b_then_the_session_s_workspace_wins(
    target: Target,
) -> None:
    """The API path has one workspace input, the URL's, and it is the session's: a value smuggled into
    the statement's parameters is replaced by the session's own."""
    query_values = {**statement_values(window_query(target.a)), "workspace_id": target.b}

    with target.database.reader(target.a) as session:
        rows = session.query_page("usage", query_values)

    assert {row[2] for row in rows} == {"web-1", "web-3"}


def window_query(workspace_id: str, aggregate: Aggregate = Aggregate.USAGE) -> Query:
    return parse_query(workspace_id, aggregate, WINDOW, now=NOW, signer=ContinuationSigner(lambda: b"k"))


@pytest.mark.parametrize("aggregate", list(Aggregate))
def test_given_postgresql_rls_when_a_query_statement_names_b_on_a_connection_bound_to_a_then_no_row(
    postgres_cluster: PostgresCluster, pg_database: PostgresDatabase, aggregate: Aggregate
) -> None:
    """Row-level security holds under the query statements themselves: run with B's id in its WHERE
    clause (a garbled query) on a reader connection bound to A, each returns nothing."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    owner = Database.open(SqlDialect.POSTGRESQL, pg_database.connection_string)
    owner.migrate()
    fill(owner, a, b)
    connection = connect(pg_database.connection_string)
    try:
        bind(connection, a)
        query = statement(SqlDialect.POSTGRESQL, f"query_{aggregate.value}")
        values = {
            **statement_values(window_query(a, aggregate)),
            "workspace_id": b,
            "from": "2024-05-01T00:00:00",
            "to": "2024-05-03T00:00:00",
        }
        fetched = connection.cursor().execute(query.text, *query.bind(values)).fetchall()
        assert fetched == []
        values["workspace_id"] = a
        assert connection.cursor().execute(query.text, *query.bind(values)).fetchall() != []
    finally:
        connection.close()
        owner.close()
