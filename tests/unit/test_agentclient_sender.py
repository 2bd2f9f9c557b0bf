"""Delivery on an injected clock and a scripted transport, with a real spool: the retry schedule
(8 minutes for 2 hours by default, both configurable), Retry-After, the order of batches, which
answers are final, and what is posted."""

from __future__ import annotations

import gzip
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from shared.agentclient.auth import ClientCertificate
from shared.agentclient.config import RetryPolicy
from shared.agentclient.sender import RoundReport, Sender, retry_after
from shared.agentclient.spool import BatchCount, Spool
from shared.agentclient.transport import HttpAnswer
from shared.sharedkey import rfc1123
from tests.support.agent_fakes import OK, T0, FakeClock, ScriptedTransport

WORKSPACE = "00000000-0000-4000-8000-000000000001"
URL = f"https://sluice.example/api/workspaces/{WORKSPACE}/logs?api-version=2016-04-01"
DOWN = ConnectionRefusedError("connection refused")
DEFAULT_RETRY = RetryPolicy()  # 8 minutes, 2 hours


class Stack:
    def __init__(self, tmp_path: Path, *script: HttpAnswer | OSError, retry: RetryPolicy = DEFAULT_RETRY):
        self.clock = FakeClock()
        self.spool = Spool(tmp_path / "spool", max_bytes=10**6, clock=self.clock)
        self.transport = ScriptedTransport(self.clock, *script)
        self.sender = Sender(
            spool=self.spool,
            transport=self.transport,
            auth=ClientCertificate(URL),
            workspace_id=WORKSPACE,
            retry=retry,
            clock=self.clock,
        )

    def take(self, text: str, *, records: int = 1, workspace_id: str = WORKSPACE) -> None:
        body = gzip.compress(f'[{{"Message": "{text}"}}]'.encode())
        self.spool.take(workspace_id=workspace_id, log_type="App", records=records, body=body)

    def run_until_done(self) -> RoundReport:
        """Calls deliver() at every time it asks for, as the agent's loop does, until it is done."""
        total = RoundReport()
        while True:
            total += self.sender.deliver()
            if total.retry_at is None:
                return total
            self.clock.now = total.retry_at

    def posted_messages(self) -> list[str]:
        return [a.records()[0]["Message"] for a in self.transport.attempts]


def minutes(*values: float) -> list[timedelta]:
    return [timedelta(minutes=v) for v in values]


def test_given_the_endpoint_down_for_good_then_attempts_every_8_minutes_and_the_batch_is_dropped_at_2_hours(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stack = Stack(tmp_path)
    stack.transport.otherwise = DOWN
    stack.take("lost", records=5)

    with caplog.at_level(logging.WARNING, logger="sluice.agent.sender"):
        report = stack.run_until_done()

    assert stack.transport.attempt_times == minutes(*range(0, 121, 8))  # 0, 8, ..., 120: 16 attempts
    assert report.expired == BatchCount(1, 5)
    assert stack.spool.oldest() is None
    assert "dropped 1 batches (5 records) older than the retry window of 2:00:00" in caplog.text


def test_given_the_endpoint_back_after_an_hour_then_the_batch_is_delivered_once_at_the_next_attempt(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path, *[DOWN] * 8)  # down at 0, 8, ..., 56 minutes
    stack.take("kept")

    report = stack.run_until_done()

    assert stack.transport.attempt_times == minutes(*range(0, 65, 8))
    assert report.delivered == BatchCount(1, 1)
    assert stack.posted_messages() == ["kept"] * 9
    assert stack.spool.oldest() is None


def test_given_another_interval_and_window_then_the_schedule_follows_them(tmp_path: Path) -> None:
    stack = Stack(tmp_path, retry=RetryPolicy(interval=timedelta(minutes=1), window=timedelta(minutes=5)))
    stack.transport.otherwise = HttpAnswer(500)
    stack.take("lost")

    stack.run_until_done()

    assert stack.transport.attempt_times == minutes(0, 1, 2, 3, 4, 5)


def test_given_a_retry_pending_when_delivery_is_asked_early_then_nothing_is_sent_until_it_is_due(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path, DOWN)
    stack.take("waits")
    first = stack.sender.deliver()

    stack.take("newer")  # a new batch wakes the sender up, but the schedule holds
    stack.clock.advance(timedelta(minutes=7, seconds=59))
    early = stack.sender.deliver()
    stack.clock.advance(timedelta(seconds=1))
    due = stack.sender.deliver()

    assert first.retry_at == early.retry_at == T0 + timedelta(minutes=8)
    assert early.delivered == BatchCount()
    assert due == RoundReport(delivered=BatchCount(2, 2))
    assert stack.posted_messages() == ["waits", "waits", "newer"]


@pytest.mark.parametrize(
    ("answer", "wait"),
    [
        pytest.param(HttpAnswer(429, {"retry-after": "30"}), timedelta(seconds=30), id="429-seconds"),
        pytest.param(HttpAnswer(503, {"retry-after": "3600"}), timedelta(hours=1), id="503-longer-than-8m"),
        pytest.param(
            HttpAnswer(503, {"retry-after": rfc1123(T0 + timedelta(seconds=90))}),
            timedelta(seconds=90),
            id="503-http-date",
        ),
        pytest.param(HttpAnswer(429, {"retry-after": "0"}), timedelta(seconds=1), id="zero-is-one-second"),
        pytest.param(
            HttpAnswer(429, {"retry-after": "100000000000000"}), timedelta(days=1), id="huge-is-a-day"
        ),
        pytest.param(
            HttpAnswer(503, {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}),
            timedelta(days=1),
            id="far-http-date-is-a-day",
        ),
        pytest.param(HttpAnswer(429), timedelta(minutes=8), id="429-without-it"),
        pytest.param(HttpAnswer(503, {"retry-after": "soon"}), timedelta(minutes=8), id="unreadable"),
    ],
)
def test_given_a_429_or_503_then_the_next_attempt_comes_after_its_retry_after(
    tmp_path: Path, answer: HttpAnswer, wait: timedelta
) -> None:
    stack = Stack(tmp_path, answer)
    stack.take("throttled")

    stack.run_until_done()

    assert stack.transport.attempt_times == [timedelta(0), wait]


def test_given_a_retry_after_beyond_the_window_then_the_batch_is_dropped_at_the_next_failure(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path, HttpAnswer(429, {"retry-after": str(3 * 3600)}), HttpAnswer(429))
    stack.take("capped for the day", records=3)

    report = stack.run_until_done()

    assert stack.transport.attempt_times == [timedelta(0), timedelta(hours=3)]
    assert report.expired == BatchCount(1, 3)


@pytest.mark.parametrize("status", [400, 413, 414, 415, 422])
def test_given_a_refused_content_then_the_batch_is_moved_aside_with_the_reason_and_the_next_one_goes_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    refusal = HttpAnswer(
        status,
        {"x-ms-error-code": "InvalidLogType"},
        b'{"Error": "InvalidLogType", "Message": "Log-Type may contain only letters"}',
    )
    stack = Stack(tmp_path, refusal)
    stack.take("refused")
    stack.take("next")

    with caplog.at_level(logging.ERROR, logger="sluice.agent.sender"):
        report = stack.run_until_done()

    assert report == RoundReport(delivered=BatchCount(1, 1), refused=BatchCount(1, 1))
    assert stack.posted_messages() == ["refused", "next"]
    rejected = list((stack.spool.directory / "rejected").iterdir())
    assert [p.name.split(".", 1)[1] for p in rejected] == [f"{status}.batch"]
    assert f"{status} InvalidLogType: Log-Type may contain only letters" in caplog.text


@pytest.mark.parametrize("status", [404, 408, 409, 429, 500, 502, 503, 504])
def test_given_a_transient_status_then_the_batch_is_kept_and_retried(tmp_path: Path, status: int) -> None:
    stack = Stack(tmp_path, HttpAnswer(status))
    stack.take("kept")

    report = stack.run_until_done()

    assert report.delivered == BatchCount(1, 1)
    assert stack.transport.attempt_times == minutes(0, 8)


@pytest.mark.parametrize(
    ("status", "code"), [(401, "InvalidAuthenticationToken"), (403, "InvalidAuthorization")]
)
def test_given_the_credentials_refused_then_the_batches_are_kept_and_retried_and_the_error_says_what_to_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int, code: str
) -> None:
    # A rotated shared key, an expired certificate or a clock 15 minutes off: each attempt is refused
    # until someone fixes it on this machine, here after the third one.
    refusal = HttpAnswer(status, {"x-ms-error-code": code})
    stack = Stack(tmp_path, refusal, refusal, refusal)
    for name in ("one", "two", "three"):
        stack.take(name)

    with caplog.at_level(logging.ERROR, logger="sluice.agent.sender"):
        report = stack.run_until_done()

    assert stack.transport.attempt_times == minutes(0, 8, 16, 24, 24, 24)
    assert stack.posted_messages() == ["one", "one", "one", "one", "two", "three"]
    assert report == RoundReport(delivered=BatchCount(3, 3))
    assert stack.spool.summary().rejected_batches == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    for what_to_check in (f"{status} {code}", "shared key was rotated", "certificate expired", "clock"):
        assert all(what_to_check in message for message in errors)


def test_given_a_failing_batch_then_the_batches_behind_it_wait_and_are_sent_in_order(tmp_path: Path) -> None:
    stack = Stack(tmp_path, OK, HttpAnswer(503), DOWN)
    for name in ("one", "two", "three", "four"):
        stack.take(name)

    stack.run_until_done()

    assert stack.posted_messages() == ["one", "two", "two", "two", "three", "four"]


def test_given_an_outage_longer_than_the_window_then_only_the_batches_past_it_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stack = Stack(tmp_path, *[DOWN] * 10)  # attempts at 50, 58, ..., 122 minutes fail; 130 succeeds
    stack.take("old", records=2)
    stack.clock.advance(timedelta(minutes=50))
    stack.take("young", records=3)

    with caplog.at_level(logging.WARNING, logger="sluice.agent.sender"):
        report = stack.run_until_done()

    assert (report.expired, report.delivered) == (BatchCount(1, 2), BatchCount(1, 3))
    assert stack.posted_messages() == ["old"] * 10 + ["young"]
    assert stack.transport.attempts[-1].at == T0 + timedelta(minutes=130)
    assert "dropped 1 batches (2 records) older than the retry window" in caplog.text


def test_given_a_batch_taken_for_another_workspace_then_it_is_never_posted_and_is_moved_aside(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path)
    stack.take("elsewhere", workspace_id="00000000-0000-4000-8000-000000000002")
    stack.take("here")

    report = stack.run_until_done()

    assert stack.posted_messages() == ["here"]
    assert report.refused == BatchCount(1, 1)
    assert [p.name.split(".", 1)[1] for p in (stack.spool.directory / "rejected").iterdir()] == [
        "other-workspace.batch"
    ]


def test_given_a_batch_then_it_is_posted_as_spooled_with_the_data_collector_headers(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.take("hello")
    spooled = stack.spool.oldest()
    assert spooled is not None
    body = stack.spool.body(spooled)

    stack.run_until_done()

    (attempt,) = stack.transport.attempts
    assert (attempt.url, attempt.body) == (URL, body)
    assert attempt.headers == {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Log-Type": "App",
        "time-generated-field": "TimeGenerated",
    }


def test_given_retry_after_values_then_they_are_read_as_seconds_or_http_dates() -> None:
    assert retry_after(HttpAnswer(503, {"retry-after": " 12 "}), now=T0) == timedelta(seconds=12)
    assert retry_after(
        HttpAnswer(503, {"retry-after": rfc1123(T0 - timedelta(hours=1))}), now=T0
    ) == timedelta(seconds=1)
    assert retry_after(HttpAnswer(503, {"retry-after": "9" * 5000}), now=T0) == timedelta(days=1)
    assert retry_after(HttpAnswer(503, {"retry-after": "-5"}), now=T0) is None
    assert retry_after(HttpAnswer(503), now=T0) is None
