"""Benchmark 1: ingest throughput of the real HTTP handler, beside the floor, against Azurite.

The handler path is everything `ingest_http.main` does for a signed post: header checks, SharedKey
verification (directory lookups are cached after the first request), gunzip or gzip, JSON parse,
sha256, and the blob upload through the Azure SDK. The floor is the least work any ingest of the same
bytes must do, written directly against zlib, orjson, hashlib and the Azure SDK:

  floor (gzip body)   gunzip + JSON parse + sha256 of the stored bytes + one upload of them as sent
  floor (plain body)  JSON parse + gzip compress (the handler's level) + sha256 of that + one upload

Handler and floor alternate within each iteration, so both see the same machine load."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import azure.functions as func
import orjson
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

import ingest_http
from bench.records import MB, Batch, make_batch
from bench.timing import StepTimings, Timing
from devhost.azurite import Azurite, AzuritePorts
from shared import sharedkey
from shared.ids import container_name
from shared.ingest import DATA_COLLECTOR_API_VERSION, JSON_CONTENT_TYPE
from shared.plans import DEFAULT_PLAN
from shared.rawstore import GZIP_LEVEL
from shared.runtime import build_services, reset_services
from shared.settings import (
    APPINSIGHTS_SETTING,
    LOG_LEVEL_SETTING,
    PLANS_SETTING,
    SECRETS_DIR_SETTING,
    SQL_CONNECTION_SETTING,
    SQL_DIALECT_SETTING,
    STORAGE_SETTING,
    Settings,
    SqlDialect,
)
from shared.workspaces import NewWorkspace, create_workspace

BATCH_SIZES = (1 * MB, 5 * MB)
DEFAULT_ITERATIONS = 20
# Untimed iterations first: they open connections, load the workspace into the directory cache,
# create the SQLite schema and warm the allocator, none of which a steady-state request pays.
WARMUP_ITERATIONS = 2
COMPRESSION_LEVELS = (1, 3, 6)
COMPRESSION_REPEATS = 3
FUNCTION_URL = f"http://localhost:7071/api/logs?api-version={DATA_COLLECTOR_API_VERSION}"
GZIP_WBITS = 31  # zlib's gzip container
FLOOR_BLOB_PREFIX = "bench-floor/"
# Settings that would change what the handler does (telemetry export, log level) are unset so the
# handler runs with the defaults of a plain deployment.
UNSET_SETTINGS = (APPINSIGHTS_SETTING, LOG_LEVEL_SETTING)
# The bench workspace's plan may ingest as fast as the bench can post: the rate check still runs on every
# request, but never refuses one, so what is timed is the handler's work, not a 429.
UNLIMITED_RATE = orjson.dumps(
    {DEFAULT_PLAN.value: {"ingestion_rate_bytes_per_second": 2**40, "ingestion_burst_bytes": 2**40}}
).decode()


class BodyKind(StrEnum):
    GZIP = "gzip"  # Content-Encoding: gzip, stored as sent
    PLAIN = "plain"  # plain JSON, compressed by the handler


@dataclass(frozen=True, slots=True)
class KindResult:
    """One body kind of one batch: the handler's timing and its comparable floor's."""

    kind: BodyKind
    body_bytes: int
    handler: Timing
    floor: Timing
    floor_steps: StepTimings


@dataclass(frozen=True, slots=True)
class CompressionLevelResult:
    level: int
    cpu_ms: float  # per batch
    compressed_bytes: int


@dataclass(frozen=True, slots=True)
class BatchResult:
    label: str
    record_count: int
    json_bytes: int  # decompressed JSON per post: what the MB/s figures count
    iterations: int
    by_kind: dict[BodyKind, KindResult]
    compression_levels: tuple[CompressionLevelResult, ...]


def mb_per_second(json_bytes: int, timing: Timing, *, wall: bool = False) -> float:
    seconds = timing.wall_seconds if wall else timing.cpu_seconds
    return json_bytes * timing.runs / MB / seconds if seconds > 0 else float("inf")


def run_ingest_benchmark(*, iterations: int, work_dir: Path) -> list[BatchResult]:
    batches = [make_batch(size, seed=index) for index, size in enumerate(BATCH_SIZES)]
    ports = AzuritePorts.free()
    azurite = Azurite(location=work_dir / "azurite", ports=ports, log_file=work_dir / "azurite.log")
    azurite.start()
    try:
        env = {
            STORAGE_SETTING: ports.connection_string,
            SQL_DIALECT_SETTING: SqlDialect.SQLITE.value,
            SQL_CONNECTION_SETTING: str(work_dir / "b.db"),
            SECRETS_DIR_SETTING: str(work_dir / "secrets"),
            PLANS_SETTING: UNLIMITED_RATE,
        }
        workspace = create_bench_workspace(env)
        floor = Floor(
            BlobServiceClient.from_connection_string(ports.connection_string),
            workspace.workspace.workspace_id,
        )
        with function_environment(env):
            return [measure_batch(batch, workspace, floor, iterations=iterations) for batch in batches]
    finally:
        azurite.stop()


def create_bench_workspace(env: Mapping[str, str]) -> NewWorkspace:
    """Through the real adapters, as onboarding does: keys in the secret store, container, registry."""
    setup = build_services(Settings.from_env(env))
    try:
        return create_workspace(registry=setup.registry, secrets=setup.secrets, containers=setup.raw_store)
    finally:
        setup.database.close()


@contextmanager
def function_environment(env: Mapping[str, str]) -> Iterator[None]:
    """The app settings in os.environ, where `ingest_http` reads them; the process's own environment
    and services are restored afterwards."""
    saved = {name: os.environ.get(name) for name in (*env, *UNSET_SETTINGS)}
    for name in UNSET_SETTINGS:
        os.environ.pop(name, None)
    os.environ.update(env)
    reset_services()
    try:
        yield
    finally:
        reset_services()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def measure_batch(batch: Batch, workspace: NewWorkspace, floor: Floor, *, iterations: int) -> BatchResult:
    bodies = {BodyKind.GZIP: batch.gzip_bytes, BodyKind.PLAIN: batch.json_bytes}
    # Signed once per kind: signing is the client's work, and the date stays valid for 15 minutes.
    requests = {kind: signed_request(batch, kind, workspace) for kind in BodyKind}
    handler = {kind: Timing() for kind in BodyKind}
    floor_total = {kind: Timing() for kind in BodyKind}
    floor_steps = {kind: StepTimings() for kind in BodyKind}
    for _ in range(WARMUP_ITERATIONS):
        for kind in BodyKind:
            call_handler(requests[kind])
            floor.run(kind, bodies[kind], StepTimings())
    for _ in range(iterations):
        for kind in BodyKind:
            with handler[kind].measure():
                call_handler(requests[kind])
            with floor_total[kind].measure():
                floor.run(kind, bodies[kind], floor_steps[kind])
    return BatchResult(
        label=batch.label,
        record_count=batch.record_count,
        json_bytes=len(batch.json_bytes),
        iterations=iterations,
        by_kind={
            kind: KindResult(
                kind=kind,
                body_bytes=len(bodies[kind]),
                handler=handler[kind],
                floor=floor_total[kind],
                floor_steps=floor_steps[kind],
            )
            for kind in BodyKind
        },
        compression_levels=measure_compression_levels(batch.json_bytes),
    )


def signed_request(batch: Batch, kind: BodyKind, workspace: NewWorkspace) -> func.HttpRequest:
    body = batch.gzip_bytes if kind is BodyKind.GZIP else batch.json_bytes
    x_ms_date = sharedkey.rfc1123(datetime.now(UTC))
    headers = {
        "Content-Type": JSON_CONTENT_TYPE,
        "Content-Length": str(len(body)),
        "Log-Type": batch.log_type,
        "time-generated-field": "TimeGenerated",
        "x-ms-date": x_ms_date,
        "Authorization": sharedkey.authorization_header(
            workspace.workspace.workspace_id,
            workspace.primary_key,
            content_length=len(body),
            content_type=JSON_CONTENT_TYPE,
            x_ms_date=x_ms_date,
        ),
    }
    if kind is BodyKind.GZIP:
        headers["Content-Encoding"] = "gzip"
    return func.HttpRequest(
        "POST",
        FUNCTION_URL,
        headers=headers,
        params={"api-version": DATA_COLLECTOR_API_VERSION},
        body=body,
    )


def call_handler(request: func.HttpRequest) -> None:
    response = ingest_http.main(request)
    if response.status_code != 200:
        # Not a timing assertion: a refused post would make every figure meaningless.
        raise RuntimeError(f"ingest_http answered {response.status_code}: {response.get_body()[:500]!r}")


class Floor:
    """The least work an ingest of a body must do, each step timed on its own."""

    _CONTENT = ContentSettings(content_type=JSON_CONTENT_TYPE, content_encoding="gzip")

    def __init__(self, blob_service: BlobServiceClient, workspace_id: str) -> None:
        # A client of its own, so the floor keeps its own warm connection like the handler's adapter.
        self._container: ContainerClient = blob_service.get_container_client(container_name(workspace_id))

    def run(self, kind: BodyKind, body: bytes, steps: StepTimings) -> None:
        if kind is BodyKind.GZIP:
            with steps.measure("gunzip"):
                json_bytes = zlib.decompress(body, wbits=GZIP_WBITS)
        else:
            json_bytes = body
        with steps.measure("parse"):
            orjson.loads(json_bytes)
        if kind is BodyKind.GZIP:
            stored = body
        else:
            with steps.measure(f"gzip-{GZIP_LEVEL}"):
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
                stored = compressor.compress(json_bytes) + compressor.flush()
        with steps.measure("sha256"):
            hashlib.sha256(stored).hexdigest()
        with steps.measure("upload"):
            self._container.upload_blob(
                f"{FLOOR_BLOB_PREFIX}{uuid.uuid4().hex}.json.gz",
                stored,
                overwrite=False,
                content_settings=self._CONTENT,
            )


def measure_compression_levels(json_bytes: bytes) -> tuple[CompressionLevelResult, ...]:
    """What the plain-JSON path would cost at other gzip levels: the handler uses GZIP_LEVEL."""
    results = []
    for level in COMPRESSION_LEVELS:
        cpu_start = time.process_time()
        for _ in range(COMPRESSION_REPEATS):
            compressor = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
            compressed = compressor.compress(json_bytes) + compressor.flush()
        cpu_ms = 1000 * (time.process_time() - cpu_start) / COMPRESSION_REPEATS
        results.append(CompressionLevelResult(level=level, cpu_ms=cpu_ms, compressed_bytes=len(compressed)))
    return tuple(results)
