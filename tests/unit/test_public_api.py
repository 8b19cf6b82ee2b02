"""The package's API: `evalflow.init_weave`, `evalflow.evaluate`, `evalflow.read_leaderboard`."""

from __future__ import annotations

import pytest

import evalflow


def test_init_weave_and_read_leaderboard_are_at_the_package_root() -> None:
    from evalflow.evaluation import read_leaderboard
    from evalflow.weave_setup import init_weave

    assert evalflow.init_weave is init_weave
    assert evalflow.read_leaderboard is read_leaderboard
    assert {"init_weave", "evaluate", "read_leaderboard"} <= set(dir(evalflow))
    assert sorted(evalflow.__all__) == ["evaluate", "init_weave", "read_leaderboard"]


def test_other_names_are_still_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'evaluat'"):
        evalflow.evaluat  # noqa: B018
