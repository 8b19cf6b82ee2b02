"""A run's rows kept compactly (evalflow.dataset.RowStore): the plan gives the same rows,
chunks, run id and suite digest as when it held every row, and holds little per row."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from evalflow.config import DatasetSpec, Suite
from evalflow.dataset import Row, RowStore, load_rows, store_rows
from evalflow.history import suite_digest
from evalflow.plan import RunRequest, plan_run
from evalflow.runs import json_sha256, make_run_id, run_day, safe_name
from tests.suites import questions, write_suite


def _dataset(tmp_path: Path, n: int) -> tuple[str, DatasetSpec]:
    data = tmp_path / "d.jsonl"
    records = [
        {"id": f"r{i}", "question": f"Quelle est {i} + {i} ? é", "answer": str(2 * i), "k": i}
        for i in range(n)
    ]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return str(data), DatasetSpec(path=str(data), id_field="id")


def test_the_store_gives_the_rows_loaded_in_order_and_in_chunks(tmp_path: Path) -> None:
    source, spec = _dataset(tmp_path, 2_345)
    rows = load_rows(source, spec)
    store = store_rows(source, spec)
    assert len(store) == len(rows) and list(store) == rows
    assert [r.record for r in store] == [r.record for r in rows]
    for size in (1, 7, 200, 1_000, 5_000):
        expected = [rows[i : i + size] for i in range(0, len(rows), size)]
        assert list(store.chunks(size)) == expected
    assert list(store_rows(source, spec, limit=3)) == rows[:3]


def test_rows_that_cannot_be_pickled_are_kept_as_they_are() -> None:
    rows = [Row(str(i), i, {"q": print}, "x", {"q": lambda: None}) for i in range(3)]
    store = RowStore.of(rows, block_rows=2)
    assert [r.id for r in store] == ["0", "1", "2"]
    assert next(iter(store)) is rows[0]


VALUES: list[dict[str, Any]] = [
    {"b": [1, 2], "a": {"z": "é", "y": None}},
    {"suite": {"name": "x"}, "limit": None},
    {},
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("items", [[], ["r0"], ["r0", "é", {"x": 1.5}]])
def test_a_streamed_json_digest_is_that_of_the_whole_json(
    value: dict[str, Any], items: list[Any]
) -> None:
    for options in ({"sort_keys": True, "default": str}, {"ensure_ascii": False}):
        whole = json.dumps({**value, "rows": items, "more": items[::-1]}, **options)
        streamed = json_sha256(value, {"rows": iter(items), "more": iter(items[::-1])}, **options)
        assert streamed == hashlib.sha256(whole.encode()).hexdigest()


def test_the_run_id_and_suite_digest_are_those_of_every_row_at_once(tmp_path: Path) -> None:
    source, spec = _dataset(tmp_path, 1_500)
    rows = load_rows(source, spec)
    parts = {"suite": {"name": "s"}, "dataset": source, "limit": None, "models": [{"m": 1}]}
    whole = json.dumps({**parts, "rows": [r.id for r in rows]}, sort_keys=True, default=str)
    digest = hashlib.sha256(whole.encode()).hexdigest()[:10]
    day = run_day().strftime("%Y%m%d")
    assert make_run_id("s", parts, (r.id for r in store_rows(source, spec))) == (
        f"{safe_name('s')}-{day}-{digest}"
    )
    suite = Suite(name="s", dataset=spec)
    value = {
        "rows": [[row.id, row.record] for row in rows],
        "prompt": suite.prompt.model_dump(),
        "scorers": [s.model_dump() for s in suite.scorers],
    }
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    expected = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert suite_digest(suite, store_rows(source, spec)) == expected


def _plan_peak(tmp_path: Path, n: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """tracemalloc's peak while a run of `n` rows is planned and its chunks read."""
    folder = write_suite(
        tmp_path / f"evals{n}", "flat", questions(n), "http://127.0.0.1:9/v1", {"m": {}}
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    plan_run(RunRequest(suite="flat", chunk_size=500))  # imports and caches, outside the peak
    tracemalloc.start()
    try:
        plan = plan_run(RunRequest(suite="flat", chunk_size=500))
        assert sum(len(chunk) for chunk in plan.chunks()) == n
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_plan_holds_little_per_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Holding every row (as Row objects, 667 bytes a row with these three fields) took about
    # 1,000 bytes a row at the peak; then 242 reading the dataset (the file's bytes, a dict of
    # every id while ids were checked for repeats). The file is read a line at a time and the
    # ids checked by hash (16 bytes a row); ~20 bytes a row kept: 37 measured.
    small = _plan_peak(tmp_path, 10_000, monkeypatch)
    large = _plan_peak(tmp_path, 40_000, monkeypatch)
    per_row = (large - small) / 30_000
    assert per_row < 80, f"{per_row:.0f} bytes more per row"
