"""Benchmark: processing throughput, from a raw blob's gzip bytes to committed aggregates.

The measured path is `shared.processing.process_blob_created` itself (metadata and sha256 checks of
the stored bytes; RecordStream: bounded inflate + windowed msgspec parse; HourlyAggregator;
Database.apply_blob: the ledger claim and one set-based upsert per aggregate table in one
transaction), on SQLite and on PostgreSQL.
The blob is held in memory (no storage round trip): what is timed is the processing, not a download.

Beside it, measured in the same run and alternating with it so both see the same machine load:

  parse floor   gunzip + orjson.loads of the same blob: the least work any processing of it must do
  upsert        on PostgreSQL, the same aggregate rows through apply_blob (one statement per table)
                and row by row (one INSERT ... ON CONFLICT per row, pyodbc executemany), each as the
                ledger claim + upserts in one transaction; over loopback (a round trip is nearly free)
                and through bench.latency's proxy, about a 1 ms round trip, as to a database across a
                network (Azure SQL from a function app)
  memory        the peak of Python allocations (tracemalloc) while the blob, then a 30 MB one, is
                processed, in a separate, untimed pass (tracing slows everything it traces)

The PostgreSQL server is a throwaway cluster started with tests.support.postgres (the test session's
launcher, imported as is); without its binaries or ODBC driver the PostgreSQL figures are skipped with
the reason printed. Records are realistic Perf samples (several computers and counters)."""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
import tracemalloc
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.latency import DelayingProxy
from bench.records import MB
from bench.timing import StepTimings, Timing
from shared.aggregate import Aggregates, HourlyAggregator
from shared.audit import AuditChain, AuditEntry, AuditHead, AuditLog
from shared.ids import RawBlobName
from shared.processing import BlobCreated, LedgerEntry, Outcome, process_blob_created
from shared.rawreader import RecordStream
from shared.rawstore import MAX_BODY_BYTES, RawBlob, gzip_bytes
from shared.settings import SqlDialect
from shared.sql import Database, statement

DEFAULT_ITERATIONS = 20
WARMUP_ITERATIONS = 1
UPSERT_ITERATIONS = 8
THROUGHPUT_BLOB_BYTES = 5 * MB
MEMORY_BLOB_BYTES = 30 * MB  # decompressed; MAX_BODY_BYTES (30 MiB) is the most a blob may inflate to
# Each timed section stops early (after at least two runs) once it has used this much wall time, so a
# slow or busy machine still finishes in about a minute.
SECTION_BUDGET_SECONDS = 8.0
TARGET_RECORDS_PER_SECOND = 250_000
TARGET_FLOOR_RATIO = 0.5
TARGET_SET_BASED_SPEEDUP = 10.0
# The database across a network: a proxy holding each chunk this long each way (bench.latency), for
# about a 1 ms round trip, where loopback's is under 0.1 ms and nearly free.
NETWORK_ONE_WAY_DELAY_SECONDS = 0.0005
WORKSPACE_ID = "0c6d2a44-2a3f-4f3e-9c7e-1a2b3c4d5e6f"
LOG_TYPE = "Perf"
TIME_FIELD = "TimeGenerated"
_GZIP_WBITS = 31
_START = datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)
_SAMPLE_INTERVAL = timedelta(seconds=10)
_COMPUTERS = tuple(f"vm-app-{i:03d}.contoso.local" for i in range(40))
_COUNTERS = (
    ("Processor", "% Processor Time", "_Total"),
    ("Processor", "% Processor Time", "0"),
    ("Processor", "% Processor Time", "1"),
    ("Memory", "Available MBytes", "Memory"),
    ("Memory", "% Committed Bytes In Use", "Memory"),
    ("LogicalDisk", "% Free Space", "C:"),
    ("LogicalDisk", "Disk Reads/sec", "C:"),
    ("LogicalDisk", "Disk Writes/sec", "C:"),
    ("LogicalDisk", "Avg. Disk sec/Transfer", "C:"),
    ("Network Adapter", "Bytes Received/sec", "Microsoft Hyper-V Network Adapter"),
    ("Network Adapter", "Bytes Sent/sec", "Microsoft Hyper-V Network Adapter"),
    ("System", "Processor Queue Length", "System"),
)

# Row by row: the same upserts as shared/sql/postgresql/upsert_{usage,perf}.sql, one row per execution.
_USAGE_ROW = """
INSERT INTO usage_hourly (workspace_id, hour, log_type, computer, records, bytes)
VALUES (CAST(? AS varchar), CAST(? AS timestamp), CAST(? AS varchar), CAST(? AS varchar),
        CAST(? AS bigint), CAST(? AS bigint))
ON CONFLICT (workspace_id, hour, log_type, computer) DO UPDATE
SET records = usage_hourly.records + EXCLUDED.records,
    bytes = usage_hourly.bytes + EXCLUDED.bytes
"""
_PERF_ROW = """
INSERT INTO perf_hourly
    (workspace_id, hour, computer, object_name, counter_name, instance_name, samples, total, minimum, maximum)
VALUES (CAST(? AS varchar), CAST(? AS timestamp), CAST(? AS varchar), CAST(? AS varchar), CAST(? AS varchar),
        CAST(? AS varchar), CAST(? AS bigint), CAST(? AS double precision), CAST(? AS double precision),
        CAST(? AS double precision))
ON CONFLICT (workspace_id, hour, computer, object_name, counter_name, instance_name) DO UPDATE
SET samples = perf_hourly.samples + EXCLUDED.samples,
    total = perf_hourly.total + EXCLUDED.total,
    minimum = least(perf_hourly.minimum, EXCLUDED.minimum),
    maximum = greatest(perf_hourly.maximum, EXCLUDED.maximum)
"""
_HOUR_TEXT = "%Y-%m-%dT%H:%M:%S"


# -- the blob ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PerfBlob:
    label: str
    json_bytes: int
    gzip: bytes
    sha256: str
    records: int
    received_at: datetime

    @property
    def record_bytes(self) -> float:
        return self.json_bytes / self.records

    def raw_blob(self) -> RawBlob:
        metadata = {
            "workspace_id": WORKSPACE_ID,
            "log_type": LOG_TYPE,
            "record_count": str(self.records),
            "sha256": self.sha256,
            "received_at": self.received_at.isoformat(),
            "time_generated_field": TIME_FIELD,
        }
        return RawBlob(data=self.gzip, metadata=metadata, etag='"0x8DC0000BENCH"')


def make_perf_blob(target_bytes: int, *, seed: int) -> PerfBlob:
    """A JSON array of about `target_bytes` of Perf samples: every computer reports every counter each
    10 s, as a gateway forwarding a fleet's counters posts them; stored gzip as ingest stores it."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    size = 2
    moment = _START
    while size < target_bytes:
        for computer in _COMPUTERS:
            # An agent samples all its counters at once: one time per computer and interval.
            at = moment + timedelta(microseconds=rng.randrange(0, 900_000))
            stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            for object_name, counter_name, instance_name in _COUNTERS:
                record = {
                    TIME_FIELD: stamp,
                    "Computer": computer,
                    "ObjectName": object_name,
                    "CounterName": counter_name,
                    "InstanceName": instance_name,
                    "CounterValue": _counter_value(rng, counter_name),
                    "SampleCount": 1,
                }
                records.append(record)
                size += len(orjson.dumps(record)) + 1
                if size >= target_bytes:
                    break
            if size >= target_bytes:
                break
        moment += _SAMPLE_INTERVAL
    body = orjson.dumps(records)
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"a {len(body)}-byte blob is over the {MAX_BODY_BYTES}-byte limit")
    stored = gzip_bytes(body)
    return PerfBlob(
        label=f"{target_bytes / MB:g} MB",
        json_bytes=len(body),
        gzip=stored,
        sha256=hashlib.sha256(stored).hexdigest(),
        records=len(records),
        received_at=moment + timedelta(minutes=1),
    )


def _counter_value(rng: random.Random, counter_name: str) -> float:
    if "Bytes" in counter_name:
        return round(rng.uniform(0, 2e7), 1)
    if counter_name.startswith("%"):
        return round(rng.uniform(0, 100), 3)
    return round(rng.expovariate(0.05), 3)


# -- in-memory ports for the parts that are not measured --------------------------------------------


class OneBlobStore:
    """A RawStore whose get_raw answers the bench blob under any name: each timed run gets a fresh blob
    name (a new ledger entry, so every run upserts) without storing a copy per run."""

    def __init__(self, blob: RawBlob) -> None:
        self._blob = blob

    def put_raw(self, workspace_id: str, blob_name: str, data: bytes, *, metadata: dict[str, str]) -> None:
        raise NotImplementedError

    def get_raw(self, workspace_id: str, blob_name: str) -> RawBlob:
        return self._blob

    def list_raw_days(self, workspace_id: str) -> list[date]:
        return []

    def delete_raw_day(self, workspace_id: str, day: date) -> int:
        return 0

    def quarantine_raw(self, workspace_id: str, blob_name: str, *, reason: str, detail: str) -> None:
        raise AssertionError(f"the bench blob was found poison ({reason}: {detail})")


class NoAuditStore:
    """Processing audits only quarantines; the bench blob is never one."""

    def head(self, workspace_id: str | None) -> AuditHead | None:
        return None

    def try_append(self, entry: AuditEntry, *, after: AuditHead | None) -> bool:
        raise AssertionError("the bench blob was quarantined")

    def read(self, workspace_id: str | None) -> AuditChain:
        return AuditChain(entries=[], head=None)

    def workspaces(self) -> list[str | None]:
        return []


def _fresh_name(blob: PerfBlob) -> str:
    hour = blob.received_at.replace(minute=0, second=0, microsecond=0)
    return str(RawBlobName(hour=hour, log_type=LOG_TYPE, blob_id=uuid.uuid4().hex))


def process_once(blob: PerfBlob, store: OneBlobStore, database: Database, audit: AuditLog) -> None:
    created = BlobCreated(container=f"ws-{WORKSPACE_ID}", blob_name=_fresh_name(blob))
    outcome = process_blob_created(created, raw_store=store, sink=database, audit=audit)
    if outcome is not Outcome.APPLIED:
        raise RuntimeError(f"the bench blob was {outcome}, not applied")


def parse_floor(blob: PerfBlob) -> int:
    records = orjson.loads(zlib.decompress(blob.gzip, _GZIP_WBITS))
    return len(records)


def aggregates_of(blob: PerfBlob) -> Aggregates:
    aggregator = HourlyAggregator(log_type=LOG_TYPE, time_field=TIME_FIELD, received_at=blob.received_at)
    for window in RecordStream(blob.gzip, record_type=aggregator.record_type, max_bytes=MAX_BODY_BYTES):
        aggregator.add(window)
    return aggregator.result()


# -- results -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class UpsertCase:
    """One way of writing the keys: onto keys that exist (an hour being filled: every blob after the
    hour's first) or onto new keys (the first blob of an hour), over loopback or a delayed link."""

    label: str
    new_keys: bool
    round_trip_ms: float = 0.0  # one `SELECT 1` on the case's connection: what each row-by-row row pays
    set_based: Timing = field(default_factory=Timing)
    row_by_row: Timing = field(default_factory=Timing)

    @property
    def speedup(self) -> float:
        """Row-by-row wall time per blob over set-based: the database's work is in the wall time."""
        set_based = self.set_based.wall_ms_per_run()
        return self.row_by_row.wall_ms_per_run() / set_based if set_based else 0.0


@dataclass(slots=True)
class UpsertComparison:
    usage_rows: int
    perf_rows: int
    cases: list[UpsertCase] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.usage_rows + self.perf_rows


@dataclass(frozen=True, slots=True)
class MemoryFigure:
    json_bytes: int
    gzip_bytes: int
    records: int
    peak_bytes: int
    seconds: float


@dataclass(slots=True)
class ProcessingResult:
    blob: PerfBlob
    usage_rows: int
    perf_rows: int
    floor: Timing = field(default_factory=Timing)  # measured beside SQLite's runs
    sqlite: Timing = field(default_factory=Timing)
    postgres_floor: Timing = field(default_factory=Timing)  # measured beside PostgreSQL's runs
    postgres: Timing | None = None
    postgres_skipped: str | None = None
    upsert: UpsertComparison | None = None
    upsert_skipped: str | None = None
    steps: StepTimings = field(default_factory=StepTimings)
    steps_blobs: int = 0
    memory: list[MemoryFigure] = field(default_factory=list)


def records_per_second(records: int, timing: Timing, *, wall: bool = False) -> float:
    seconds = timing.wall_seconds if wall else timing.cpu_seconds
    return records * timing.runs / seconds if seconds > 0 else 0.0


def best_records_per_second(records: int, timing: Timing) -> float:
    """Of the run with the least CPU time."""
    return records / timing.best_cpu_seconds if 0 < timing.best_cpu_seconds < math.inf else 0.0


# -- running -------------------------------------------------------------------------------------------


def _budgeted(iterations: int) -> Iterator[int]:
    """0..iterations-1, stopping early (after two) once the section has used its time budget."""
    started = time.perf_counter()
    for index in range(iterations):
        if index >= 2 and time.perf_counter() - started > SECTION_BUDGET_SECONDS:
            return
        yield index


def run_processing_benchmark(
    *, iterations: int, work_dir: Path, log: Callable[[str], None]
) -> ProcessingResult:
    log(f"processing: generating a {THROUGHPUT_BLOB_BYTES / MB:g} MB Perf blob ...")
    blob = make_perf_blob(THROUGHPUT_BLOB_BYTES, seed=4)
    aggregates = aggregates_of(blob)
    result = ProcessingResult(blob=blob, usage_rows=len(aggregates.usage), perf_rows=len(aggregates.perf))
    store = OneBlobStore(blob.raw_blob())
    audit = AuditLog(NoAuditStore(), clock=lambda: datetime.now(UTC))

    sqlite = _open(SqlDialect.SQLITE, str(work_dir / "bench.db"))
    try:
        log("processing: SQLite ...")
        _alternate(blob, store, audit, sqlite, result.sqlite, result.floor, iterations)
        result.steps_blobs = _steps(blob, sqlite, result.steps)
    finally:
        sqlite.close()

    _run_postgres(blob, aggregates, store, audit, result, iterations, log)

    log(f"processing: peak memory on the {blob.label} blob and a {MEMORY_BLOB_BYTES / MB:g} MB one ...")
    result.memory.append(_peak_memory(blob, work_dir / "memory.db"))
    result.memory.append(_peak_memory(make_perf_blob(MEMORY_BLOB_BYTES, seed=30), work_dir / "memory.db"))
    return result


def _open(dialect: SqlDialect, connection: str) -> Database:
    database = Database.open(dialect, connection)
    database.migrate()
    return database


def _alternate(
    blob: PerfBlob,
    store: OneBlobStore,
    audit: AuditLog,
    database: Database,
    timing: Timing,
    floor: Timing,
    iterations: int,
) -> None:
    """Processing and the floor in turn, after untimed warm-up runs of each: the machine's load (this
    one's varies from minute to minute) weighs on both alike."""
    for _ in range(WARMUP_ITERATIONS):
        process_once(blob, store, database, audit)
        parse_floor(blob)
    for _ in _budgeted(iterations):
        with timing.measure():
            process_once(blob, store, database, audit)
        with floor.measure():
            parse_floor(blob)


def _steps(blob: PerfBlob, database: Database, steps: StepTimings) -> int:
    """Where processing's time goes, on SQLite: the same work as process_blob_created, step by step.
    Returns how many blobs were measured."""
    raw = blob.raw_blob()
    blobs = 0
    for _ in _budgeted(3):
        blobs += 1
        with steps.measure("read (sha256, inflate, parse)"):
            sha256 = hashlib.sha256(raw.data).hexdigest()
            if sha256 != raw.metadata["sha256"]:
                raise AssertionError("the bench blob does not match its sha256")
        aggregator = HourlyAggregator(log_type=LOG_TYPE, time_field=TIME_FIELD, received_at=blob.received_at)
        stream = RecordStream(raw.data, record_type=aggregator.record_type, max_bytes=MAX_BODY_BYTES)
        windows = iter(stream)
        while True:
            with steps.measure("read (sha256, inflate, parse)"):
                window = next(windows, None)
            if window is None:
                break
            with steps.measure("aggregate"):
                aggregator.add(window)
        with steps.measure("commit (apply_blob)"):
            entry = LedgerEntry(WORKSPACE_ID, _fresh_name(blob), raw.etag, sha256, stream.records)
            database.apply_blob(entry, aggregator.result())
    return blobs


def _run_postgres(
    blob: PerfBlob,
    aggregates: Aggregates,
    store: OneBlobStore,
    audit: AuditLog,
    result: ProcessingResult,
    iterations: int,
    log: Callable[[str], None],
) -> None:
    from tests.support.postgres import MissingTool, PostgresCluster, find_bin_dir

    try:
        cluster = PostgresCluster(bin_dir=find_bin_dir())
    except MissingTool as error:
        result.postgres_skipped = result.upsert_skipped = f"PostgreSQL is not available: {error}"
        return
    log("processing: starting a throwaway PostgreSQL cluster ...")
    try:
        cluster.start()
    except Exception as error:  # initdb or pg_ctl failed, or the ODBC driver is missing
        result.postgres_skipped = result.upsert_skipped = f"PostgreSQL did not start: {_first_line(error)}"
        return
    try:
        database = _open(SqlDialect.POSTGRESQL, cluster.create_database("sluice_bench").connection_string)
        try:
            log("processing: PostgreSQL ...")
            timing = Timing()
            _alternate(blob, store, audit, database, timing, result.postgres_floor, iterations)
            result.postgres = timing
            log("processing: set-based vs row-by-row upserts on PostgreSQL ...")
            rows_database = cluster.create_database("sluice_bench_rows")
            result.upsert = UpsertComparison(usage_rows=len(aggregates.usage), perf_rows=len(aggregates.perf))
            loopback = rows_database.connection_string
            result.upsert.cases = [
                _compare_upserts(aggregates, loopback, UpsertCase("onto existing keys", new_keys=False)),
                _compare_upserts(aggregates, loopback, UpsertCase("onto new keys", new_keys=True)),
            ]
            log("processing: the same across a 1 ms round trip ...")
            with DelayingProxy(cluster.port, one_way_delay=NETWORK_ONE_WAY_DELAY_SECONDS) as proxy:
                networked = re.sub(r"Port=\d+", f"Port={proxy.port}", loopback)
                case = UpsertCase("onto existing keys, across a network", new_keys=False)
                result.upsert.cases.append(_compare_upserts(aggregates, networked, case))
        except Exception as error:
            reason = f"the PostgreSQL run failed: {_first_line(error)}"
            if result.postgres is None:
                result.postgres_skipped = reason
            result.upsert_skipped = reason
        finally:
            database.close()
    finally:
        cluster.stop()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _compare_upserts(aggregates: Aggregates, connection_string: str, case: UpsertCase) -> UpsertCase:
    """The same rows, each way, as the ledger claim + upserts in one transaction per blob; the two ways
    alternate, and every run claims a new blob, so it always upserts. Onto existing keys, every run
    writes the same hours; onto new keys, each run's rows are moved to hours no run wrote before."""
    import pyodbc

    if aggregates.events or aggregates.syslog:
        raise ValueError("the upsert comparison covers usage and perf rows only")
    database = _open(SqlDialect.POSTGRESQL, connection_string)
    connection = pyodbc.connect(connection_string, autocommit=False)
    try:
        case.round_trip_ms = _round_trip_ms(connection)
        for index in range(WARMUP_ITERATIONS + UPSERT_ITERATIONS):
            timed = index >= WARMUP_ITERATIONS
            set_rows, row_rows = (
                (_shifted(aggregates, hours=1000 + 2 * index), _shifted(aggregates, hours=1001 + 2 * index))
                if case.new_keys
                else (aggregates, aggregates)
            )
            entry = LedgerEntry(WORKSPACE_ID, f"bench/{case.label}/set/{index}", "etag", "0" * 64, 1)
            with _maybe(case.set_based, timed):
                if not database.apply_blob(entry, set_rows):
                    raise RuntimeError("the ledger already held the set-based bench blob")
            entry = LedgerEntry(WORKSPACE_ID, f"bench/{case.label}/rows/{index}", "etag", "0" * 64, 1)
            with _maybe(case.row_by_row, timed):
                _apply_row_by_row(connection, entry, row_rows)
    finally:
        connection.close()
        database.close()
    return case


def _shifted(aggregates: Aggregates, *, hours: int) -> Aggregates:
    offset = timedelta(hours=hours)
    return Aggregates(
        usage=[replace(r, hour=r.hour + offset) for r in aggregates.usage],
        perf=[replace(r, hour=r.hour + offset) for r in aggregates.perf],
    )


def _round_trip_ms(connection: Any, runs: int = 50) -> float:
    cursor = connection.cursor()
    try:
        timings = []
        for _ in range(runs):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            timings.append(time.perf_counter() - started)
        connection.rollback()
    finally:
        cursor.close()
    return 1000 * sorted(timings)[len(timings) // 2]


@contextmanager
def _maybe(timing: Timing, timed: bool) -> Iterator[None]:
    if not timed:
        yield
        return
    with timing.measure():
        yield


def _apply_row_by_row(connection: Any, entry: LedgerEntry, aggregates: Aggregates) -> None:
    claim = statement(SqlDialect.POSTGRESQL, "claim_blob")
    cursor = connection.cursor()
    try:
        cursor.execute(
            claim.text,
            claim.bind(
                {
                    "workspace_id": entry.workspace_id,
                    "blob_name": entry.blob_name,
                    "etag": entry.etag,
                    "sha256": entry.sha256,
                    "record_count": entry.record_count,
                }
            ),
        )
        if cursor.rowcount != 1:
            raise RuntimeError("the ledger already held the row-by-row bench blob")
        ws = entry.workspace_id
        if aggregates.usage:
            cursor.executemany(
                _USAGE_ROW,
                [
                    (ws, r.hour.strftime(_HOUR_TEXT), r.log_type, r.computer, r.records, r.bytes)
                    for r in aggregates.usage
                ],
            )
        if aggregates.perf:
            cursor.executemany(
                _PERF_ROW,
                [
                    (
                        ws,
                        r.hour.strftime(_HOUR_TEXT),
                        r.computer,
                        r.object_name,
                        r.counter_name,
                        r.instance_name,
                        r.samples,
                        r.total,
                        r.minimum,
                        r.maximum,
                    )
                    for r in aggregates.perf
                ],
            )
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()


def _peak_memory(blob: PerfBlob, path: Path) -> MemoryFigure:
    store = OneBlobStore(blob.raw_blob())
    audit = AuditLog(NoAuditStore(), clock=lambda: datetime.now(UTC))
    database = _open(SqlDialect.SQLITE, str(path))
    try:
        process_once(blob, store, database, audit)  # untraced: imports, statement cache, connection
        started = time.perf_counter()
        tracemalloc.start()
        try:
            process_once(blob, store, database, audit)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        seconds = time.perf_counter() - started
    finally:
        database.close()
    return MemoryFigure(
        json_bytes=blob.json_bytes,
        gzip_bytes=len(blob.gzip),
        records=blob.records,
        peak_bytes=peak,
        seconds=seconds,
    )


# -- report --------------------------------------------------------------------------------------------


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def processing_lines(result: ProcessingResult) -> list[str]:
    blob = result.blob
    floor_rate = records_per_second(blob.records, result.floor)
    lines = [
        "Processing throughput: records per CPU-second of this process (= per core), from the raw blob's "
        "gzip bytes to committed",
        "aggregates (process_blob_created: RecordStream + HourlyAggregator + Database.apply_blob); parse "
        "floor = gunzip + orjson.loads",
        "of the same blob. The PostgreSQL server's CPU is not counted (another process), only its latency, "
        "in the wall figures.",
        "Targets are judged on the best run of each (the least CPU time: as timeit's documentation advises, "
        "a slower run is mostly",
        "other load on the machine, and this VM's speed varies from minute to minute); the mean over all "
        "runs is beside it.",
        "",
        f"blob {blob.label}: {blob.json_bytes / MB:.2f} MB JSON, {blob.records:,} Perf records "
        f"({blob.record_bytes:.0f} bytes each), {len(blob.gzip) / MB:.2f} MB gzip, "
        f"{len(_COMPUTERS)} computers x {len(_COUNTERS)} counters -> {result.usage_rows} usage + "
        f"{result.perf_rows:,} perf rows; {result.sqlite.runs} timed runs",
        f"parse floor             : best run {best_records_per_second(blob.records, result.floor):>9,.0f} "
        f"records/s per core, mean {floor_rate:,.0f}   "
        f"[wall {records_per_second(blob.records, result.floor, wall=True):,.0f}]",
        *_dialect_lines("processing on SQLite", blob, result.sqlite, result.floor),
    ]
    if result.postgres is not None:
        lines += _dialect_lines("processing on PostgreSQL", blob, result.postgres, result.postgres_floor)
        lines.append(
            "  (PostgreSQL's ratios are to the floor measured beside its runs: best run "
            f"{best_records_per_second(blob.records, result.postgres_floor):,.0f}, mean "
            f"{records_per_second(blob.records, result.postgres_floor):,.0f} rec/s)"
        )
    else:
        lines.append(f"processing on PostgreSQL: skipped ({result.postgres_skipped})")
    total_cpu = sum(t.cpu_seconds for t in result.steps.steps.values())
    if total_cpu > 0 and result.steps_blobs:
        steps = "  ".join(
            f"{name} {1000 * t.cpu_seconds / result.steps_blobs:.1f} ({100 * t.cpu_seconds / total_cpu:.0f}%)"
            for name, t in result.steps.steps.items()
        )
        lines.append(f"  steps on SQLite, CPU ms per blob ({result.steps_blobs} blobs): {steps}")
    lines.append("")
    upsert = result.upsert
    if upsert is not None:
        lines.append(
            f"upsert on PostgreSQL: {upsert.rows:,} rows per blob ({upsert.usage_rows} usage + "
            f"{upsert.perf_rows:,} perf), ledger claim + upserts in one transaction, wall ms per blob "
            f"(CPU ms of this process); round trip = one SELECT 1 on the case's connection"
        )
        for case in upsert.cases:
            verdict = _verdict(case.speedup >= TARGET_SET_BASED_SPEEDUP)
            lines.append(
                f"  {case.label} (round trip {case.round_trip_ms:.2f} ms): set-based (apply_blob, one "
                "statement per table) "
                f"{case.set_based.wall_ms_per_run():6.1f} ({case.set_based.cpu_ms_per_run():.1f}), "
                f"row-by-row (INSERT ... ON CONFLICT per row, executemany) "
                f"{case.row_by_row.wall_ms_per_run():6.1f} ({case.row_by_row.cpu_ms_per_run():.1f}): "
                f"set-based {case.speedup:.1f}x faster (target >= {TARGET_SET_BASED_SPEEDUP:.0f}x) {verdict}"
            )
    else:
        lines.append(f"upsert on PostgreSQL: skipped ({result.upsert_skipped})")
    if result.memory:
        lines.append("")
        lines.append(
            "peak memory while processing (Python allocations, tracemalloc, above the gzip blob already "
            "in memory; separate untimed pass on SQLite, whose own page cache is not traced):"
        )
        for memory in result.memory:
            lines.append(
                f"  {memory.json_bytes / MB:5.2f} MB blob ({memory.records:,} records, "
                f"{memory.gzip_bytes / MB:.2f} MB gzip): peak {memory.peak_bytes / MB:.1f} MB "
                f"= {memory.peak_bytes / memory.json_bytes:.2f}x the JSON size  "
                f"[{memory.seconds:.1f} s traced]"
            )
    return lines


def _dialect_lines(label: str, blob: PerfBlob, timing: Timing, floor: Timing) -> list[str]:
    """The best run against the floor's best run, with the targets; then the means."""
    best = best_records_per_second(blob.records, timing)
    best_floor = best_records_per_second(blob.records, floor)
    best_ratio = best / best_floor if best_floor else 0.0
    rate = records_per_second(blob.records, timing)
    floor_rate = records_per_second(blob.records, floor)
    ratio = rate / floor_rate if floor_rate else 0.0
    return [
        f"{label:<24}: best run {best:>9,.0f} records/s per core (target >= {TARGET_RECORDS_PER_SECOND:,}"
        + (f": {_verdict(best >= TARGET_RECORDS_PER_SECOND)})" if "SQLite" in label else ")")
        + f"   ratio to floor {best_ratio:.2f} (target >= {TARGET_FLOOR_RATIO:.2f}: "
        f"{_verdict(best_ratio >= TARGET_FLOOR_RATIO)})",
        f"{'':<24}  mean     {rate:>9,.0f} records/s per core{'':<22}   ratio to floor {ratio:.2f}   "
        f"[wall {records_per_second(blob.records, timing, wall=True):,.0f}; "
        f"{timing.cpu_ms_per_run():.0f} ms CPU per blob, best {1000 * timing.best_cpu_seconds:.0f}]",
    ]


def processing_json(result: ProcessingResult) -> dict[str, Any]:
    blob = result.blob
    floor_rate = records_per_second(blob.records, result.floor)

    def dialect(timing: Timing | None, floor: Timing) -> dict[str, Any] | None:
        if timing is None:
            return None
        rate = records_per_second(blob.records, timing)
        floor_rate = records_per_second(blob.records, floor)
        best = best_records_per_second(blob.records, timing)
        best_floor = best_records_per_second(blob.records, floor)
        return {
            "runs": timing.runs,
            "records_per_cpu_second": round(rate),
            "records_per_wall_second": round(records_per_second(blob.records, timing, wall=True)),
            "ratio_to_floor": round(rate / floor_rate, 3) if floor_rate else None,
            "best_run_records_per_cpu_second": round(best),
            "best_run_ratio_to_floor": round(best / best_floor, 3) if best_floor else None,
        }

    document: dict[str, Any] = {
        "blob": {
            "json_bytes": blob.json_bytes,
            "gzip_bytes": len(blob.gzip),
            "records": blob.records,
            "usage_rows": result.usage_rows,
            "perf_rows": result.perf_rows,
        },
        "targets": {
            "records_per_second_sqlite": TARGET_RECORDS_PER_SECOND,
            "ratio_to_floor": TARGET_FLOOR_RATIO,
            "set_based_speedup": TARGET_SET_BASED_SPEEDUP,
        },
        "floor_records_per_cpu_second": round(floor_rate),
        "floor_best_run_records_per_cpu_second": round(best_records_per_second(blob.records, result.floor)),
        "sqlite": dialect(result.sqlite, result.floor),
        "postgresql": dialect(result.postgres, result.postgres_floor),
        "postgresql_skipped": result.postgres_skipped,
        "steps_cpu_ms_per_blob": {
            name: round(1000 * t.cpu_seconds / result.steps_blobs, 2)
            for name, t in result.steps.steps.items()
            if result.steps_blobs
        },
    }
    if result.upsert is not None:
        document["upsert"] = {
            "rows": result.upsert.rows,
            "cases": [
                {
                    "case": case.label,
                    "round_trip_ms": round(case.round_trip_ms, 3),
                    "runs": case.set_based.runs,
                    "set_based_wall_ms": round(case.set_based.wall_ms_per_run(), 2),
                    "row_by_row_wall_ms": round(case.row_by_row.wall_ms_per_run(), 2),
                    "speedup": round(case.speedup, 2),
                }
                for case in result.upsert.cases
            ],
        }
    else:
        document["upsert_skipped"] = result.upsert_skipped
    document["memory"] = [
        {"json_bytes": m.json_bytes, "gzip_bytes": m.gzip_bytes, "peak_traced_bytes": m.peak_bytes}
        for m in result.memory
    ]
    return document
