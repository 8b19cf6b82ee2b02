"""What a run leaves in Weave for each model: one Evaluation.evaluate call on the suite's
weave.Evaluation and the model, its rows under it, and the same model ref on every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from evalflow.endpoints import SimEndpoint
from evalflow.evaluation import read_leaderboard
from evalflow.weave_setup import init_weave
from flows.evaluate import evaluate
from tests.suites import answer_key, expected_accuracy, questions, write_suite

ROWS = questions(40)


@pytest.fixture
def evals(tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch) -> Path:
    sim.configure(answer_key=answer_key(ROWS), models={"coin": 0.5})
    folder = write_suite(
        tmp_path / "evals",
        "arith",
        ROWS,
        sim.base_url,
        {"coin": {}},
        scorers=[{"kind": "exact_match"}, {"kind": "numeric_match"}],
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    return folder


def _calls(project: str, op: str, **flt: Any) -> list[Any]:
    client = init_weave(project)
    name = f"weave:///{project}/op/{op}:*"
    return list(client.get_calls(filter={"op_names": [name], **flt}))


def test_each_row_is_one_predict_and_score_call_with_its_answer_and_scores(
    prefect_server: str, evals: Path
) -> None:
    project = "local/eval-rows"
    result = evaluate(suite="arith", weave_project=project)
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet").set_index("row_id")
    (evaluation,) = _calls(project, "Evaluation.evaluate")
    children = _calls(project, "Evaluation.predict_and_score", parent_ids=[evaluation.id])
    assert len(children) == len(ROWS)
    seen = set()
    for child in children:
        example = child.inputs["example"]  # the dataset row, by its ref
        row = frame.loc[example["row_id"]]
        seen.add(example["row_id"])
        assert example["question"] == json.loads(row["input"])["question"]
        assert child.output["output"] == row["output"]
        assert child.output["scores"]["exact_match"]["correct"] == row["score:exact_match"]
        assert child.output["scores"]["numeric_match"]["correct"] == row["score:numeric_match"]
    assert len(seen) == len(ROWS)
    coin = expected_accuracy("coin", 0.5, ROWS)
    assert evaluation.output["exact_match"]["correct"]["mean"] == pytest.approx(coin)
    assert evaluation.output["exact_match"]["correct"]["count"] == len(ROWS)
    assert read_leaderboard("arith") == [
        {
            "model": "coin",
            "exact_match": pytest.approx(coin),
            "numeric_match": pytest.approx(coin),
            "evaluations": 1,
        }
    ]


def test_a_model_is_the_same_ref_on_runs_with_other_answers(
    prefect_server: str, evals: Path
) -> None:
    project = "local/eval-model-ref"
    evaluate(suite="arith", limit=10, weave_project=project)
    evaluate(suite="arith", limit=30, weave_project=project)
    first, second = _calls(project, "Evaluation.evaluate")
    assert first.inputs["model"].ref.uri() == second.inputs["model"].ref.uri()
    assert first.inputs["self"].ref.uri() != second.inputs["self"].ref.uri()  # other rows


def test_a_python_scorer_runs_in_weave_own_evaluation(
    prefect_server: str,
    evals: Path,
    sim: SimEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = write_suite(
        tmp_path / "py",
        "arith",
        ROWS,
        sim.base_url,
        {"coin": {}},
        scorers=[
            {"kind": "exact_match"},
            {"kind": "python", "path": "tests.suites.answer_is_even"},
        ],
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    project = "local/eval-python-scorer"
    result = evaluate(suite="arith", weave_project=project)
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    (evaluation,) = _calls(project, "Evaluation.evaluate")
    even = sum(str(o).isdigit() and int(o) % 2 == 0 for o in frame["output"])
    assert evaluation.output["answer_is_even"]["even"]["true_count"] == even
    assert len(_calls(project, "answer_is_even")) == len(ROWS)
    assert len(_calls(project, "StoredAnswers.predict")) == len(ROWS)
    coin = expected_accuracy("coin", 0.5, ROWS)
    (board,) = read_leaderboard("arith")
    assert board["exact_match"] == pytest.approx(coin)
    # The Python scorer's column is the fraction of rows it found true, from weave's summary.
    assert board["answer_is_even"] == pytest.approx(even / len(ROWS))
