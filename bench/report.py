"""The benchmarks' figures as human-readable lines and as JSON (for the README)."""

from __future__ import annotations

from typing import Any

from bench.coldstart import TARGET_MS, WORKER_PRELOAD, ColdStartResult
from bench.ingest import BatchResult, BodyKind, KindResult, mb_per_second
from bench.records import MB
from bench.timing import Timing
from shared.rawstore import GZIP_LEVEL

INGEST_LEGEND = (
    "Ingest throughput: MB/s of decompressed JSON per CPU-second of this process (= per core; "
    "1 MB = 10^6 bytes);",
    "ratio = handler / floor (1.0 = as fast as the floor). Azurite's own CPU is not counted, "
    "only its latency (wall).",
    "  floor       = gunzip + orjson parse + sha256 + one upload of the gzip body as sent",
    f"  plain floor = orjson parse + sha256 + gzip level {GZIP_LEVEL} + one upload "
    "(what a plain-JSON post must cost)",
)


def ingest_lines(results: list[BatchResult]) -> list[str]:
    lines = list(INGEST_LEGEND)
    for batch in results:
        gzip_case, plain_case = batch.by_kind[BodyKind.GZIP], batch.by_kind[BodyKind.PLAIN]
        lines.append("")
        lines.append(
            f"batch {batch.label}: {batch.json_bytes / MB:.2f} MB JSON, {batch.record_count} records, "
            f"{gzip_case.body_bytes / MB:.2f} MB gzip ({batch.json_bytes / gzip_case.body_bytes:.1f}x), "
            f"{batch.iterations} timed posts per case"
        )
        floor_rate = mb_per_second(batch.json_bytes, gzip_case.floor)
        plain_rate = mb_per_second(batch.json_bytes, plain_case.handler)
        lines.append(_case_line(f"ingest gzip body  {batch.label}", "floor", batch.json_bytes, gzip_case))
        lines.append(
            _case_line(f"ingest plain body {batch.label}", "plain floor", batch.json_bytes, plain_case)
            + f"   (ratio to floor {floor_rate:.1f} MB/s: {plain_rate / floor_rate:.2f})"
        )
        for case in (gzip_case, plain_case):
            lines.append(_overhead_line(case))
        lines.append(f"  floor steps, ms per post (CPU/wall), {batch.label} batch:")
        lines.append(_steps_line("floor      ", gzip_case))
        lines.append(_steps_line("plain floor", plain_case))
        levels = ", ".join(
            f"level {level.level} {level.cpu_ms:.0f} ms ({batch.json_bytes / level.compressed_bytes:.1f}x)"
            for level in batch.compression_levels
        )
        lines.append(f"  gzip of the {batch.label} JSON, CPU ms per post (ratio): {levels}")
    return lines


def _case_line(label: str, floor_label: str, json_bytes: int, case: KindResult) -> str:
    handler_rate = mb_per_second(json_bytes, case.handler)
    floor_rate = mb_per_second(json_bytes, case.floor)
    return (
        f"{label:<24}: {handler_rate:6.1f} MB/s per core   {floor_label} {floor_rate:6.1f} MB/s   "
        f"ratio {handler_rate / floor_rate:.2f}   "
        f"[wall: handler {mb_per_second(json_bytes, case.handler, wall=True):.1f}, "
        f"{floor_label} {mb_per_second(json_bytes, case.floor, wall=True):.1f} MB/s]"
    )


def _overhead_line(case: KindResult) -> str:
    extra_cpu = case.handler.cpu_ms_per_run() - case.floor.cpu_ms_per_run()
    extra_wall = case.handler.wall_ms_per_run() - case.floor.wall_ms_per_run()
    return (
        f"  {case.kind.value} body: handler {case.handler.cpu_ms_per_run():.1f} ms CPU per post, "
        f"floor {case.floor.cpu_ms_per_run():.1f} ms: handler adds {extra_cpu:+.1f} ms CPU, "
        f"{extra_wall:+.1f} ms wall"
    )


def _steps_line(label: str, case: KindResult) -> str:
    total_cpu = sum(timing.cpu_seconds for timing in case.floor_steps.steps.values())
    steps = "  ".join(
        f"{name} {timing.cpu_ms_per_run():.1f}/{timing.wall_ms_per_run():.1f}"
        f" ({100 * timing.cpu_seconds / total_cpu:.0f}%)"
        for name, timing in case.floor_steps.steps.items()
    )
    return f"    {label}: {steps}"


def cold_start_lines(result: ColdStartResult) -> list[str]:
    lines = [
        f"Cold start = bare interpreter start + import of the module, medians of {result.runs} fresh "
        "`python -c` processes each;",
        f"ratio = cold start / bare interpreter start; target <= {TARGET_MS:.0f} ms. "
        "Warm page cache, .pyc files present.",
    ]
    for module in result.modules:
        verdict = "PASS" if module.passed else "FAIL"
        lines.append(
            f"cold start {module.module:<16}: {module.cold_start_ms:4.0f} ms "
            f"(interpreter {result.interpreter_ms:.0f} ms + import {module.import_ms:.0f} ms, "
            f"ratio {module.cold_start_ms / result.interpreter_ms:.1f}, "
            f"target <= {TARGET_MS:.0f} ms) {verdict}"
        )
        heaviest = ", ".join(f"{cost.name} {cost.cumulative_ms:.0f} ms" for cost in module.heaviest_imports)
        lines.append(
            f"  import after `{WORKER_PRELOAD}` (the worker has it loaded): "
            f"{module.import_with_worker_preload_ms:.0f} ms; whole process incl. exit "
            f"{module.process_ms:.0f} ms"
        )
        lines.append(f"  heaviest direct imports (-X importtime, one run): {heaviest}")
    lines.append(
        f"first invocation after a cold start: services() builds the adapters in "
        f"{result.first_services_build_ms:.0f} ms (deferred Azure SDK imports, no network), "
        "on top of the import"
    )
    return lines


def _timing_json(json_bytes: int, timing: Timing) -> dict[str, Any]:
    return {
        "runs": timing.runs,
        "cpu_seconds": round(timing.cpu_seconds, 6),
        "wall_seconds": round(timing.wall_seconds, 6),
        "mb_per_cpu_second": round(mb_per_second(json_bytes, timing), 2),
        "mb_per_wall_second": round(mb_per_second(json_bytes, timing, wall=True), 2),
    }


def as_json(
    *, ingest: list[BatchResult] | None, cold_start: ColdStartResult | None, machine: dict[str, Any]
) -> dict[str, Any]:
    document: dict[str, Any] = {"machine": machine}
    if ingest is not None:
        document["ingest"] = [_batch_json(batch) for batch in ingest]
    if cold_start is not None:
        document["cold_start"] = {
            "runs": cold_start.runs,
            "target_ms": TARGET_MS,
            "interpreter_ms": round(cold_start.interpreter_ms, 1),
            "first_services_build_ms": round(cold_start.first_services_build_ms, 1),
            "modules": [
                {
                    "module": module.module,
                    "cold_start_ms": round(module.cold_start_ms, 1),
                    "import_ms": round(module.import_ms, 1),
                    "process_ms": round(module.process_ms, 1),
                    "import_with_worker_preload_ms": round(module.import_with_worker_preload_ms, 1),
                    "ratio_to_interpreter": round(module.cold_start_ms / cold_start.interpreter_ms, 2),
                    "passed": module.passed,
                    "heaviest_imports_ms": {
                        cost.name: round(cost.cumulative_ms, 1) for cost in module.heaviest_imports
                    },
                }
                for module in cold_start.modules
            ],
        }
    return document


def _batch_json(batch: BatchResult) -> dict[str, Any]:
    gzip_floor = batch.by_kind[BodyKind.GZIP].floor
    cases = {}
    for kind, case in batch.by_kind.items():
        handler_rate = mb_per_second(batch.json_bytes, case.handler)
        cases[kind.value] = {
            "body_bytes": case.body_bytes,
            "handler": _timing_json(batch.json_bytes, case.handler),
            "floor": _timing_json(batch.json_bytes, case.floor),
            "floor_kind": "floor" if kind is BodyKind.GZIP else "plain floor",
            "ratio": round(handler_rate / mb_per_second(batch.json_bytes, case.floor), 3),
            "ratio_to_gzip_floor": round(handler_rate / mb_per_second(batch.json_bytes, gzip_floor), 3),
            "floor_steps_ms_per_post": {
                name: {"cpu": round(timing.cpu_ms_per_run(), 2), "wall": round(timing.wall_ms_per_run(), 2)}
                for name, timing in case.floor_steps.steps.items()
            },
        }
    return {
        "batch": batch.label,
        "json_bytes": batch.json_bytes,
        "record_count": batch.record_count,
        "iterations": batch.iterations,
        "cases": cases,
        "gzip_levels": [
            {
                "level": level.level,
                "cpu_ms": round(level.cpu_ms, 2),
                "compressed_bytes": level.compressed_bytes,
            }
            for level in batch.compression_levels
        ],
    }
