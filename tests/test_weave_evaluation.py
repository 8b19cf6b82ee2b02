"""What a run leaves in Weave for each model: one Evaluation.evaluate call on the suite's
weave.Evaluation and the model, its rows under it, and the same model ref on every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import weave
from weave.flow.leaderboard import get_leaderboard_results

from evalflow.config import DatasetSpec, ModelSpec, ScorerSpec, Suite
from evalflow.dataset import Row, load_rows
from evalflow.endpoints import SimEndpoint
from evalflow.evaluation import (
    evaluate_stored,
    leaderboard_name,
    publish_leaderboard,
    read_leaderboard,
)
from evalflow.scorers import score_rows
from evalflow.stats import wilson_interval
from evalflow.weave_setup import init_weave
from flows.evaluate import evaluate
from tests.scorer_fixtures import collected_frame
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
    published = weave.ref(f"weave:///{project}/object/arith:latest").get()
    assert [r["row_id"] for r in published.rows] == [r["id"] for r in ROWS]  # every row
    coin = expected_accuracy("coin", 0.5, ROWS)
    assert evaluation.output["exact_match"]["correct"]["mean"] == pytest.approx(coin)
    assert evaluation.output["exact_match"]["correct"]["count"] == len(ROWS)
    low, high = wilson_interval(round(coin * len(ROWS)), len(ROWS))
    interval = {"ci_low": pytest.approx(low), "ci_high": pytest.approx(high), "n": len(ROWS)}
    assert read_leaderboard("arith") == [
        {
            "model": "coin",
            "exact_match": pytest.approx(coin),
            "numeric_match": pytest.approx(coin),
            **{
                f"{scorer} {k}": v
                for scorer in ("exact_match", "numeric_match")
                for k, v in interval.items()
            },
            "n": len(ROWS),
            "evaluations": 1,
            "run_id": result["run_id"],
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


def test_a_python_scorer_runs_in_weave_own_evaluation_when_asked(
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
    monkeypatch.setenv("EVALFLOW_WEAVE_EVALUATION", "weave")
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


def test_a_named_python_scorer_has_its_column_in_every_result(
    prefect_server: str,
    evals: Path,
    sim: SimEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = write_suite(
        tmp_path / "named",
        "arith",
        ROWS,
        sim.base_url,
        {"coin": {}},
        scorers=[
            {"kind": "exact_match"},
            {
                "kind": "python",
                "name": "starts_same",
                "path": "tests.scorer_fixtures.same_first_char",
            },
        ],
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    project = "local/eval-named-python-scorer"
    result = evaluate(suite="arith", weave_project=project)
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    same = [str(o)[:1] == str(t)[:1] for o, t in zip(frame["output"], frame["target"], strict=True)]
    assert frame["score:starts_same"].tolist() == same
    summary = json.loads((Path(result["folder"]) / "summary.json").read_text())
    (coin,) = summary["summary"]
    assert coin["starts_same"] == pytest.approx(sum(same) / len(ROWS))
    (board,) = read_leaderboard("arith")
    assert board["starts_same"] == pytest.approx(sum(same) / len(ROWS))
    # Recorded by evalflow from the scores it has: no per-row predict or scorer calls.
    (evaluation,) = _calls(project, "Evaluation.evaluate")
    assert evaluation.output["starts_same"]["same"]["true_count"] == sum(same)
    assert _calls(project, "StoredAnswers.predict") == []
    assert _calls(project, "starts_same") == []


def test_a_suite_whose_dataset_is_the_weave_dataset_of_its_name_runs(
    prefect_server: str,
    evals: Path,
    sim: SimEndpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = "local/eval-weave-dataset"
    evaluate(suite="arith", limit=12, weave_project=project)
    folder = write_suite(
        tmp_path / "from-weave",
        "arith",
        ROWS,
        sim.base_url,
        {"coin": {}},
        dataset={"path": f"weave:///{project}/object/arith:latest", "id_field": "id"},
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    result = evaluate(suite="arith", weave_project=project)
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    assert sorted(frame["row_id"]) == sorted(r["id"] for r in ROWS[:12])
    (board,) = read_leaderboard("arith")
    assert board["model"] == "coin"


# ---- the recorded evaluation reads as weave's own, and is recorded once per run ---------------

EVAL_ROWS = questions(12)


def _stored_run(tmp_path: Path) -> tuple[Suite, list[Row], ModelSpec, pd.DataFrame]:
    """A suite with built-in and Python scorers (an op and a weave.Scorer, named), its rows,
    a model, and the model's collected answers (one row failed, one wrong), scored."""
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EVAL_ROWS))
    suite = Suite(
        name="stored",
        dataset=DatasetSpec(path=str(data), id_field="id"),
        scorers=[
            ScorerSpec(kind="exact_match"),
            ScorerSpec(kind="numeric_match"),
            ScorerSpec(
                kind="python", name="starts_same", path="tests.scorer_fixtures.same_first_char"
            ),
            ScorerSpec(kind="python", name="close", path="tests.scorer_fixtures.close_length"),
        ],
    )
    rows = load_rows(suite.dataset_path(), suite.dataset)
    outputs: dict[str, str | None] = {r.id: str(r.target) for r in rows}
    outputs[rows[3].id] = None  # failed after its retries
    outputs[rows[5].id] = "I don't know."
    spec = ModelSpec(name="stored-model", model="m-1", endpoint="http://127.0.0.1:9/v1")
    frame = score_rows(suite, rows, collected_frame(spec.name, rows, outputs))
    return suite, rows, spec, frame


def _plain(value: Any) -> Any:
    """A value weave read back (WeaveDict, WeaveList...) as plain JSON values."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _what_weave_reads(project: str, call: Any, board: Any) -> dict[str, Any]:
    """What weave's own readers (and the Weave UI's filters) return for one evaluate call."""
    client = init_weave(project)
    op = f"weave:///{project}/op/"
    children = client.get_calls(
        filter={"op_names": [op + "Evaluation.predict_and_score:*"], "parent_ids": [call.id]}
    )
    rows = {}
    for child in children:
        example = _plain(child.inputs["example"])
        rows[example["row_id"]] = {
            "example": example,
            "example_ref": child.inputs["example"].ref.uri(),
            "inputs": sorted(child.inputs),
            "self": child.inputs["self"].ref.uri(),
            "model": child.inputs["model"].ref.uri(),
            "output_keys": sorted(child.output),
            "output": child.output["output"],
            "scores": _plain(child.output["scores"]),
            "status": child.summary["weave"]["status"],
            "trace": child.trace_id == call.trace_id,
        }
    results = {}
    for result in get_leaderboard_results(board, client):
        for column, scores in zip(board.columns, result.column_scores, strict=True):
            for score in scores.scores:
                if score.evaluate_call_ref.endswith(call.id):
                    results[(result.model_ref, column.scorer_name)] = score.value
    summary = _plain(call.output)
    latency = summary.pop("model_latency")
    return {
        "inputs": {k: v.ref.uri() for k, v in call.inputs.items()},
        "summary": summary,
        "latency_keys": sorted(latency),
        "status": call.summary["weave"]["status"],
        "rows": rows,
        "leaderboard": results,
    }


def test_the_recorded_evaluation_reads_the_same_as_weave_own(
    evalflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths in one project (refs hold the project's name): two evaluations of the same
    evaluation and model, one recorded by evalflow, one by weave.Evaluation.evaluate."""
    suite, rows, spec, frame = _stored_run(tmp_path)
    project = "local/same-reading"
    client = init_weave(project)
    refs, summaries = set(), {}
    for path in ("recorded", "weave"):
        monkeypatch.setenv("EVALFLOW_WEAVE_EVALUATION", path)
        evaluation, eval_ref = evaluate_stored(suite, rows, spec, frame, f"run-{path}")
        refs.add((eval_ref, evaluation.model_ref))
        summaries[path] = evaluation.summary
    ((eval_ref, model_ref),) = refs  # the same objects either way
    publish_leaderboard(suite, eval_ref, list(summaries.values()))
    board = weave.ref(f"{leaderboard_name('stored')}:latest").get()
    # The Weave UI's list of an evaluation's runs: evaluate calls by op and input refs.
    calls = client.get_calls(
        filter={
            "op_names": [f"weave:///{project}/op/Evaluation.evaluate:*"],
            "input_refs": [eval_ref, model_ref],
        }
    )
    by_run = {c.attributes["evalflow"]["run_id"]: c for c in calls}
    assert sorted(by_run) == ["run-recorded", "run-weave"]
    recorded = _what_weave_reads(project, by_run["run-recorded"], board)
    own = _what_weave_reads(project, by_run["run-weave"], board)
    assert set(own["rows"]) == {r.id for r in rows}
    for row_id, row in own["rows"].items():
        assert recorded["rows"][row_id] == row, row_id
    for key in ("inputs", "summary", "latency_keys", "status", "leaderboard"):
        assert recorded[key] == own[key], key
    assert recorded["inputs"] == {"self": eval_ref, "model": model_ref}
    assert len(own["leaderboard"]) == 4  # a figure per column
    assert {k: v for k, v in summaries["recorded"].items() if k != "model_latency"} == own[
        "summary"
    ]
    # The figures themselves: 10 of 11 answered rows right, the failed row in no score.
    assert own["summary"]["exact_match"]["correct"]["mean"] == pytest.approx(10 / 11)
    assert own["summary"]["starts_same"]["same"]["true_fraction"] == pytest.approx(10 / 11)
    assert [c.scorer_name for c in board.columns] == [
        "exact_match",
        "numeric_match",
        "starts_same",
        "close",
    ]


def test_a_run_recorded_again_counts_once_on_the_leaderboard(
    evalflow_home: Path, tmp_path: Path
) -> None:
    suite, rows, spec, frame = _stored_run(tmp_path)
    project = "local/recorded-once"
    init_weave(project)
    first, eval_ref = evaluate_stored(suite, rows, spec, frame, "run-1")
    # The run crashed before publishing the leaderboard; started again, it records again.
    again, same_ref = evaluate_stored(suite, rows, spec, frame, "run-1")
    assert same_ref == eval_ref and again.summary == first.summary
    publish_leaderboard(suite, eval_ref, [again.summary])
    (entry,) = read_leaderboard("stored")
    assert entry["evaluations"] == 1
    assert len(_calls(project, "Evaluation.evaluate")) == 1
    # Its failed row answered later (--retry-errors): the run's one entry holds the new figure.
    fixed = frame.copy()
    fixed.loc[3, ["output", "error_class"]] = [str(rows[3].target), None]
    fixed = score_rows(suite, rows, fixed.drop(columns=[c for c in fixed if ":" in c]))
    updated, _ = evaluate_stored(suite, rows, spec, fixed, "run-1")
    publish_leaderboard(suite, eval_ref, [updated.summary])
    (entry,) = read_leaderboard("stored")
    assert entry["evaluations"] == 1
    assert entry["exact_match"] == pytest.approx(11 / 12)
    # Another run is another evaluation.
    evaluate_stored(suite, rows, spec, fixed, "run-2")
    (entry,) = read_leaderboard("stored")
    assert entry["evaluations"] == 2


def test_evaluations_whose_op_code_was_captured_differently_share_one_leaderboard(
    evalflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes (the nightly's children, one per model) publish the same suite's
    evaluation; weave's capture of an op's code can differ between them (seen on workers: one
    op's dependencies captured as "<error>"; here: code capture off in the second). Both
    models' calls still land on one evaluation, and the leaderboard shows both."""
    suite, rows, spec, frame = _stored_run(tmp_path)
    init_weave("local/two-processes")
    first, eval_ref = evaluate_stored(suite, rows, spec, frame, "run-a")
    other = spec.model_copy(update={"name": "other-model"})
    other_frame = frame.assign(model=other.name)
    monkeypatch.setenv("WEAVE_CAPTURE_CODE", "false")  # ops stored as stubs: other op refs
    second, second_ref = evaluate_stored(suite, rows, other, other_frame, "run-b")
    assert second_ref == eval_ref
    publish_leaderboard(suite, eval_ref, [first.summary, second.summary])
    assert sorted(e["model"] for e in read_leaderboard("stored")) == ["other-model", "stored-model"]
