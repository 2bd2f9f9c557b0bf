"""`make run` upgrades an older local.settings.json with new settings, never changing a value."""

from __future__ import annotations

import json
from pathlib import Path

from shared.localsettings import add_missing_settings, load_local_settings

EXAMPLE = {"IsEncrypted": False, "Values": {"A": "1", "B": "2"}}


def write(path: Path, document: object) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


def test_given_no_local_file_when_adding_then_it_is_the_example(tmp_path: Path) -> None:
    write(tmp_path / "local.settings.example.json", EXAMPLE)

    assert add_missing_settings(tmp_path) == ["A", "B"]
    assert json.loads((tmp_path / "local.settings.json").read_text()) == EXAMPLE


def test_given_an_older_local_file_when_adding_then_only_missing_settings_join(tmp_path: Path) -> None:
    write(tmp_path / "local.settings.example.json", EXAMPLE)
    write(tmp_path / "local.settings.json", {"IsEncrypted": False, "Values": {"A": "mine", "C": "3"}})

    assert add_missing_settings(tmp_path) == ["B"]
    assert json.loads((tmp_path / "local.settings.json").read_text())["Values"] == {
        "A": "mine",
        "C": "3",
        "B": "2",
    }
    assert add_missing_settings(tmp_path) == []


def test_given_values_when_loading_then_the_environment_wins(tmp_path: Path) -> None:
    write(tmp_path / "local.settings.json", EXAMPLE)
    environ = {"A": "from-env"}

    assert load_local_settings(tmp_path / "local.settings.json", environ)
    assert environ == {"A": "from-env", "B": "2"}
