"""Reading a raw blob's records in bounded memory: the gzip body is inflated piece by piece, the JSON
array is cut at record boundaries into windows of about WINDOW_BYTES, and each window is parsed on its
own with orjson. Memory holds one window's records at a time, not the whole body's.

A cut goes after a `}` directly followed by `,` (compact and pretty-printed JSON both write `},`). Such
a pair may also stand inside a string; then the window does not parse (the string is left open), and
an earlier pair is tried, then more data. Only a body whose every `},` lies inside strings is parsed
whole, which is still bounded by the body limit.

The SHA-256 of the inflated body is computed on the way, so its check costs no second pass; a caller
must not commit what it aggregated before `RecordStream.finish()` confirmed it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from shared.errors import CorruptBlob, InvalidDataFormat
from shared.rawstore import inflate

WINDOW_BYTES = 1024 * 1024
INFLATE_PIECE_BYTES = 256 * 1024
_CUT = b"},"
_CUT_ATTEMPTS = 4
_WHITESPACE = b" \t\r\n"


class RecordStream:
    """Iterate for lists of records (dicts); then `finish(expected_sha256)`."""

    def __init__(self, gzip_data: bytes, *, max_bytes: int, window_bytes: int = WINDOW_BYTES) -> None:
        self._data = gzip_data
        self._max_bytes = max_bytes
        self._window = window_bytes
        self._piece = min(INFLATE_PIECE_BYTES, window_bytes)
        self._sha256 = hashlib.sha256()
        self.json_bytes = 0
        self.records = 0
        self._retry_at = 0
        self._done = False

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        buffer = bytearray()
        is_array: bool | None = None  # known from the first byte that is not whitespace
        for piece in self._inflate():
            if is_array is None:
                piece = piece.lstrip(_WHITESPACE)
                if not piece:
                    continue
                is_array = piece[:1] == b"["
                if is_array:
                    piece = piece[1:]  # the buffer holds what is inside the array
            buffer += piece
            if is_array and len(buffer) >= self._window:
                yield from self._windows(buffer)
        yield from (self._rest_of_array(buffer) if is_array else self._single_object(buffer))
        self._done = True

    def finish(self, expected_sha256: str | None) -> str:
        """The body's SHA-256; CorruptBlob if it is not the one its metadata promised."""
        if not self._done:
            raise RuntimeError("finish() before the records were all read")
        digest = self._sha256.hexdigest()
        if digest != expected_sha256:
            raise CorruptBlob(f"the content's sha256 {digest} is not the {expected_sha256} of its metadata")
        return digest

    def _inflate(self) -> Iterator[bytes]:
        for piece in inflate(self._data, max_bytes=self._max_bytes, piece_bytes=self._piece):
            self.json_bytes += len(piece)
            self._sha256.update(piece)
            yield piece

    def _windows(self, buffer: bytearray) -> Iterator[list[dict[str, Any]]]:
        """Cuts whole records of about one window each off the front of `buffer` (the inside of the
        array, possibly starting with the comma that followed the previous cut)."""
        while len(buffer) >= max(self._window, self._retry_at):
            records = self._cut(buffer)
            if records is None:
                # No cut parsed: wait for another window of data before trying again, so a body
                # whose `},` all lie in strings costs a few parses per window, not per piece.
                self._retry_at = len(buffer) + self._window
                return
            self._retry_at = 0
            yield records

    def _cut(self, buffer: bytearray) -> list[dict[str, Any]] | None:
        for limit in (self._window, len(buffer)):  # a record longer than a window: cut after it
            end = limit
            for _ in range(_CUT_ATTEMPTS):
                cut = buffer.rfind(_CUT, 0, end)
                if cut < 0:
                    break
                records = self._parse(_after_comma(bytes(buffer[: cut + 1])), strict=False)
                if records is not None:
                    del buffer[: cut + 1]
                    return records
                end = cut
        return None

    def _rest_of_array(self, buffer: bytearray) -> Iterator[list[dict[str, Any]]]:
        text = bytes(buffer).rstrip(_WHITESPACE)
        if not text.endswith(b"]"):
            raise InvalidDataFormat("The blob's JSON array is not closed.")
        records = self._parse(_after_comma(text[:-1]), strict=True)
        if records:
            yield records

    def _single_object(self, buffer: bytearray) -> Iterator[list[dict[str, Any]]]:
        """The Data Collector API also takes one object as the whole body."""
        try:
            document = orjson.loads(bytes(buffer))
        except orjson.JSONDecodeError:
            raise InvalidDataFormat("The blob is not valid JSON.") from None
        if not isinstance(document, dict):
            raise InvalidDataFormat("The blob is not a JSON object or array of objects.")
        self.records += 1
        yield [document]

    def _parse(self, body: bytes, *, strict: bool) -> list[dict[str, Any]] | None:
        """`body` is the inside of an array: records separated by commas. None when it does not parse
        and `strict` is off (the cut was inside a string)."""
        if not body.strip(_WHITESPACE):
            return []
        try:
            records: list[dict[str, Any]] = orjson.loads(b"[" + body + b"]")
        except orjson.JSONDecodeError:
            if strict:
                raise InvalidDataFormat("The blob is not valid JSON.") from None
            return None
        if not all(type(record) is dict for record in records):
            raise InvalidDataFormat("Every element of the blob's JSON array must be an object.")
        self.records += len(records)
        return records


def _after_comma(body: bytes) -> bytes:
    """Drops the comma that separated this window from the previous one."""
    stripped = body.lstrip(_WHITESPACE)
    return stripped[1:] if stripped.startswith(b",") else stripped
