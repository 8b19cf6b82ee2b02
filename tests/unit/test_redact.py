"""The keys the local Weave store keeps out of its records are those of the environment as it
is at each call: set, changed or removed after a first read, the next read finds them so."""

from __future__ import annotations

import pytest

from evalflow.weave_local.redact import known_secrets


def test_a_key_set_changed_or_removed_after_a_read_is_what_the_next_read_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = known_secrets()
    monkeypatch.setenv("LATE_API_KEY", "sk-late-0001")
    assert "sk-late-0001" in known_secrets()
    monkeypatch.setenv("LATE_API_KEY", "sk-late-0002")
    found = known_secrets()
    assert "sk-late-0002" in found and "sk-late-0001" not in found
    monkeypatch.setenv("LATE_TOKEN", "tok-late-0003")
    assert {"sk-late-0002", "tok-late-0003"} <= set(known_secrets())
    monkeypatch.delenv("LATE_API_KEY")
    monkeypatch.delenv("LATE_TOKEN")
    assert known_secrets() == before


def test_a_caller_changing_its_list_changes_no_later_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWN_API_KEY", "sk-own-00000001")
    mine = known_secrets()
    mine.append("not-a-key-of-the-environment")
    mine.remove("sk-own-00000001")
    assert known_secrets().count("sk-own-00000001") == 1
    assert "not-a-key-of-the-environment" not in known_secrets()
