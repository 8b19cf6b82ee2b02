"""A run's day: today (UTC), or the one EVALFLOW_RUN_DAY names (tests and replays of nights)."""

from __future__ import annotations

import datetime as dt

import pytest

from evalflow.errors import ConfigError
from evalflow.runs import make_run_id


def test_the_run_day_is_today_unless_evalflow_run_day_names_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVALFLOW_RUN_DAY", raising=False)
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    assert make_run_id("qa", {"x": 1}).startswith(f"qa-{today}-")
    monkeypatch.setenv("EVALFLOW_RUN_DAY", "20250131")
    night = make_run_id("qa", {"x": 1})
    assert night.startswith("qa-20250131-")
    assert night.rsplit("-", 1)[1] == make_run_id("qa", {"x": 1}).rsplit("-", 1)[1]


def test_a_malformed_run_day_says_how_to_write_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALFLOW_RUN_DAY", "2025-01-31")
    with pytest.raises(
        ConfigError, match=r"EVALFLOW_RUN_DAY='2025-01-31' is not a day: .*YYYYMMDD"
    ):
        make_run_id("qa", {})
