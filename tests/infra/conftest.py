"""Fixtures of the infrastructure tests: checkov runs once per session.

checkov lives in a virtual environment of its own (.venv/checkov, made by `make deps` from
infra/requirements-checkov.txt): it pins `packaging<24`, which pytest 9 cannot use."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.infra.support import INFRA, REPO

CHECKOV = REPO / ".venv" / "checkov" / "bin" / "checkov"


def _checkov_command() -> str:
    configured = os.environ.get("SLUICE_CHECKOV") or (str(CHECKOV) if CHECKOV.exists() else None)
    found = configured or shutil.which("checkov")
    if not found:
        pytest.fail(
            f"checkov is not installed: run `make deps` (it installs it into {CHECKOV.parent.parent})"
        )
    return found


@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """checkov's JSON report for infra/ (Bicep): every check, offline (--skip-download)."""
    out = tmp_path_factory.mktemp("checkov") / "report.json"
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_NO_OUTPUT_COLOR": "true"}
    result = subprocess.run(
        [_checkov_command(), "--framework", "bicep", "--directory", str(INFRA), "--skip-download",
         "--output", "json"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    out.write_text(result.stdout, encoding="utf-8")
    if result.returncode not in (0, 1):  # 1: failed checks, reported by the tests
        pytest.fail(f"checkov exited {result.returncode}: {result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one entry per framework
        (report,) = report
    assert isinstance(report, dict), f"unexpected checkov output in {out}"
    return report
