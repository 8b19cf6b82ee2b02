"""Scorers before and after inference: checked against the rows' fields before any request, and
run by evalflow on every answered row (Python scorers too), each under its label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from evalflow.config import DatasetSpec, ScorerSpec, Suite
from evalflow.dataset import Row, load_rows
from evalflow.errors import ConfigError
from evalflow.evaluation import build_evaluation
from evalflow.scorer_checks import row_fields
from evalflow.scorers import check_scorers, score_rows
from tests.scorer_fixtures import collected_frame

CSV = "id,question,answer,topic\nq1,What is 1 plus 1?,2,sums\nq2,Name a red fruit,apple,food\n"


def _suite(tmp_path: Path, *scorers: dict[str, Any]) -> Suite:
    data = tmp_path / "d.csv"
    data.write_text(CSV)
    return Suite(
        name="mixed",
        dataset=DatasetSpec(path=str(data), id_field="id", input_fields=["question"]),
        scorers=[ScorerSpec.model_validate(s) for s in scorers],
    )


def _rows(suite: Suite) -> list[Row]:
    return load_rows(suite.dataset_path(), suite.dataset)


def test_a_python_scorer_receives_output_every_field_of_the_row_row_id_and_target(
    tmp_path: Path,
) -> None:
    suite = _suite(tmp_path, {"kind": "python", "path": "tests.scorer_fixtures.what_it_received"})
    rows = _rows(suite)
    frame = score_rows(suite, rows, collected_frame("m", rows, {"q1": "2", "q2": "cherry"}))
    received = [json.loads(v) for v in frame["scorer_output:what_it_received"]]
    assert received == [
        {
            "ok": True,
            "row_id": "q1",
            "target": "2",
            "question": "What is 1 plus 1?",
            "topic": "sums",  # a CSV column the prompt does not use
            "output": "2",
        },
        {
            "ok": True,
            "row_id": "q2",
            "target": "apple",
            "question": "Name a red fruit",
            "topic": "food",
            "output": "cherry",
        },
    ]
    assert list(frame["score:what_it_received"]) == [True, True]  # its first true/false field


def test_a_named_python_scorer_has_a_column_under_its_label(tmp_path: Path) -> None:
    suite = _suite(
        tmp_path,
        {"kind": "exact_match"},
        {"kind": "python", "name": "starts_same", "path": "tests.scorer_fixtures.same_first_char"},
        {"kind": "python", "name": "length", "path": "tests.scorer_fixtures.answer_length"},
    )
    rows = _rows(suite)
    frame = score_rows(suite, rows, collected_frame("m", rows, {"q1": "2", "q2": None}))
    assert frame["score:exact_match"].tolist() == [True, None]
    assert frame["score:starts_same"].tolist() == [True, None]  # a failed row is not scored
    assert frame["score:length"].tolist()[0] == 1.0
    assert pd.isna(frame["score:length"].tolist()[1])
    assert json.loads(frame["scorer_output:starts_same"][0]) == {"same": True, "length": 1}
    assert frame["scorer_output:starts_same"][1] is None


def test_weave_dataset_rows_carry_every_field_a_python_scorer_receives(tmp_path: Path) -> None:
    suite = _suite(tmp_path, {"kind": "exact_match"})
    rows = _rows(suite)
    evaluation = build_evaluation(suite, rows)
    first = dict(evaluation.dataset.rows[0])
    assert first == {
        "id": "q1",
        "question": "What is 1 plus 1?",
        "answer": "2",
        "topic": "sums",
        "row_id": "q1",
        "target": "2",
    }
    assert row_fields(rows) == set(first)
    assert evaluation.name == "mixed-evaluation"  # not the dataset's name


def test_good_scorers_pass_the_check(tmp_path: Path) -> None:
    suite = _suite(
        tmp_path,
        {"kind": "exact_match"},
        {"kind": "python", "path": "tests.scorer_fixtures.what_it_received"},
        {"kind": "python", "path": "tests.scorer_fixtures.close_length"},
    )
    check_scorers(suite, row_fields(_rows(suite)))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "tests.scorer_fixtures.wants_a_rationale",
            r"scorer 'wants_a_rationale'.*argument 'rationale'.*answer, id, question, row_id, "
            r"target, topic",
        ),
        (
            "tests.scorer_fixtures.close_length_unmapped",
            r"scorer 'close_length_unmapped'.*argument 'expected'.*column_map",
        ),
        ("tests.scorer_fixtures.no_output_argument", r"no_output_argument'.*`output`"),
        ("tests.no_such_module.scorer", r"tests.no_such_module.scorer'.*cannot import"),
        ("tests.scorer_fixtures.nothing_here", r"nothing_here'.*cannot import"),
    ],
)
def test_a_scorer_the_rows_cannot_feed_is_one_clear_error(
    tmp_path: Path, path: str, message: str
) -> None:
    suite = _suite(tmp_path, {"kind": "python", "path": path})
    with pytest.raises(ConfigError, match=message):
        check_scorers(suite, row_fields(_rows(suite)))


def test_a_bad_regex_fails_the_check(tmp_path: Path) -> None:
    suite = _suite(tmp_path, {"kind": "regex", "pattern": "("})
    with pytest.raises(ConfigError, match="bad regex"):
        check_scorers(suite, {"question"})
