"""Reading a raw blob's records in bounded memory: the gzip body is inflated piece by piece, the JSON
array is cut at record boundaries into windows of about WINDOW_BYTES, and each window is parsed on its
own. Memory holds one window's records at a time, not the whole body's.

A window is parsed in two passes of msgspec, both in C: first into each record's raw JSON text (which
checks the syntax and gives the record's size as received), then the window, in one call, into a list
of the caller's record type, a msgspec Struct naming only the fields the caller reads; the other fields
are skipped, not built into dicts. That is what makes reading cheaper than a whole `json.loads`.

A cut goes after a `}` directly followed by `,` (compact and pretty-printed JSON both write `},`). Such
a pair may also stand inside a string; then the window does not parse (the string is left open), and
an earlier pair is tried, then more data. Only a body whose every `},` lies inside strings is parsed
whole, which is still bounded by the body limit.

The body's UTF-8 is checked on the way, costing no second pass. (The blob's SHA-256 is of its stored
gzip bytes, checked by the caller before reading: see shared.processing.)"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from shared.errors import InvalidDataFormat
from shared.rawstore import inflate

# A window's records (Structs and their strings, several times its bytes) stay within a core's L2
# cache: 256 KiB windows read the bench's blob about 8% faster than 1 MiB ones (best of 30 runs).
WINDOW_BYTES = 256 * 1024
INFLATE_PIECE_BYTES = 256 * 1024
_CUT = b"},"
_COMMA, _CLOSE, _OPEN = b",]["  # byte values: what a bytearray item is
_CUT_ATTEMPTS = 4
_WHITESPACE = b" \t\r\n"
_RAW_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_RAW = msgspec.json.Decoder(msgspec.Raw)
_RECORD_AT = re.compile(r"\$\[(\d+)\]")

R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class RecordWindow(Generic[R]):
    """Consecutive records of a blob, each with the size in bytes of its JSON text as received."""

    records: list[R]
    sizes: list[int]


class RecordStream(Generic[R]):
    """Iterate for windows of records of `record_type`; `records` and `json_bytes` count what was read."""

    def __init__(
        self, gzip_data: bytes, *, record_type: type[R], max_bytes: int, window_bytes: int = WINDOW_BYTES
    ) -> None:
        self._data = gzip_data
        self._record = msgspec.json.Decoder(record_type)
        self._records = msgspec.json.Decoder(list[record_type])  # type: ignore[valid-type]
        self._max_bytes = max_bytes
        self._window = window_bytes
        self._piece = min(INFLATE_PIECE_BYTES, window_bytes)
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.json_bytes = 0
        self.records = 0
        self._retry_at = 0

    def __iter__(self) -> Iterator[RecordWindow[R]]:
        buffer = bytearray()  # an array: from its `[` (or the comma that opens the next window) on
        is_array: bool | None = None  # known from the first byte that is not whitespace
        for piece in self._inflate():
            if is_array is None:
                piece = piece.lstrip(_WHITESPACE)
                if not piece:
                    continue
                is_array = piece[:1] == b"["
            buffer += piece
            if is_array and len(buffer) >= self._window:
                yield from self._windows(buffer)
        yield from (self._rest_of_array(buffer) if is_array else self._single_object(buffer))

    def _inflate(self) -> Iterator[bytes]:
        try:
            for piece in inflate(self._data, max_bytes=self._max_bytes, piece_bytes=self._piece):
                self.json_bytes += len(piece)
                self._utf8.decode(piece)
                yield piece
            self._utf8.decode(b"", True)
        except UnicodeDecodeError:
            raise InvalidDataFormat("The blob is not UTF-8 text.") from None

    def _windows(self, buffer: bytearray) -> Iterator[RecordWindow[R]]:
        """Cuts whole records of about one window each off the front of `buffer`."""
        while len(buffer) >= max(self._window, self._retry_at):
            window = self._cut(buffer)
            if window is None:
                # No cut parsed: wait for another window of data before trying again, so a body
                # whose `},` all lie in strings costs a few parses per window, not per piece.
                self._retry_at = len(buffer) + self._window
                return
            self._retry_at = 0
            yield window

    def _cut(self, buffer: bytearray) -> RecordWindow[R] | None:
        """The comma after a record's `}` becomes, in place, the `]` that closes this window's array;
        once that parses, the `[` that opens the next window's."""
        for limit in (self._window, len(buffer)):  # a record longer than a window: cut after it
            end = limit
            for _ in range(_CUT_ATTEMPTS):
                cut = buffer.rfind(_CUT, 0, end)
                if cut < 0:
                    break
                comma = cut + 1
                buffer[comma] = _CLOSE
                window = self._parse(buffer, comma + 1, strict=False)
                if window is not None:
                    buffer[comma] = _OPEN
                    del buffer[:comma]
                    return window
                buffer[comma] = _COMMA
                end = cut
        return None

    def _rest_of_array(self, buffer: bytearray) -> Iterator[RecordWindow[R]]:
        window = self._parse(buffer, len(buffer), strict=True)
        if window is not None and window.records:
            yield window

    def _single_object(self, buffer: bytearray) -> Iterator[RecordWindow[R]]:
        """The Data Collector API also takes one object as the whole body."""
        try:
            raw = _RAW.decode(buffer)
        except msgspec.DecodeError:
            raise InvalidDataFormat("The blob is not valid JSON.") from None
        yield self._counted([self._typed(self._record, raw)], [len(raw)])

    def _parse(self, buffer: bytearray, end: int, *, strict: bool) -> RecordWindow[R] | None:
        """The records of the array `buffer[:end]`. None when it does not parse and `strict` is off
        (the cut was inside a string)."""
        text = buffer[:end]  # a copy, as the texts of _RAW_ARRAY's records view what they decode
        try:
            sizes = list(map(len, _RAW_ARRAY.decode(text)))
        except msgspec.DecodeError:
            if strict:
                raise InvalidDataFormat("The blob is not valid JSON.") from None
            return None
        return self._counted(self._typed(self._records, text), sizes)

    def _typed(self, decoder: msgspec.json.Decoder[Any], text: bytearray | msgspec.Raw) -> Any:
        """Syntactically valid JSON `text` decoded by `decoder`: each record must be an object whose
        fields this stream's record type reads hold valid values. An error's `$[i]` is the record's
        position in the blob (the decoder counts from the window's first record)."""
        try:
            return decoder.decode(text)
        except msgspec.DecodeError as error:
            where = _RECORD_AT.sub(lambda at: f"$[{int(at[1]) + self.records}]", str(error))
            raise InvalidDataFormat(
                f"The blob must be a JSON object or array of objects ({where})."
            ) from None

    def _counted(self, records: list[R], sizes: list[int]) -> RecordWindow[R]:
        self.records += len(records)
        return RecordWindow(records, sizes)
