"""`python -m bench [--json FILE] [--only NAME]`: runs the benchmarks, prints the figures, exits 0 whatever
they are (and whatever fails: a benchmark that cannot run prints why)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from bench.auth import DEFAULT_ITERATIONS as AUTH_ITERATIONS
from bench.auth import auth_lines, run_auth_benchmark
from bench.coldstart import DEFAULT_RUNS, run_cold_start_benchmark
from bench.ingest import DEFAULT_ITERATIONS, run_ingest_benchmark
from bench.processing import DEFAULT_ITERATIONS as PROCESSING_ITERATIONS
from bench.processing import processing_json, processing_lines, run_processing_benchmark
from bench.report import as_json, cold_start_lines, ingest_lines
from bench.retention import DEFAULT_RUNS as RETENTION_RUNS
from bench.retention import retention_json, retention_lines, run_retention_benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON to FILE")
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        help=f"timed posts per ingest case (default {DEFAULT_ITERATIONS})",
    )
    parser.add_argument(
        "--cold-start-runs",
        type=int,
        default=DEFAULT_RUNS,
        help=f"fresh processes per cold-start figure, the median is reported (default {DEFAULT_RUNS})",
    )
    parser.add_argument(
        "--only",
        choices=("ingest", "auth", "processing", "retention", "cold-start"),
        help="run one benchmark only",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.cold_start_runs < 1:
        parser.error("--iterations and --cold-start-runs must be at least 1")
    return args


def machine_description() -> dict[str, Any]:
    # Other work on the machine changes every figure; the load average says how busy it was.
    load = os.getloadavg()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(load[0], 2),
    }


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the `finally` that stops Azurite; the default action would not.
    raise SystemExit(128 + signum)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    machine = machine_description()
    print(
        f"Sluice bench: Python {machine['python']} on {machine['platform']}, {machine['cpus']} CPUs, "
        f"load average {machine['load_average_1m']}",
        flush=True,
    )
    ingest_results = None
    if args.only in (None, "ingest"):
        with tempfile.TemporaryDirectory(prefix="sluice-bench-") as work_dir:
            ingest_results = run_ingest_benchmark(iterations=args.iterations, work_dir=Path(work_dir))
        print()
        print("\n".join(ingest_lines(ingest_results)), flush=True)
    auth_figures = None
    if args.only in (None, "auth"):
        with tempfile.TemporaryDirectory(prefix="sluice-bench-") as work_dir:
            auth_figures = run_auth_benchmark(iterations=AUTH_ITERATIONS, work_dir=Path(work_dir))
        print()
        print("\n".join(auth_lines(auth_figures)), flush=True)
    processing_result = None
    if args.only in (None, "processing"):
        print(flush=True)
        try:
            with tempfile.TemporaryDirectory(prefix="sluice-bench-") as work_dir:
                processing_result = run_processing_benchmark(
                    iterations=PROCESSING_ITERATIONS, work_dir=Path(work_dir), log=_progress
                )
        except Exception as error:  # a benchmark that cannot run says why; the others still run
            print(f"processing benchmark failed: {type(error).__name__}: {error}", flush=True)
        else:
            print("\n".join(processing_lines(processing_result)), flush=True)
    retention_result = None
    if args.only in (None, "retention"):
        print(flush=True)
        try:
            with tempfile.TemporaryDirectory(prefix="sluice-bench-") as work_dir:
                retention_result = run_retention_benchmark(runs=RETENTION_RUNS, work_dir=Path(work_dir))
        except Exception as error:  # a benchmark that cannot run says why; the others still run
            print(f"retention benchmark failed: {type(error).__name__}: {error}", flush=True)
        else:
            print("\n".join(retention_lines(retention_result)), flush=True)
    cold_start_result = None
    if args.only in (None, "cold-start"):
        cold_start_result = run_cold_start_benchmark(runs=args.cold_start_runs)
        print()
        print("\n".join(cold_start_lines(cold_start_result)), flush=True)
    if args.json is not None:
        document = as_json(ingest=ingest_results, cold_start=cold_start_result, machine=machine)
        if auth_figures is not None:
            document["auth"] = [
                {
                    "name": f.name,
                    "microseconds": round(f.microseconds, 1),
                    "baseline": f.baseline_name,
                    "baseline_microseconds": round(f.baseline_microseconds, 1),
                    "ratio": round(f.ratio, 2),
                }
                for f in auth_figures
            ]
        if processing_result is not None:
            document["processing"] = processing_json(processing_result)
        if retention_result is not None:
            document["retention"] = retention_json(retention_result)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
