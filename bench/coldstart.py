"""Benchmark 2: cold start, as the import time of each function module in a fresh interpreter.

Each measurement is a new `python -c` process that times `import <module>` from inside and is timed
as a whole from outside; the baseline is the same program importing nothing (a bare interpreter
start). The cold start judged against the target is interpreter start + import. The whole child
process is reported too, but it also pays for tearing the imported modules down at exit, which a
Functions worker, living on, never does.

The Functions worker has already imported azure.functions when it loads a function, so the import
is also timed with azure.functions loaded first; that is closer to what a deployed cold start adds.
shared.runtime defers building the adapters (and importing the Azure SDK) to the first invocation;
that build is timed too, with placeholder settings (nothing connects), as the first request's extra.
The files are warm in the page cache and `.pyc` files exist (one untimed round writes them), so
these figures are a lower bound for a first start on a fresh instance."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from shared.settings import (
    APPINSIGHTS_SETTING,
    DEVELOPMENT_STORAGE,
    LOG_LEVEL_SETTING,
    SECRETS_DIR_SETTING,
    SQL_CONNECTION_SETTING,
    SQL_DIALECT_SETTING,
    STORAGE_SETTING,
    SqlDialect,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
# Every function folder, found as the Functions host finds them.
FUNCTION_MODULES = tuple(sorted(path.parent.name for path in REPO_ROOT.glob("*/function.json")))
TARGET_MS = 300.0
DEFAULT_RUNS = 5
HEAVIEST_IMPORTS_SHOWN = 4
WORKER_PRELOAD = "import azure.functions"
FIRST_INVOCATION_MODULE = "ingest_http"
BUILD_SERVICES = "from shared.runtime import services\nservices()"
# The child prints the seconds its import took; `import time` is part of every interpreter start.
_TIMED_IMPORT = (
    "{prelude}\nimport time\nstart = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)"
)
_IMPORTTIME_PREFIX = "import time:"


@dataclass(frozen=True, slots=True)
class ProcessSample:
    process_ms: float  # the child's whole life, measured by the parent
    import_ms: float  # the import statement alone, measured by the child


@dataclass(frozen=True, slots=True)
class ImportCost:
    name: str
    cumulative_ms: float


@dataclass(frozen=True, slots=True)
class ModuleColdStart:
    """Medians over the runs, except `heaviest_imports` (its direct imports, one `-X importtime` run)."""

    module: str
    cold_start_ms: float  # the bare interpreter's start + this module's import
    import_ms: float
    process_ms: float  # the whole child process, exit included
    import_with_worker_preload_ms: float
    heaviest_imports: tuple[ImportCost, ...]

    @property
    def passed(self) -> bool:
        return self.cold_start_ms <= TARGET_MS


@dataclass(frozen=True, slots=True)
class ColdStartResult:
    runs: int
    interpreter_ms: float  # median process time of the bare interpreter
    modules: tuple[ModuleColdStart, ...]
    first_services_build_ms: float  # median; after the worker preload and FIRST_INVOCATION_MODULE


def run_cold_start_benchmark(*, runs: int) -> ColdStartResult:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-cold-") as work_dir:
        env = child_environment(Path(work_dir))
        first_invocation_prelude = f"{WORKER_PRELOAD}\nimport {FIRST_INVOCATION_MODULE}"
        # Untimed: writes any missing .pyc files so that no timed run pays for compiling.
        run_child(f"import {', '.join(FUNCTION_MODULES)}", prelude="", env=env)
        run_child(BUILD_SERVICES, prelude=first_invocation_prelude, env=env)
        bare: list[ProcessSample] = []
        alone: dict[str, list[ProcessSample]] = {module: [] for module in FUNCTION_MODULES}
        preloaded: dict[str, list[ProcessSample]] = {module: [] for module in FUNCTION_MODULES}
        services_build: list[ProcessSample] = []
        # Interleaved rounds, so a burst of load on the machine hits every target alike.
        for _ in range(runs):
            bare.append(run_child("pass", prelude="", env=env))
            for module in FUNCTION_MODULES:
                alone[module].append(run_child(f"import {module}", prelude="", env=env))
                preloaded[module].append(run_child(f"import {module}", prelude=WORKER_PRELOAD, env=env))
            services_build.append(run_child(BUILD_SERVICES, prelude=first_invocation_prelude, env=env))
    interpreter_ms = statistics.median(sample.process_ms for sample in bare)
    import_ms = {module: statistics.median(sample.import_ms for sample in alone[module]) for module in alone}
    return ColdStartResult(
        runs=runs,
        interpreter_ms=interpreter_ms,
        modules=tuple(
            ModuleColdStart(
                module=module,
                cold_start_ms=interpreter_ms + import_ms[module],
                import_ms=import_ms[module],
                process_ms=statistics.median(sample.process_ms for sample in alone[module]),
                import_with_worker_preload_ms=statistics.median(
                    sample.import_ms for sample in preloaded[module]
                ),
                heaviest_imports=heaviest_imports(module, env=env),
            )
            for module in FUNCTION_MODULES
        ),
        first_services_build_ms=statistics.median(sample.import_ms for sample in services_build),
    )


def child_environment(work_dir: Path) -> dict[str, str]:
    """The caller's environment without what would change an import's cost or output, plus
    placeholder app settings for the services build: building connects to nothing."""
    env = dict(os.environ)
    for name in ("PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE", "PYTHONSTARTUP", "PYTHONPATH"):
        env.pop(name, None)
    for name in (APPINSIGHTS_SETTING, LOG_LEVEL_SETTING):
        env.pop(name, None)  # telemetry export would add its own imports and network
    env.update(
        {
            STORAGE_SETTING: DEVELOPMENT_STORAGE,
            SQL_DIALECT_SETTING: SqlDialect.SQLITE.value,
            SQL_CONNECTION_SETTING: str(work_dir / "cold.db"),
            SECRETS_DIR_SETTING: str(work_dir / "secrets"),
        }
    )
    return env


def run_child(statement: str, *, prelude: str, env: dict[str, str]) -> ProcessSample:
    # cwd is the repository root, which `python -c` puts first on sys.path, as the Functions host
    # puts the app root there.
    program = _TIMED_IMPORT.format(prelude=prelude, statement=statement)
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    )
    process_ms = 1000 * (time.perf_counter() - started)
    return ProcessSample(process_ms=process_ms, import_ms=1000 * float(completed.stdout.split()[-1]))


def heaviest_imports(module: str, *, env: dict[str, str]) -> tuple[ImportCost, ...]:
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return direct_imports(completed.stderr, module)[:HEAVIEST_IMPORTS_SHOWN]


def direct_imports(importtime_output: str, module: str) -> tuple[ImportCost, ...]:
    """The modules that `module` itself imported, heaviest first. `-X importtime` prints each import
    after its children, indented two spaces per level below the top-level import."""
    pending: list[ImportCost] = []
    for line in importtime_output.splitlines():
        if not line.startswith(_IMPORTTIME_PREFIX):
            continue
        fields = line[len(_IMPORTTIME_PREFIX) :].split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue  # the header line
        name_field = fields[2]
        depth = (len(name_field) - len(name_field.lstrip(" ")) - 1) // 2
        name = name_field.strip()
        if depth == 1:
            pending.append(ImportCost(name=name, cumulative_ms=int(fields[1]) / 1000))
        elif depth == 0:
            if name == module:
                return tuple(sorted(pending, key=lambda cost: cost.cumulative_ms, reverse=True))
            pending = []
    return ()
