"""Lines into records and records into batches (pure)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from shared.agentclient import batching
from shared.agentclient.batching import BatchBuilder, batches, record_from_line, records_from_json
from shared.agentclient.errors import InvalidRecords
from tests.support.agent_fakes import T0


def test_given_a_json_object_line_then_it_passes_through_as_that_object() -> None:
    assert record_from_line('{"Computer": "db-1", "Level": 3}\n', computer="web-1", now=T0) == {
        "Computer": "db-1",
        "Level": 3,
    }


@pytest.mark.parametrize(
    "line", ["plain text\n", "[INFO] started\r\n", '{"truncated": \n', "42\n", '  "a json string"\n']
)
def test_given_a_line_that_is_not_a_json_object_then_it_becomes_a_message_with_computer_and_time(
    line: str,
) -> None:
    record = record_from_line(line, computer="web-1", now=T0 + timedelta(hours=1))

    assert record == {
        "Message": line.rstrip("\r\n"),
        "Computer": "web-1",
        "TimeGenerated": "2026-11-22T13:00:00+00:00",
    }


@pytest.mark.parametrize("line", ["\n", "   \r\n", ""])
def test_given_an_empty_line_then_no_record(line: str) -> None:
    assert record_from_line(line, computer="web-1", now=T0) is None


def test_given_a_json_document_then_an_object_or_an_array_of_objects_are_records() -> None:
    assert records_from_json(b'{"a": 1}') == [{"a": 1}]
    assert records_from_json(b'[{"a": 1}, {"b": 2}]') == [{"a": 1}, {"b": 2}]
    for refused in (b"[1, 2]", b'"text"', b"{broken"):
        with pytest.raises(InvalidRecords):
            records_from_json(refused)


def test_given_many_records_then_each_batch_is_a_json_array_within_the_size_and_none_is_lost() -> None:
    records = [{"Seq": index, "Message": "m" * (index % 50)} for index in range(500)]

    made = list(batches(records, max_bytes=2_000))

    assert all(len(batch.json) <= 2_000 for batch in made)
    assert [r for batch in made for r in orjson.loads(batch.json)] == records
    assert sum(batch.records for batch in made) == 500
    assert len(made) > 10


def test_given_a_record_larger_than_a_batch_then_it_makes_a_batch_of_its_own() -> None:
    large = {"Message": "x" * 5_000}

    made = list(batches([{"a": 1}, large, {"b": 2}], max_bytes=1_000))

    assert [orjson.loads(batch.json) for batch in made] == [[{"a": 1}], [large], [{"b": 2}]]


def test_given_a_record_over_the_service_limit_then_it_is_dropped_with_a_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(batching, "MAX_BODY_BYTES", 100)

    made = list(batches([{"a": 1}, {"Message": "x" * 200}, {"b": 2}], max_bytes=1_000))

    assert [orjson.loads(batch.json) for batch in made] == [[{"a": 1}, {"b": 2}]]
    assert "dropped a record of" in caplog.text


def test_given_marked_records_then_a_batch_carries_the_mark_of_its_last_record() -> None:
    builder: BatchBuilder[int] = BatchBuilder(max_bytes=30)
    closed = [batch for offset in (10, 20, 30) for batch in builder.add({"Message": "0123456789"}, offset)]

    rest = list(builder.flush())

    assert [(b.records, b.mark) for b in closed + rest] == [(1, 10), (1, 20), (1, 30)]
    assert builder.pending == 0
