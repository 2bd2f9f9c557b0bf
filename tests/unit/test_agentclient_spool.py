"""The agent's spool on a real directory: what reaches the disk and in which order (recorded at the
system calls), what a crash at each step leaves, the cap with oldest-first drops, and the order and
names of batches."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from shared.agentclient.spool import BatchCount, Spool
from tests.support.agent_fakes import FakeClock

WORKSPACE = "00000000-0000-4000-8000-000000000001"


def take(spool: Spool, body: bytes = b"x" * 100, *, records: int = 1, log_type: str = "App") -> bool:
    return spool.take(workspace_id=WORKSPACE, log_type=log_type, records=records, body=body)


def pending_bodies(spool: Spool) -> list[bytes]:
    bodies = []
    while (batch := spool.oldest()) is not None:
        bodies.append(spool.body(batch))
        spool.remove(batch)
    return bodies


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def syscalls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every fsync (of the file or directory it names) and rename, in order, as they happen."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append(("rename", f"{Path(source).name} -> {target}"))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_given_a_batch_when_taken_then_file_fsync_then_rename_then_directory_fsync_all_before_it_returns(
    tmp_path: Path, clock: FakeClock, syscalls: list[tuple[str, str]]
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000, clock=clock)
    syscalls.clear()

    assert take(spool, b"gzip body")

    batch = spool.oldest()
    assert batch is not None
    (fsync_file, temporary), (rename, renamed), (fsync_dir, directory) = syscalls
    assert (fsync_file, rename, fsync_dir) == ("fsync", "rename", "fsync")
    assert Path(temporary).parent == spool.directory and Path(temporary).name.startswith(".tmp-")
    assert renamed == f"{Path(temporary).name} -> {batch.path}"
    assert directory == str(spool.directory)
    assert spool.body(batch) == b"gzip body"


def _crash_at(monkeypatch: pytest.MonkeyPatch, name: str, *, nth: int = 1) -> None:
    """The nth call of os.<name> raises, as if the process died right there."""
    real: Callable[..., object] = getattr(os, name)
    seen = 0

    def crashing(*args: object) -> object:
        nonlocal seen
        seen += 1
        if seen == nth:
            raise OSError(f"crash in {name}")
        return real(*args)

    monkeypatch.setattr(os, name, crashing)


@pytest.mark.parametrize(
    ("step", "nth", "batch_survives"),
    [
        pytest.param("fsync", 1, False, id="at-the-file-fsync"),
        pytest.param("replace", 1, False, id="at-the-rename"),
        pytest.param("fsync", 2, True, id="at-the-directory-fsync"),
    ],
)
def test_given_a_crash_at_any_step_of_a_take_then_the_spool_holds_the_whole_batch_or_none_and_no_leftover(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    nth: int,
    batch_survives: bool,
) -> None:
    directory = tmp_path / "spool"
    take(Spool(directory, max_bytes=10_000, clock=clock), b"earlier")
    _crash_at(monkeypatch, step, nth=nth)

    with pytest.raises(OSError, match="crash"):
        take(Spool(directory, max_bytes=10_000, clock=clock), b"the batch")
    monkeypatch.undo()

    reopened = Spool(directory, max_bytes=10_000, clock=clock)
    assert pending_bodies(reopened) == ([b"earlier", b"the batch"] if batch_survives else [b"earlier"])
    assert list(directory.glob(".tmp-*")) == []


def test_given_a_temporary_file_left_by_a_kill_then_reopening_removes_it_and_it_is_no_batch(
    tmp_path: Path, clock: FakeClock
) -> None:
    directory = tmp_path / "spool"
    take(Spool(directory, max_bytes=10_000, clock=clock), b"taken")
    (directory / ".tmp-abc123").write_bytes(b'{"v": 1, "workspace_id": "half')

    reopened = Spool(directory, max_bytes=10_000, clock=clock)

    assert list(directory.glob(".tmp-*")) == []
    assert pending_bodies(reopened) == [b"taken"]


def test_given_batches_taken_then_they_come_back_oldest_first_with_their_header(
    tmp_path: Path, clock: FakeClock
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=100_000, clock=clock)
    for index in range(12):  # more than 9: the order must not be the names' text order by accident
        take(spool, f"body {index}".encode(), records=index + 1, log_type=f"Type{index}")
        clock.advance(timedelta(seconds=1))

    first = spool.oldest()

    assert first is not None
    assert (first.workspace_id, first.log_type, first.records, first.created_at) == (
        WORKSPACE,
        "Type0",
        1,
        clock.now - timedelta(seconds=12),
    )
    assert pending_bodies(spool) == [f"body {index}".encode() for index in range(12)]


def test_given_a_delivered_batch_when_the_spool_empties_then_a_new_batch_never_reuses_its_name(
    tmp_path: Path, clock: FakeClock
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000, clock=clock)
    take(spool, b"first")
    first = spool.oldest()
    assert first is not None
    spool.remove(first)

    take(spool, b"second")

    second = spool.oldest()
    assert second is not None and second.name != first.name
    spool.remove(first)  # a late removal of the first (a sender that was slow) leaves the second alone
    assert pending_bodies(spool) == [b"second"]


def file_size_of_a_batch(tmp_path: Path, clock: FakeClock, body_bytes: int) -> int:
    """What one batch of 10 records takes on disk, header included."""
    scratch = Spool(tmp_path / "scratch", max_bytes=10**6, clock=clock)
    take(scratch, b"s" * body_bytes, records=10)
    return sum(p.stat().st_size for p in scratch.directory.glob("*.batch"))


def test_given_a_full_spool_when_a_batch_is_taken_then_the_oldest_are_dropped_first_with_a_logged_count(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    one = file_size_of_a_batch(tmp_path, clock, 300)
    spool = Spool(tmp_path / "spool", max_bytes=5 * one, clock=clock)
    for letter in b"ABCDE":
        take(spool, bytes([letter]) * 300, records=10)
    header = one - 300

    with caplog.at_level(logging.WARNING, logger="sluice.agent.spool"):
        assert take(spool, b"n" * (3 * one - header), records=10)  # as large as three batches

    assert sum(p.stat().st_size for p in spool.directory.glob("*.batch")) == 5 * one
    assert [body[:1] for body in pending_bodies(spool)] == [b"D", b"E", b"n"]
    assert "dropped the 3 oldest batches (30 records)" in caplog.text


def test_given_refused_batches_when_room_is_needed_then_they_go_before_any_pending_batch(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    one = file_size_of_a_batch(tmp_path, clock, 300)
    spool = Spool(tmp_path / "spool", max_bytes=4 * one + 10, clock=clock)
    take(spool, b"r" * 300, records=10)
    refused = spool.oldest()
    assert refused is not None
    spool.reject(refused, "403")
    for _ in range(3):
        take(spool, b"p" * 300, records=10)

    with caplog.at_level(logging.WARNING, logger="sluice.agent.spool"):
        take(spool, b"n" * 300, records=10)

    assert spool.summary().rejected_batches == 0
    assert [body[:1] for body in pending_bodies(spool)] == [b"p", b"p", b"p", b"n"]
    assert "dropped 1 refused batches" in caplog.text
    assert "oldest batches" not in caplog.text


def test_given_a_batch_larger_than_the_whole_cap_then_it_is_dropped_itself_and_the_others_stay(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1_000, clock=clock)
    take(spool, b"small")

    with caplog.at_level(logging.ERROR, logger="sluice.agent.spool"):
        taken = take(spool, b"x" * 1_000, records=7)

    assert not taken
    assert pending_bodies(spool) == [b"small"]
    assert "dropped a batch of 7 records" in caplog.text


def test_given_batches_of_different_ages_when_dropping_older_than_a_cutoff_then_only_those_go(
    tmp_path: Path, clock: FakeClock
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000, clock=clock)
    for records in (1, 2, 3):
        take(spool, f"{records}".encode(), records=records)
        clock.advance(timedelta(minutes=10))

    dropped = spool.drop_older_than(clock.now - timedelta(minutes=20))

    assert dropped == BatchCount(batches=2, records=3)
    assert pending_bodies(spool) == [b"3"]


def test_given_an_unreadable_file_in_the_spool_then_it_is_moved_aside_and_the_next_batch_comes(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000, clock=clock)
    (spool.directory / "00000000000000000000-garbage0.batch").write_bytes(b"not a header\n...")
    take(spool, b"good")

    with caplog.at_level(logging.ERROR, logger="sluice.agent.spool"):
        assert pending_bodies(spool) == [b"good"]

    assert [p.name for p in (spool.directory / "rejected").iterdir()] == [
        "00000000000000000000-garbage0.unreadable.batch"
    ]
    assert "header cannot be read" in caplog.text


def test_given_a_spool_then_it_is_owner_only_and_its_summary_counts_pending_and_refused(
    tmp_path: Path, clock: FakeClock
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000, clock=clock)
    take(spool, b"a", records=3)
    clock.advance(timedelta(minutes=1))
    take(spool, b"b", records=4)
    take(spool, b"c", records=5)
    refused = spool.oldest()
    assert refused is not None
    spool.reject(refused, "400")

    summary = spool.summary()

    assert (summary.batches, summary.records, summary.rejected_batches) == (2, 9, 1)
    assert summary.oldest_created_at == clock.now
    assert summary.bytes == sum(p.stat().st_size for p in spool.directory.glob("*.batch"))
    modes = {stat.S_IMODE(p.stat().st_mode) for p in spool.directory.rglob("*")}
    assert modes == {0o600, 0o700}
    assert stat.S_IMODE(spool.directory.stat().st_mode) == 0o700


def test_given_a_process_holding_the_sender_lock_then_another_holder_is_refused_until_it_is_released(
    tmp_path: Path, clock: FakeClock
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000, clock=clock)
    first, second = spool.sender_lock(), spool.sender_lock()

    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
