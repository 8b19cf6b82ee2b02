"""Rows are validated before any request: each bad row is named with what is wrong with it.
(tests/test_dataset.py covers the formats; these are the rules.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalflow.config import DatasetSpec
from evalflow.dataset import MAX_LISTED, load_rows
from evalflow.errors import DatasetError

SPEC = DatasetSpec(path="x", input_fields=["question", "unit"], target_field="answer")


def jsonl(tmp_path: Path, records: list[object]) -> str:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def problems(source: str, spec: DatasetSpec = SPEC) -> str:
    with pytest.raises(DatasetError) as caught:
        load_rows(source, spec)
    return str(caught.value)


def test_without_an_id_field_a_row_is_known_by_its_number(tmp_path: Path) -> None:
    records = [{"question": f"q{i}", "unit": "km", "answer": i, "note": "kept"} for i in range(3)]
    rows = load_rows(jsonl(tmp_path, records), SPEC)
    assert [(r.id, r.index, r.target) for r in rows] == [("0", 0, 0), ("1", 1, 1), ("2", 2, 2)]
    assert rows[1].inputs == {"question": "q1", "unit": "km"} and rows[1].record["note"] == "kept"


def test_empty_and_wrongly_typed_fields_are_named(tmp_path: Path) -> None:
    records: list[object] = [
        {"question": None, "unit": "km", "answer": "1"},
        {"question": "q", "unit": "km", "answer": True},
        {"question": "q", "unit": "km", "answer": {"a": 1}},
        {"question": "q", "answer": "1"},
        [1, 2, 3],
        {"question": "q", "unit": ["a", "list"], "answer": 2.5},
    ]
    message = problems(jsonl(tmp_path, records))
    assert "5 bad rows" in message
    assert "line 1: field 'question' is empty" in message
    assert "line 2: field 'answer' should be text or a number, not bool" in message
    assert "line 3: field 'answer' should be text or a number, not dict" in message
    assert "line 4: missing field 'unit'" in message
    assert "line 5: not a JSON object" in message
    assert "line 6" not in message  # an input may be any JSON value; the target may be a float


def test_missing_fields_are_listed_together(tmp_path: Path) -> None:
    spec = DatasetSpec(path="x", id_field="id", input_fields=["question"], target_field="answer")
    message = problems(jsonl(tmp_path, [{"text": "q"}]), spec)
    assert "line 1: missing fields 'question', 'answer', 'id'" in message


def test_only_the_first_problems_are_listed_with_a_count_of_the_rest(tmp_path: Path) -> None:
    message = problems(jsonl(tmp_path, [{"question": "q"}] * (MAX_LISTED + 5)))
    assert f"{MAX_LISTED + 5} bad rows" in message
    assert f"line {MAX_LISTED}:" in message and f"line {MAX_LISTED + 1}:" not in message
    assert "... and 5 more" in message


def test_a_limit_stops_reading_once_enough_good_rows_are_in(tmp_path: Path) -> None:
    good = [{"question": f"q{i}", "unit": "m", "answer": i} for i in range(3)]
    source = jsonl(tmp_path, [*good, {"broken": True}])
    assert len(load_rows(source, SPEC, limit=3)) == 3
    assert "line 4: missing fields" in problems(source)


def test_csv_rows_with_extra_cells_and_unknown_formats(tmp_path: Path) -> None:
    csv = tmp_path / "rows.csv"
    csv.write_text("question,unit,answer\nq1,km,1\nq2,km,2,surplus\n")
    assert "line 3: more cells than the header has columns" in problems(str(csv))
    other = tmp_path / "rows.xlsx"
    other.write_text("")
    assert "unknown format '.xlsx'; use .jsonl, .csv or .parquet" in problems(str(other))
