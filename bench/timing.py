"""CPU and wall time, accumulated over the timed iterations of one measurement."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field


@dataclass(slots=True)
class Timing:
    """`cpu_seconds` is this process's CPU time (every thread), so MB per CPU-second is MB/s per core;
    work done by Azurite (another process) is not in it, only in `wall_seconds`. `best_cpu_seconds` is
    the least CPU time of one run: what the code costs when nothing else on the machine slows it (the
    reading timeit's documentation recommends; slower runs are mostly other load)."""

    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    runs: int = 0
    best_cpu_seconds: float = math.inf

    @contextmanager
    def measure(self) -> Iterator[None]:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        yield
        cpu = time.process_time() - cpu_start
        self.cpu_seconds += cpu
        self.best_cpu_seconds = min(self.best_cpu_seconds, cpu)
        self.wall_seconds += time.perf_counter() - wall_start
        self.runs += 1

    def cpu_ms_per_run(self) -> float:
        return 1000 * self.cpu_seconds / self.runs if self.runs else 0.0

    def wall_ms_per_run(self) -> float:
        return 1000 * self.wall_seconds / self.runs if self.runs else 0.0


@dataclass(slots=True)
class StepTimings:
    """Per-step timings of a multi-step measurement (the floor), in the order the steps first ran."""

    steps: dict[str, Timing] = field(default_factory=dict)

    def measure(self, step: str) -> AbstractContextManager[None]:
        return self.steps.setdefault(step, Timing()).measure()
