"""Following a log file on a real directory: where reading starts, lines still being written,
rotation by rename and create and by copytruncate (while following, and while the agent was
stopped), and the checkpoint that a restart goes on from."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from shared.agentclient.tail import READ_BYTES, CheckpointStore, FilePosition, LogFollower


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def texts(follower: LogFollower) -> list[str]:
    return [line.text for line in follower.read()]


def read_all(follower: LogFollower) -> list[str]:
    """Reads until a read brings nothing more (a rotation takes one quiet read to be followed)."""
    collected: list[str] = []
    quiet = 0
    while quiet < 2:
        lines = texts(follower)
        collected += lines
        quiet = 0 if lines else quiet + 1
    return collected


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_text("before 1\nbefore 2\n", encoding="utf-8")
    return path


def test_given_no_checkpoint_then_following_starts_at_the_end_and_takes_new_lines(log_file: Path) -> None:
    follower = LogFollower(log_file, checkpoint=None)

    assert texts(follower) == []
    append(log_file, "after 1\nafter 2\n")
    assert texts(follower) == ["after 1", "after 2"]


def test_given_from_beginning_then_the_lines_already_there_are_read_too(log_file: Path) -> None:
    follower = LogFollower(log_file, checkpoint=None, from_beginning=True)

    assert texts(follower) == ["before 1", "before 2"]


def test_given_a_line_still_being_written_then_it_is_read_once_its_newline_comes(log_file: Path) -> None:
    follower = LogFollower(log_file, checkpoint=None)
    texts(follower)

    append(log_file, "half")
    assert texts(follower) == []
    append(log_file, " and the rest\r\n")
    assert texts(follower) == ["half and the rest"]


def test_given_a_file_that_does_not_exist_yet_then_it_is_read_from_its_start_once_it_appears(
    tmp_path: Path,
) -> None:
    path = tmp_path / "later.log"
    follower = LogFollower(path, checkpoint=None)
    assert texts(follower) == []

    path.write_text("first\nsecond\n", encoding="utf-8")

    assert texts(follower) == ["first", "second"]


def test_given_rename_and_create_rotation_then_the_old_file_is_read_to_its_end_and_the_new_from_its_start(
    log_file: Path,
) -> None:
    follower = LogFollower(log_file, checkpoint=None)
    texts(follower)
    append(log_file, "old 1\n")
    assert texts(follower) == ["old 1"]

    log_file.rename(log_file.with_name("app.log.1"))
    append(log_file.with_name("app.log.1"), "old 2 written after the rename\nold 3 without newline")
    log_file.write_text("new 1\n", encoding="utf-8")
    append(log_file, "new 2\n")

    assert read_all(follower) == ["old 2 written after the rename", "old 3 without newline", "new 1", "new 2"]
    append(log_file, "new 3\n")
    assert texts(follower) == ["new 3"]


def test_given_a_renamed_file_still_growing_then_it_is_followed_until_a_read_finds_it_unchanged(
    log_file: Path,
) -> None:
    follower = LogFollower(log_file, checkpoint=None)
    texts(follower)
    rotated = log_file.with_name("app.log.1")
    log_file.rename(rotated)
    log_file.write_text("new 1\n", encoding="utf-8")

    append(rotated, "late 1\n")
    assert texts(follower) == ["late 1"]
    append(rotated, "late 2\n")
    assert texts(follower) == ["late 2"]
    assert texts(follower) == []  # unchanged for a whole read: now the new file
    assert texts(follower) == ["new 1"]


def test_given_copytruncate_rotation_then_the_file_is_read_again_from_its_start(
    log_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    follower = LogFollower(log_file, checkpoint=None, from_beginning=True)
    assert texts(follower) == ["before 1", "before 2"]

    shutil.copyfile(log_file, log_file.with_name("app.log.1"))
    with log_file.open("r+") as handle:
        handle.truncate(0)
    append(log_file, "after 1\n")

    with caplog.at_level(logging.WARNING, logger="sluice.agent.tail"):
        assert texts(follower) == ["after 1"]
    assert "truncated" in caplog.text


def test_given_copytruncate_and_writes_past_the_offset_between_two_reads_then_the_changed_start_tells(
    log_file: Path,
) -> None:
    follower = LogFollower(log_file, checkpoint=None, from_beginning=True)
    assert texts(follower) == ["before 1", "before 2"]

    with log_file.open("r+") as handle:
        handle.truncate(0)
    append(log_file, "a much longer first line after the truncation\nsecond\n")

    assert texts(follower) == ["a much longer first line after the truncation", "second"]


def test_given_a_line_longer_than_one_read_then_it_is_taken_in_pieces_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "long.log"
    path.write_bytes(b"x" * (READ_BYTES + 10) + b"\nshort\n")
    follower = LogFollower(path, checkpoint=None, from_beginning=True)

    pieces = read_all(follower)

    assert [len(p) for p in pieces] == [READ_BYTES, 10, 5]


def follow_and_checkpoint(follower: LogFollower, store: CheckpointStore, path: Path) -> list[str]:
    """Reads what there is and saves the position after the last line, as the agent does once the
    batch holding them is spooled."""
    lines = follower.read()
    if lines:
        store.save(path, lines[-1].position)
    return [line.text for line in lines]


def stopped_after_reading_everything(tmp_path: Path, log_file: Path) -> CheckpointStore:
    """An agent that read the whole file, saved its checkpoint, and stopped."""
    store = CheckpointStore(tmp_path / "tail")
    follower = LogFollower(log_file, checkpoint=None, from_beginning=True)
    assert follow_and_checkpoint(follower, store, log_file) == ["before 1", "before 2"]
    follower.close()
    return store


def test_given_a_checkpoint_when_restarting_then_reading_goes_on_after_the_last_line_saved(
    tmp_path: Path, log_file: Path
) -> None:
    store = CheckpointStore(tmp_path / "tail")
    first = LogFollower(log_file, checkpoint=None, from_beginning=True)
    assert follow_and_checkpoint(first, store, log_file) == ["before 1", "before 2"]
    append(log_file, "read but never saved\n")
    assert texts(first) == ["read but never saved"]  # then killed before its batch was spooled
    first.close()

    restarted = LogFollower(log_file, checkpoint=store.load(log_file))

    assert texts(restarted) == ["read but never saved"]


def test_given_rotation_while_stopped_then_the_rest_of_the_rotated_file_comes_first_then_the_new_file(
    tmp_path: Path, log_file: Path
) -> None:
    store = stopped_after_reading_everything(tmp_path, log_file)
    append(log_file, "written while stopped\n")
    log_file.rename(log_file.with_name("app.log.1"))
    log_file.write_text("new file\n", encoding="utf-8")

    restarted = LogFollower(log_file, checkpoint=store.load(log_file))

    assert read_all(restarted) == ["written while stopped", "new file"]


def test_given_rotation_while_stopped_and_the_rotated_file_gone_then_the_new_file_and_a_warning(
    tmp_path: Path, log_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = stopped_after_reading_everything(tmp_path, log_file)
    replacement = tmp_path / "app.log.new"  # made while the old file exists: it cannot take its inode
    replacement.write_text("new file\n", encoding="utf-8")
    log_file.unlink()
    replacement.rename(log_file)

    with caplog.at_level(logging.WARNING, logger="sluice.agent.tail"):
        restarted = LogFollower(log_file, checkpoint=store.load(log_file))
        lines = texts(restarted)

    assert lines == ["new file"]
    assert "the file read before" in caplog.text and "is gone" in caplog.text


def test_given_a_truncated_file_while_stopped_then_it_is_read_from_its_start(
    tmp_path: Path, log_file: Path
) -> None:
    store = stopped_after_reading_everything(tmp_path, log_file)
    log_file.write_text("x\n", encoding="utf-8")  # truncated and shorter than the checkpoint's offset

    restarted = LogFollower(log_file, checkpoint=store.load(log_file))

    assert texts(restarted) == ["x"]


def test_given_a_saved_position_then_the_checkpoint_is_owner_only_and_reads_back_the_same(
    tmp_path: Path, log_file: Path
) -> None:
    store = CheckpointStore(tmp_path / "tail")
    position = FilePosition(
        inode=os.stat(log_file).st_ino, offset=18, fingerprint="ab" * 32, fingerprint_length=18
    )

    store.save(log_file, position)

    assert store.load(log_file) == position
    assert store.load(log_file.with_name("other.log")) is None
    (saved,) = (tmp_path / "tail").iterdir()
    assert saved.stat().st_mode & 0o777 == 0o600
