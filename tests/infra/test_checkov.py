"""checkov (--framework bicep) over infra/: no failed check, and every skipped one justified inline.

checkov 3.3.30's Bicep runner applies inline `//checkov:skip=` comments to its Python checks but not to
its graph (JSON) checks (CKV_AZURE_23/24/25 on Azure SQL): such a result counts here as skipped exactly
when the resource's own lines carry the same inline skip with its reason, as checkov intends."""

from __future__ import annotations

import re
from typing import Any

from tests.infra.support import INFRA

SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::\s*(.*))?")
MIN_REASON = 40  # characters: a reason, not a placeholder


def _inline_skips(record: dict[str, Any]) -> dict[str, str]:
    lines = [text for _, text in record.get("code_block") or []]
    return {match[1]: (match[2] or "").strip() for line in lines if (match := SKIP.search(line))}


def test_checkov_parses_every_template(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["results"].get("parsing_errors")
    assert summary["resource_count"] > 0


def test_checkov_reports_no_failed_check(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{r['check_id']} {r['resource']} ({r['file_path']}:{r['file_line_range'][0]}): {r['check_name']}"
        for r in checkov_report["results"]["failed_checks"]
        if r["check_id"] not in _inline_skips(r)
    ]
    assert not failed, "\n".join(failed)


def test_every_skipped_check_has_its_reason_inline(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    skipped = results["skipped_checks"] + [
        r for r in results["failed_checks"] if r["check_id"] in _inline_skips(r)
    ]
    assert skipped, "no skipped check at all: the inline skips are not read any more"
    for record in skipped:
        reason = _inline_skips(record).get(record["check_id"], "")
        assert len(reason) >= MIN_REASON, f"{record['check_id']} on {record['resource']}: no reason given"


def test_every_inline_skip_in_infra_names_a_check_and_a_reason() -> None:
    for path in INFRA.rglob("*.bicep"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "checkov:skip" in line:
                match = SKIP.search(line)
                assert match and len((match[2] or "").strip()) >= MIN_REASON, (
                    f"{path}:{number}: {line.strip()}"
                )
