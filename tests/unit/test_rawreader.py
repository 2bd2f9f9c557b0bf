"""The bounded-memory reader yields exactly the records a whole parse would, each with the size of its
JSON text as received, whatever the formatting and whatever `},` the strings hold, and refuses what is
not a JSON object or array of objects."""

from __future__ import annotations

import gzip
import json
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InvalidDataFormat, PayloadTooLarge
from shared.rawreader import RecordStream
from shared.rawstore import inflate

MAX = 10 * 1024 * 1024
FIELDS = ["Computer", "m", "n", "x"]
Sample = msgspec.defstruct("Sample", [(name, Any, msgspec.UNSET) for name in FIELDS])
tricky_text = st.text(alphabet=st.sampled_from(list('ab"\\},{[] \n\u00e9')), max_size=12)
records = st.lists(
    st.dictionaries(st.sampled_from(FIELDS), tricky_text | st.integers(-(2**63), 2**63 - 1), max_size=4),
    max_size=40,
)


def read(
    body: bytes, *, window: int = 64, members: int = 1
) -> tuple[list[dict[str, Any]], list[int], RecordStream[Any]]:
    """The records read (as dicts of the fields they have), their sizes, and the stream."""
    size = max(1, len(body) // members)
    data = b"".join(gzip.compress(body[i : i + size]) for i in range(0, len(body), size)) or gzip.compress(
        b""
    )
    stream = RecordStream(data, record_type=Sample, max_bytes=MAX, window_bytes=window)
    found: list[dict[str, Any]] = []
    sizes: list[int] = []
    for chunk in stream:
        found += (
            {
                name: value
                for name, value in msgspec.structs.asdict(record).items()
                if value is not msgspec.UNSET
            }
            for record in chunk.records
        )
        sizes += chunk.sizes
    return found, sizes, stream


def text_size(record: dict[str, Any], *, indent: int | None) -> int:
    """The size of the record's text inside a json.dumps array: indented one level deeper than alone."""
    alone = json.dumps(record, indent=indent, ensure_ascii=False)
    return len(alone.encode()) + (indent or 0) * alone.count("\n")


@settings(max_examples=150, deadline=None)
@given(
    records=records, indent=st.sampled_from([None, 2]), window=st.integers(8, 200), members=st.integers(1, 3)
)
def test_given_any_records_when_read_in_windows_then_same_as_a_whole_parse(
    records: list[dict[str, Any]], indent: int | None, window: int, members: int
) -> None:
    body = json.dumps(records, indent=indent, ensure_ascii=False).encode()

    found, sizes, stream = read(body, window=window, members=members)

    assert found == records
    assert sizes == [text_size(record, indent=indent) for record in records]
    assert stream.records == len(records)
    assert stream.json_bytes == len(body)


def test_given_a_single_object_body_when_read_then_one_record_of_its_size() -> None:
    found, sizes, _ = read(b'  {"Computer": "web-1"}\n')
    assert found == [{"Computer": "web-1"}]
    assert sizes == [len(b'{"Computer": "web-1"}')]


def test_given_a_field_the_record_type_reads_holding_an_object_then_it_is_read_as_such() -> None:
    found, _, _ = read(orjson.dumps([{"Computer": {"name": "web-1"}, "other": [1, 2]}]))
    assert found == [{"Computer": {"name": "web-1"}}]


def test_given_many_records_when_read_then_windows_stay_small() -> None:
    body = orjson.dumps([{"Computer": f"h{i}", "m": "x" * 50} for i in range(5000)])
    stream = RecordStream(gzip.compress(body), record_type=Sample, max_bytes=MAX, window_bytes=4096)

    sizes = [len(chunk.records) for chunk in stream]

    assert sum(sizes) == 5000
    assert max(sizes) < 100, "each window holds about window_bytes of records, not the whole body"


@pytest.mark.parametrize(
    "body",
    [
        b"[{",
        b"[1, 2]",
        b'"text"',
        b"[{}] trailing",
        b"[{},",
        b"{} {}",
        b"\xff\xfe",
        b"",
        b'[{"x": "\xff"}]',  # not UTF-8 in a field no record type reads
        b'[{"m": 1e400}]',  # a number no double holds, in a field the record type reads
    ],
)
def test_given_not_an_array_of_objects_when_read_then_invalid_data_format(body: bytes) -> None:
    with pytest.raises(InvalidDataFormat):
        list(RecordStream(gzip.compress(body), record_type=Sample, max_bytes=MAX))


def test_given_a_non_object_in_a_later_window_then_the_error_names_its_place_in_the_blob() -> None:
    # Given 30 objects and then a number, read in windows of a few records
    body = orjson.dumps([{"m": index} for index in range(30)] + [7])

    # When read, then the error points at the blob's 31st record, not at its place in its window
    with pytest.raises(InvalidDataFormat, match=r"\$\[30\]"):
        list(RecordStream(gzip.compress(body), record_type=Sample, max_bytes=MAX, window_bytes=32))


@pytest.mark.parametrize(
    "data", [gzip.compress(b"[{}]")[:-4], b"not gzip at all", gzip.compress(b"[{}]") + b"x"]
)
def test_given_broken_gzip_when_read_then_invalid_data_format(data: bytes) -> None:
    with pytest.raises(InvalidDataFormat):
        list(RecordStream(data, record_type=Sample, max_bytes=MAX))


def test_given_a_body_inflating_past_the_limit_when_read_then_too_large_before_holding_it() -> None:
    bomb = gzip.compress(b"[" + b" " * (4 * MAX) + b"]")
    with pytest.raises(PayloadTooLarge):
        list(RecordStream(bomb, record_type=Sample, max_bytes=MAX))


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=400), members=st.integers(1, 4), piece=st.sampled_from([1, 2, 3, 7, 64, 1 << 20])
)
def test_given_any_gzip_members_and_piece_size_when_inflating_then_exact_body(
    body: bytes, members: int, piece: int
) -> None:
    size = max(1, len(body) // members)
    data = b"".join(gzip.compress(body[i : i + size]) for i in range(0, len(body), size)) or gzip.compress(
        b""
    )

    assert b"".join(inflate(data, max_bytes=MAX, piece_bytes=piece)) == body
