"""The run's spool (answers scored and kept chunk by chunk) gives the same results.parquet, the
same summary and the same Weave record as collecting every answer at once, and keeps little
per row in memory."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from evalflow.config import DatasetSpec, ScorerSpec, Suite
from evalflow.dataset import Row, load_rows
from evalflow.evaluation import scored_rows, spooled_scores
from evalflow.inference import Answer
from evalflow.judge import Judgement
from evalflow.results import collect, save_run, summarize, summarize_parts
from evalflow.scorers import score_rows
from evalflow.spool import ResultSpool

ROWS = 7
CHUNK = 3


def _suite(tmp_path: Path, epochs: int, scorers: list[dict[str, str]]) -> tuple[Suite, list[Row]]:
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            f'{{"id": "r{i}", "question": "What is {i} plus {i}?", "answer": "{2 * i}"}}\n'
            for i in range(ROWS)
        )
    )
    spec = DatasetSpec(path=str(data), id_field="id", input_fields=["question"])
    suite = Suite(
        name="spooled",
        dataset=spec,
        scorers=[ScorerSpec.model_validate(s) for s in scorers],
        epochs=epochs,
    )
    return suite, load_rows(str(data), spec)


def _answers(model: str, rows: list[Row], epochs: int, seed: int) -> list[Answer]:
    """A chunk's answers as infer-chunk gives them (epoch by epoch): some right, some wrong,
    some failed."""
    pick = random.Random(f"{model}-{seed}")
    answers = []
    for epoch in range(epochs):
        for row in rows:
            fate = pick.random()
            failed = fate < 0.15
            answers.append(
                Answer(
                    model=model,
                    row_id=row.id,
                    index=row.index,
                    output=None if failed else (str(row.target) if fate < 0.6 else "7 apples"),
                    latency_s=round(pick.uniform(0.01, 2.0), 4),
                    prompt_tokens=pick.randint(5, 30),
                    completion_tokens=0 if failed else pick.randint(1, 9),
                    attempts=1 + int(failed),
                    error_class="APITimeoutError" if failed else None,
                    error="timed out" if failed else None,
                    request=f"{model}-{row.id}-{epoch}",
                    epoch=epoch,
                )
            )
    return answers


def _judged(label: str, answers: list[Answer]) -> list[Judgement]:
    out = []
    for n, a in enumerate(answers):
        if a.output is None:
            continue
        graded = n % 4 != 0
        out.append(
            Judgement(
                scorer=label,
                model=a.model,
                row_id=a.row_id,
                epoch=a.epoch,
                grade=("C" if n % 2 else "I") if graded else None,
                score=float(n % 2) if graded else None,
                explanation="because",
                error=None if graded else "no grade in the reply",
                tokens=40 + n,
            )
        )
    return out


SCORERS = [
    {"kind": "exact_match"},
    {"kind": "python", "name": "starts", "path": "tests.scorer_fixtures.same_first_char"},
    {"kind": "python", "name": "length", "path": "tests.scorer_fixtures.answer_length"},
    {"kind": "judge", "name": "grader", "model": "judge-model"},
]


@pytest.mark.parametrize("held", [True, False], ids=["read-once-and-held", "read-each-time"])
@pytest.mark.parametrize("epochs", [1, 2])
def test_spooled_chunks_save_the_same_results_summary_and_weave_record(
    tmp_path: Path, epochs: int, held: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not held:  # a model with more rows than are held: read part by part at each pass
        monkeypatch.setattr("evalflow.evaluation.HELD_ROWS", 0)
    suite, rows = _suite(tmp_path, epochs=epochs, scorers=SCORERS)
    chunks = [(n, rows[i : i + CHUNK]) for n, i in enumerate(range(0, ROWS, CHUNK))]
    parts = []
    for model in ("zeta", "alpha"):  # saved by model name, whatever the order asked
        for n, chunk in chunks:
            answers = _answers(model, chunk, suite.epochs, n)
            parts.append((n, chunk, answers, _judged("grader", answers)))
    every_answer = [a for _, _, answers, _ in parts for a in answers]
    every_judgement = [j for *_, judged in parts for j in judged]

    # Before: every answer collected into one frame, scored, summarized, saved.
    whole = score_rows(suite, rows, collect(rows, every_answer), every_judgement)
    save_run("whole", whole, summarize(whole), {})

    # Now: chunks arrive in any order, each scored and spooled; then saved.
    spool = ResultSpool(suite, tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    for n, chunk, answers, judged in random.Random(3).sample(parts, len(parts)):
        spool.add(n, chunk, answers, judged)
    save_run("spooled", spool.write_results, summarize_parts(spool.tallies()), {})

    from evalflow.runs import run_dir

    before = pd.read_parquet(run_dir("whole") / "results.parquet")
    after = pd.read_parquet(run_dir("spooled") / "results.parquet")
    pd.testing.assert_frame_equal(after, before)
    assert (run_dir("spooled") / "summary.json").read_text() == (
        run_dir("whole") / "summary.json"
    ).read_text()

    for model in ("alpha", "zeta"):
        mine = whole[whole["model"] == model]
        at_once = scored_rows(suite, rows, mine)
        by_parts = spooled_scores(suite, spool, model)
        read = list(by_parts.parts())
        assert [o for p in read for o in p.outputs] == at_once.outputs
        assert [v for p in read for v in p.latencies] == at_once.latencies
        for key, values in at_once.scores.items():
            assert [v for p in read for v in p.scores[key]] == values
        assert by_parts.count == at_once.count
        assert by_parts.summary() == at_once.summary()
        assert by_parts.digest() == at_once.digest()


def _chunks(rows: int) -> Iterator[tuple[int, list[Row], list[Answer]]]:
    """A run's chunks, each made (and dropped) in turn, as the infer-chunk tasks give them."""
    for n, start in enumerate(range(0, rows, 500)):
        chunk = [
            Row(f"q{i}", i, {"question": f"What is {i} plus {i}?"}, str(2 * i), {"id": f"q{i}"})
            for i in range(start, min(start + 500, rows))
        ]
        yield n, chunk, _answers("m", chunk, 1, n)


def _peak_bytes(tmp_path: Path, rows: int) -> int:
    """tracemalloc's peak while a run of `rows` rows is spooled, summarized and saved."""
    suite = Suite(name="flat", dataset=DatasetSpec(path="unused.jsonl", id_field="id"))
    folder = tmp_path / f"spool{rows}"
    folder.mkdir(parents=True)
    tracemalloc.start()
    try:
        spool = ResultSpool(suite, folder)
        for n, chunk, answers in _chunks(rows):
            spool.add(n, chunk, answers, [])
        save_run(f"flat{rows}", spool.write_results, summarize_parts(spool.tallies()), {})
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_per_row_stays_small_as_the_rows_grow(tmp_path: Path) -> None:
    # Collecting every answer into one frame held about 1,500 bytes a row at its peak (the
    # answers, the records and the frame). A compact record per row, and the summary's frame
    # of them all, took 235 bytes a row at the summary's peak. A tally per chunk keeps a few
    # floats a row (the answered rows' latencies, each scored row's mean): 22 measured.
    # tracemalloc counts every thread's allocations: background threads of earlier tests (a
    # Weave store's writer) add to a peak, never take from it, so the least of three is kept.
    _peak_bytes(tmp_path / "warm", 2_000)  # imports and caches, outside the peaks
    small = min(_peak_bytes(tmp_path / f"s{i}", 2_000) for i in range(3))
    large = min(_peak_bytes(tmp_path / f"l{i}", 8_000) for i in range(3))
    per_row = (large - small) / 6_000
    assert per_row < 60, f"{per_row:.0f} bytes more per row"
