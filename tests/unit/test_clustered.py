"""A scorer's figures over repeated samples: the standard error clustered by row, pass@k and
the majority vote, checked against a hand computation."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from evalflow.clustered import clustered, score_figures


def test_clustered_stderr_matches_a_hand_computation() -> None:
    # Three rows asked three times each: row means 2/3, 1/3 and 1.
    frame = pd.DataFrame(
        {
            "row_id": ["a", "a", "a", "b", "b", "b", "c", "c", "c"],
            "epoch": [0, 1, 2] * 3,
            "score:ok": [True, True, False, False, True, False, True, True, True],
        }
    )
    # By hand: mean of the row means = (2/3 + 1/3 + 1) / 3 = 2/3; their deviations are 0,
    # -1/3, 1/3; sample variance = (0 + 1/9 + 1/9) / 2 = 1/9; stderr = sqrt(1/9 / 3).
    figures = score_figures(frame, "score:ok")
    assert figures["ok"] == pytest.approx(2 / 3)
    assert figures["ok stderr"] == pytest.approx(math.sqrt(1 / 27))
    # The unclustered stderr (9 independent scores) would be smaller: sqrt((2/9) / 8 ... )
    naive = frame["score:ok"].astype(float).std(ddof=1) / 3
    assert figures["ok stderr"] > naive
    # pass@3: every row right at least once; majority: rows a and c.
    assert figures["ok pass@3"] == 1.0
    assert figures["ok majority"] == pytest.approx(2 / 3)


def test_one_epoch_is_the_plain_stderr_of_the_mean() -> None:
    values = pd.Series([1.0, 0.0, 0.5, 1.0])
    mean, stderr, n = clustered(values, pd.Series(["a", "b", "c", "d"]))
    assert (mean, n) == (pytest.approx(0.625), 4)
    assert stderr == pytest.approx(values.std(ddof=1) / 2)
    frame = pd.DataFrame({"row_id": list("abcd"), "epoch": 0, "score:x": values})
    assert "x pass@1" not in score_figures(frame, "score:x")


def test_unscored_samples_stay_out_of_their_rows_mean() -> None:
    values = pd.Series([1.0, math.nan, 0.0, 0.0])
    mean, stderr, n = clustered(values, pd.Series(["a", "a", "b", "b"]))
    assert (mean, n) == (pytest.approx(0.5), 2)  # row a: 1.0 (its other sample unscored)
    assert stderr == pytest.approx(0.5)
