"""The query API's core: `GET /api/workspaces/{workspace_id}/{usage|perf|events|syslog|summary}` and the
`sluice query` / `sluice summary` commands. Parameters are parsed and checked here, every page is read
in a SQL reader session bound to the workspace (shared.sql.ReaderSession: row-level security where the
engine has it), and rows are shaped into the API's JSON. The adapters (reader sessions, the daily
counters, the continuation key) are passed in.

Pagination is by keyset: rows come in (time, key columns) order and a page's continuation names its
last row's key, so a page costs one statement however deep it is, and rows written meanwhile never
shift a page. The continuation is HMAC-signed and bound to the workspace and the query's parameters:
used with another workspace or other parameters it is refused (400), and it cannot be edited to start
anywhere else. It carries the query's resolved window, so pages of a default (last 24 h) query stay on
the window of the first page."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets as token_source
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import orjson

from shared.errors import InvalidQuery, NotFound
from shared.limits import DailyCount, utc_day
from shared.plans import AGGREGATE_RETENTION_DAYS, Plan, PlanLimits
from shared.workspaces import Workspace

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=400)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_FILTER_LENGTH = 256  # the aggregate tables' widest key column
SUMMARY = "summary"
CONTINUATION = "continuation"
CONTINUATION_KEY_SECRET = "query-continuation-key"  # noqa: S105 - a secret's name
_TOKEN_VERSION = 1
# Control characters never name a computer or a counter; lone surrogates cannot be encoded for SQL.
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


class Aggregate(StrEnum):
    USAGE = "usage"
    PERF = "perf"
    EVENTS = "events"
    SYSLOG = "syslog"


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class Shape:
    """An aggregate as the API shows it: its key columns (after the time bucket, in sort order), its
    filters (query parameter → key column) and its value columns, in the statement's column order."""

    keys: tuple[str, ...]
    filters: Mapping[str, str]
    values: tuple[str, ...]
    integer_keys: frozenset[str] = frozenset()


SHAPES: dict[Aggregate, Shape] = {
    Aggregate.USAGE: Shape(
        keys=("log_type", "computer"),
        filters={"log_type": "log_type", "computer": "computer"},
        values=("records", "bytes"),
    ),
    Aggregate.PERF: Shape(
        keys=("computer", "object_name", "counter_name", "instance_name"),
        filters={
            "computer": "computer",
            "object": "object_name",
            "counter": "counter_name",
            "instance": "instance_name",
        },
        values=("samples", "total", "minimum", "maximum"),
    ),
    Aggregate.EVENTS: Shape(
        keys=("log_type", "computer", "event_id", "level"),
        filters={"log_type": "log_type", "computer": "computer", "event_id": "event_id", "level": "level"},
        values=("events",),
        integer_keys=frozenset({"event_id"}),
    ),
    Aggregate.SYSLOG: Shape(
        keys=("computer", "facility", "severity"),
        filters={"computer": "computer", "facility": "facility", "severity": "severity"},
        values=("messages",),
    ),
}
COMMON_PARAMETERS = frozenset({"from", "to", "granularity", "limit", CONTINUATION})


@dataclass(frozen=True, slots=True)
class Query:
    aggregate: Aggregate
    granularity: Granularity
    start: datetime  # inclusive
    end: datetime  # exclusive
    filters: Mapping[str, str | int]  # key column → value
    limit: int
    after: tuple[Any, ...] | None  # the previous page's last (time, *keys); None: the first page


class ReaderPages(Protocol):
    """A reader session bound to one workspace (shared.sql.ReaderSession)."""

    def query_page(self, aggregate: str, values: Mapping[str, Any]) -> list[tuple[Any, ...]]: ...


class DailyCounters(Protocol):
    def read(self, workspace_id: str, day: date) -> DailyCount: ...


def aggregate_of(segment: str) -> Aggregate:
    """The path segment's aggregate; NotFound (404) for any other segment."""
    try:
        return Aggregate(segment)
    except ValueError:
        raise NotFound(
            f"There is no {segment[:50]!r} here: use usage, perf, events, syslog or summary."
        ) from None


class SecretStore(Protocol):
    def get_secret(self, name: str) -> str:
        """Raises NotFound."""

    def set_secret(self, name: str, value: str) -> None: ...


def continuation_key(secrets: SecretStore) -> bytes:
    """The HMAC key of continuation tokens, shared by every instance through the secret store and made
    by the first that needs it. Should two make it at once, both read back the one that stayed."""
    try:
        return secrets.get_secret(CONTINUATION_KEY_SECRET).encode("ascii")
    except NotFound:
        secrets.set_secret(CONTINUATION_KEY_SECRET, token_source.token_urlsafe(32))
        return secrets.get_secret(CONTINUATION_KEY_SECRET).encode("ascii")


class ContinuationSigner:
    """Makes and checks continuation tokens: base64url(JSON payload) "." base64url(HMAC-SHA256). The key
    is loaded on first use, so only the query API's instances ever ask the secret store for it."""

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._load_key = key
        self._key: bytes | None = None

    def sign(self, payload: Mapping[str, Any]) -> str:
        body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def verify(self, token: str) -> dict[str, Any]:
        """The payload of a token this signer made; InvalidQuery for anything else."""
        encoded, _, mac = token.partition(".")
        try:
            body, signature = _unb64(encoded), _unb64(mac)
        except (binascii.Error, ValueError):
            raise _bad_continuation() from None
        if not hmac.compare_digest(signature, self._mac(body)):
            raise _bad_continuation()
        payload = orjson.loads(body)
        if not isinstance(payload, dict) or payload.get("v") != _TOKEN_VERSION:
            raise _bad_continuation()
        return payload

    def _mac(self, body: bytes) -> bytes:
        if self._key is None:
            self._key = self._load_key()
        return hmac.new(self._key, body, hashlib.sha256).digest()


def parse_query(
    workspace_id: str,
    aggregate: Aggregate,
    params: Mapping[str, str],
    *,
    now: datetime,
    signer: ContinuationSigner,
) -> Query:
    """The request's parameters as a Query; InvalidQuery (400) naming the first bad one."""
    shape = SHAPES[aggregate]
    unknown = sorted(set(params) - COMMON_PARAMETERS - set(shape.filters))
    if unknown:
        allowed = ", ".join(sorted(COMMON_PARAMETERS | set(shape.filters)))
        raise InvalidQuery(f"Unknown parameter {unknown[0][:50]!r} for {aggregate}; allowed: {allowed}.")
    granularity = _granularity(params.get("granularity"))
    filters = {
        column: _filter_value(name, params[name], integer=column in shape.integer_keys)
        for name, column in shape.filters.items()
        if name in params
    }
    limit = _limit(params.get("limit"))
    token = params.get(CONTINUATION)
    if token is None:
        start, end = _window(params.get("from"), params.get("to"), now=now)
        return Query(aggregate, granularity, start, end, filters, limit, after=None)
    payload = signer.verify(token)
    if payload.get("b") != _binding(workspace_id, aggregate, params):
        raise InvalidQuery(
            "The continuation token belongs to another workspace or query: send it with the same "
            "parameters as the page it came from."
        )
    try:
        start, end = _instant(payload["f"]), _instant(payload["t"])
        after = (_instant(payload["k"][0]), *payload["k"][1:])
    except (KeyError, IndexError, TypeError, ValueError):
        raise _bad_continuation() from None
    return Query(aggregate, granularity, start, end, filters, limit, after=after)


def continuation_for(
    workspace_id: str,
    query: Query,
    params: Mapping[str, str],
    last_key: Sequence[Any],
    *,
    signer: ContinuationSigner,
) -> str:
    return signer.sign(
        {
            "v": _TOKEN_VERSION,
            "b": _binding(workspace_id, query.aggregate, params),
            "f": query.start.isoformat(),
            "t": query.end.isoformat(),
            "k": [last_key[0].isoformat(), *last_key[1:]],
        }
    )


def statement_values(query: Query) -> dict[str, Any]:
    """The values the `query_{aggregate}` statements bind (shared/sql/*/query_*.sql), the workspace
    aside (the reader session adds its own): `key_N` filters the Nth key column (None: any value),
    `after_N` is its value in the previous page's last key. One row more than the page: whether there
    is a next one."""
    shape = SHAPES[query.aggregate]
    start = query.start if query.after is None else max(query.start, query.after[0])
    values: dict[str, Any] = {
        "granularity": query.granularity.value,
        "from": start,
        "to": query.end,
        "limit": query.limit + 1,
        "after_time": None if query.after is None else query.after[0],
    }
    for index, column in enumerate(shape.keys, start=1):
        values[f"key_{index}"] = query.filters.get(column)
        values[f"after_{index}"] = None if query.after is None else query.after[index]
    return values


def shape_row(aggregate: Aggregate, row: Sequence[Any]) -> dict[str, Any]:
    shape = SHAPES[aggregate]
    keys = row[1 : 1 + len(shape.keys)]
    shaped: dict[str, Any] = {"time": row[0].isoformat()}
    for column, value in zip(shape.keys, keys, strict=True):
        shaped[column] = int(value) if column in shape.integer_keys else str(value)
    values = row[1 + len(shape.keys) :]
    if aggregate is Aggregate.PERF:
        samples, total, minimum, maximum = values
        shaped.update(
            samples=int(samples),
            total=float(total),
            minimum=float(minimum),
            maximum=float(maximum),
            average=float(total) / int(samples) if int(samples) else None,
        )
    else:
        shaped.update({column: int(value) for column, value in zip(shape.values, values, strict=True)})
    return shaped


class Queries:
    """Reads a workspace's aggregates and summary; who may ask is settled before (shared.readers)."""

    def __init__(
        self,
        *,
        readers: Callable[[str], AbstractContextManager[ReaderPages]],
        counters: DailyCounters,
        plans: Mapping[Plan, PlanLimits],
        signer: ContinuationSigner,
        clock: Callable[[], datetime],
    ) -> None:
        self._readers = readers
        self._counters = counters
        self._plans = plans
        self._signer = signer
        self._clock = clock

    def answer(
        self, resource: str, params: Mapping[str, str], *, authenticate: Callable[[], Workspace]
    ) -> dict[str, Any]:
        """The HTTP API's answer for `/api/workspaces/{id}/{resource}`: an unknown resource is a 404
        before anything else (it tells nothing of workspaces), then the caller must be a reader (403),
        then the parameters must hold (400)."""
        aggregate = None if resource == SUMMARY else aggregate_of(resource)
        workspace = authenticate()
        if aggregate is None:
            return self.summary(workspace)
        return self.page(workspace.workspace_id, aggregate, params)

    def page(self, workspace_id: str, aggregate: Aggregate, params: Mapping[str, str]) -> dict[str, Any]:
        query = parse_query(workspace_id, aggregate, params, now=self._clock(), signer=self._signer)
        with self._readers(workspace_id) as reader:
            fetched = reader.query_page(aggregate.value, statement_values(query))
        page = fetched[: query.limit]
        continuation = None
        if len(fetched) > query.limit:
            last = page[-1]
            key = (last[0], *last[1 : 1 + len(SHAPES[aggregate].keys)])
            continuation = continuation_for(workspace_id, query, params, key, signer=self._signer)
        return {
            "workspace_id": workspace_id,
            "aggregate": aggregate.value,
            "granularity": query.granularity.value,
            "from": query.start.isoformat(),
            "to": query.end.isoformat(),
            "rows": [shape_row(aggregate, row) for row in page],
            CONTINUATION: continuation,
        }

    def summary(self, workspace: Workspace) -> dict[str, Any]:
        limits = self._plans[workspace.plan]
        today = utc_day(self._clock())
        return {
            "workspace_id": workspace.workspace_id,
            "state": workspace.state.value,
            "plan": workspace.plan.value,
            "raw_retention_days": limits.raw_retention_days,
            "aggregate_retention_days": AGGREGATE_RETENTION_DAYS,
            "daily_cap_bytes": limits.daily_cap_bytes,
            "today_bytes": self._counters.read(workspace.workspace_id, today).bytes,
            "today": today.isoformat(),
        }


def _binding(workspace_id: str, aggregate: Aggregate, params: Mapping[str, str]) -> str:
    """What a continuation is good for: this workspace and these parameters (but the page size, which
    a client may change between pages)."""
    bound = sorted((k, v) for k, v in params.items() if k not in (CONTINUATION, "limit"))
    document = orjson.dumps([workspace_id, aggregate.value, bound])
    return hashlib.sha256(document).hexdigest()[:32]


def _granularity(value: str | None) -> Granularity:
    try:
        return Granularity(value or Granularity.HOUR.value)
    except ValueError:
        raise InvalidQuery("granularity must be hour or day.") from None


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(value)


def _filter_value(name: str, value: str, *, integer: bool) -> str | int:
    if integer:
        if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 11:
            raise InvalidQuery(f"{name} must be an integer.")
        number = int(value)
        if not -(2**31) <= number < 2**31:
            raise InvalidQuery(f"{name} must be a 32-bit integer.")
        return number
    if not value or len(value) > MAX_FILTER_LENGTH or _CONTROL.search(value):
        raise InvalidQuery(f"{name} must be 1 to {MAX_FILTER_LENGTH} characters, none a control character.")
    return value


def _window(start_text: str | None, end_text: str | None, *, now: datetime) -> tuple[datetime, datetime]:
    end = (
        _instant(end_text, name="to") if end_text is not None else now.astimezone(UTC).replace(microsecond=0)
    )
    start = _instant(start_text, name="from") if start_text is not None else end - DEFAULT_WINDOW
    if start >= end:
        raise InvalidQuery("from must be before to.")
    if end - start > MAX_WINDOW:
        raise InvalidQuery(f"from and to may be at most {MAX_WINDOW.days} days apart.")
    return start, end


def _instant(text: str, *, name: str = "time") -> datetime:
    """An ISO 8601 time; one without an offset is UTC. Seconds are the finest the API keeps."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidQuery(f"{name} must be an ISO 8601 time, e.g. 2024-05-01T00:00:00Z.") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment.year < 2000 or moment.year > 9000:  # also keeps the window arithmetic clear of overflow
        raise InvalidQuery(f"{name} must be between the years 2000 and 9000.")
    return moment.replace(microsecond=0)


def _bad_continuation() -> InvalidQuery:
    return InvalidQuery("The continuation token is not one this service issued.")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
