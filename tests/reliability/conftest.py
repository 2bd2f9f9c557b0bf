"""The reliability suite: faults, hostile input, load and the cross-tenant matrix on the local stack.

Every loop is bounded in count and time by the scale: `quick` (the default, what `make test` runs) or
`full` (`make test-reliability`, SLUICE_RELIABILITY_SCALE=full). Tests record what they measured with
the `figures` fixture; the figures are printed at the end of the session and written to
`.local/reliability.json`, from which RELIABILITY.md's tables are taken."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SCALE_SETTING = "SLUICE_RELIABILITY_SCALE"
FIGURES_FILE = Path(__file__).resolve().parents[2] / ".local" / "reliability.json"


@dataclass(frozen=True)
class Scale:
    """How much each test does: one number per knob, never unbounded."""

    name: str
    concurrent_agents: int
    load_seconds: float
    fuzz_examples: int
    fault_rounds: int


SCALES = {
    "quick": Scale(name="quick", concurrent_agents=4, load_seconds=5.0, fuzz_examples=60, fault_rounds=1),
    "full": Scale(name="full", concurrent_agents=16, load_seconds=60.0, fuzz_examples=600, fault_rounds=5),
}


@dataclass
class Figures:
    """Sections of named figures (counts, milliseconds, verdicts), in the order they were recorded."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, section: str, name: str, value: Any) -> None:
        self.sections.setdefault(section, {})[name] = value

    def add(self, section: str, name: str, amount: int = 1) -> None:
        counts = self.sections.setdefault(section, {})
        counts[name] = counts.get(name, 0) + amount


_figures = Figures()


@pytest.fixture(scope="session")
def scale() -> Scale:
    name = os.environ.get(SCALE_SETTING, "quick")
    if name not in SCALES:
        raise pytest.UsageError(f"{SCALE_SETTING}={name!r}: expected one of {', '.join(SCALES)}")
    return SCALES[name]


@pytest.fixture(scope="session")
def figures(scale: Scale) -> Iterator[Figures]:
    _figures.record("run", "scale", scale.name)
    yield _figures


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _figures.sections:
        return
    terminalreporter.section("reliability figures")
    for section, values in _figures.sections.items():
        terminalreporter.write_line(f"{section}:")
        for name, value in values.items():
            terminalreporter.write_line(f"  {name}: {value}")
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(_figures.sections, indent=2, default=str) + "\n", encoding="utf-8")
