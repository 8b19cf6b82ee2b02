"""Bad rows are found before any request is sent, all named in one error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from evalflow import dataset
from evalflow.config import DatasetSpec
from evalflow.dataset import load_rows
from evalflow.errors import DatasetError

SPEC = DatasetSpec(path="x", id_field="id", input_fields=["question"], target_field="answer")


def write_jsonl(path: Path, lines: list[str | bytes]) -> str:
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n")
    return str(path)


def good(i: int) -> str:
    return json.dumps({"id": f"r{i}", "question": f"q{i}?", "answer": f"a{i}"})


def test_good_rows_load_in_order(tmp_path: Path) -> None:
    rows = load_rows(write_jsonl(tmp_path / "d.jsonl", [good(i) for i in range(5)]), SPEC)
    assert [r.id for r in rows] == ["r0", "r1", "r2", "r3", "r4"]
    assert rows[2].inputs == {"question": "q2?"} and rows[2].target == "a2"


def test_every_bad_row_is_named_in_one_error(tmp_path: Path) -> None:
    lines: list[str | bytes] = [
        good(1),
        "{not json",
        json.dumps({"id": "r3", "question": "q?"}),
        b'{"id": "r4", "question": "caf\xe9?", "answer": "x"}',
        json.dumps({"id": "r5", "question": "q?", "answer": ["a", "list"]}),
        json.dumps({"id": "r6", "question": "x" * 10_000_001, "answer": "a"}),
        good(1),
    ]
    with pytest.raises(DatasetError) as caught:
        load_rows(write_jsonl(tmp_path / "d.jsonl", lines), SPEC)
    message = str(caught.value)
    assert "6 bad rows" in message and "nothing was sent" in message
    assert "line 2: not valid JSON" in message
    assert "line 3: missing field 'answer'" in message
    assert "line 4: not UTF-8" in message
    assert "line 5: field 'answer' should be text or a number, not list" in message
    assert "line 6: field 'question' is 10.0 MB" in message
    assert "line 7: id 'r1' repeats line 1" in message


def test_ids_sharing_a_hash_are_told_apart_and_repeats_listed_in_file_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ids are checked by their hashes, and the records whose hashes repeat are read again:
    # with every id hashing the same, only the true repeats are reported, where they are.
    monkeypatch.setattr(dataset, "_id_hash", lambda row_id: 7)
    distinct = load_rows(write_jsonl(tmp_path / "d.jsonl", [good(i) for i in range(50)]), SPEC)
    assert [r.id for r in distinct] == [f"r{i}" for i in range(50)]

    lines: list[str | bytes] = [good(0), good(1), "{not json", good(0), good(2), good(1), good(0)]
    with pytest.raises(DatasetError) as caught:
        load_rows(write_jsonl(tmp_path / "r.jsonl", lines), SPEC)
    message = str(caught.value)
    assert "4 bad rows" in message
    listed = [line.strip() for line in message.splitlines()[1:]]
    assert listed == [
        "line 3: not valid JSON (Expecting property name enclosed in double quotes)",
        "line 4: id 'r0' repeats line 1",
        "line 6: id 'r1' repeats line 2",
        "line 7: id 'r0' repeats line 1",
    ]


@pytest.mark.parametrize("set_check_rows", [dataset.SET_CHECK_ROWS, 0])
def test_repeats_are_found_with_or_without_the_set_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, set_check_rows: int
) -> None:
    """Small datasets are first checked in a set of id hashes, large ones by numpy's sort
    only: either way distinct ids load and a repeat is reported where it is."""
    monkeypatch.setattr(dataset, "SET_CHECK_ROWS", set_check_rows)
    distinct = load_rows(write_jsonl(tmp_path / "d.jsonl", [good(i) for i in range(20)]), SPEC)
    assert [r.id for r in distinct] == [f"r{i}" for i in range(20)]
    lines: list[str | bytes] = [good(i) for i in range(20)] + [good(3)]
    with pytest.raises(DatasetError, match="line 21: id 'r3' repeats line 4"):
        load_rows(write_jsonl(tmp_path / "r.jsonl", lines), SPEC)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DatasetError, match="no rows"):
        load_rows(str(path), SPEC)


def test_csv_and_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "b"], "question": ["q1?", "q2?"], "answer": [1, 2]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        rows = load_rows(str(tmp_path / name), SPEC)
        assert [(r.id, str(r.target)) for r in rows] == [("a", "1"), ("b", "2")]


def test_limit_and_missing_file(tmp_path: Path) -> None:
    rows = load_rows(write_jsonl(tmp_path / "d.jsonl", [good(i) for i in range(10)]), SPEC, 3)
    assert len(rows) == 3
    with pytest.raises(DatasetError, match="no such file"):
        load_rows(str(tmp_path / "nope.jsonl"), SPEC)
