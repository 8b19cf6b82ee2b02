"""The real weave client on the local store: the seed's examples, read back in a fresh process,
EvaluationLogger, several writer processes, and no secrets on disk."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import weave
from openai import OpenAI
from weave.flow.leaderboard import Leaderboard, LeaderboardColumn

from evalflow.endpoints import SimEndpoint
from evalflow.errors import WeaveStoreError
from evalflow.weave_setup import flush_weave, init_weave
from tests.suites import expected_accuracy

QUESTIONS = [{"question": f"What is {i} times 3?", "target": str(3 * i)} for i in range(40)]
CANARY = "sk-canary-5f0c1e2d3b4a69788796a5b4c3d2e1f0"


def read_back(project: str, code: str) -> Any:
    """Run `code` in a new Python process on the same store; it prints JSON to stdout."""
    script = f"from evalflow.weave_setup import init_weave\nclient = init_weave({project!r})\n"
    out = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_seed_examples_run_and_read_back_in_a_fresh_process(
    sim: SimEndpoint, evalflow_home: Path
) -> None:
    sim.configure(
        answer_key={q["question"]: q["target"] for q in QUESTIONS},
        models={"oracle": 1.0, "coin": 0.5},
    )
    project = "local/seed"
    init_weave(project)
    client = OpenAI(base_url=sim.base_url, api_key="local-key")

    # Example 1: a traced chat completion.
    response = client.chat.completions.create(
        model="oracle", messages=[{"role": "user", "content": QUESTIONS[1]["question"]}]
    )
    assert response.choices[0].message.content == "3"

    # Example 2: an evaluation of two models and a leaderboard.
    class QAModel(weave.Model):
        model_name: str

        @weave.op
        def predict(self, question: str) -> str:
            answer = client.chat.completions.create(
                model=self.model_name, messages=[{"role": "user", "content": question}]
            )
            return answer.choices[0].message.content or ""

    @weave.op
    def exact_match(target: str, output: str) -> dict[str, bool]:
        return {"correct": target == output}

    dataset = weave.Dataset(name="times-three", rows=QUESTIONS)
    evaluation = weave.Evaluation(name="times-three-eval", dataset=dataset, scorers=[exact_match])
    for name in ("oracle", "coin"):
        asyncio.run(evaluation.evaluate(QAModel(name=name, model_name=name)))
    eval_ref = weave.publish(evaluation).uri()
    board = Leaderboard(
        name="times-three-board",
        columns=[
            LeaderboardColumn(
                evaluation_object_ref=eval_ref,
                scorer_name="exact_match",
                summary_metric_path="correct.true_fraction",
            )
        ],
    )
    weave.publish(board)
    big = weave.Dataset(name="big", rows=[{"i": i, "text": f"row {i}"} for i in range(2500)])
    big_ref = weave.publish(big)
    weave.publish(weave.Dataset(name="big", rows=[{"i": -1, "text": "a second version"}]))
    flush_weave(init_weave(project))

    seen = read_back(
        project,
        f"""
        import json, weave
        from weave.flow.leaderboard import get_leaderboard_results
        board = weave.ref("times-three-board:latest").get()
        results = get_leaderboard_results(board, client)
        means = {{r.model_ref.rsplit("/", 1)[1].split(":")[0]: r.column_scores[0].scores[-1].value
                 for r in results}}
        calls = list(client.get_calls(filter={{"op_names": [
            "weave:///local/seed/op/openai.chat.completions.create:*"]}}))
        usage = [c.summary["usage"] for c in calls]
        evals = list(client.get_calls(filter={{"op_names": [
            "weave:///local/seed/op/Evaluation.evaluate:*"]}}))
        scores = [c.output["exact_match"]["correct"]["true_fraction"] for c in evals]
        v0 = weave.ref("big:v0").get()
        latest = weave.ref("big:latest").get()
        by_digest = weave.ref("big:{big_ref.digest}").get()
        rows = [dict(r) for r in v0.rows]
        print(json.dumps({{"means": means, "n_calls": len(calls), "usage": usage,
                          "scores": scores, "v0_rows": len(rows),
                          "in_order": [r["i"] for r in rows] == list(range(2500)),
                          "latest": [dict(r)["i"] for r in latest.rows],
                          "by_digest": len(list(by_digest.rows))}}))
    """,
    )
    assert seen["means"] == {"oracle": 1.0, "coin": expected_accuracy("coin", 0.5, QUESTIONS)}
    assert seen["n_calls"] == 1 + 2 * len(QUESTIONS)
    assert all(
        u[m]["total_tokens"] > 0 and u[m]["prompt_tokens"] > 0 for u in seen["usage"] for m in u
    )
    assert sorted(seen["scores"]) == sorted(seen["means"].values())
    assert seen["v0_rows"] == 2500 and seen["in_order"]
    assert seen["latest"] == [-1] and seen["by_digest"] == 2500


def test_evaluation_logger_is_readable(evalflow_home: Path) -> None:
    project = "local/logger"
    init_weave(project)
    logger = weave.EvaluationLogger(model="logged-model", dataset="logged-data")
    for i in range(5):
        pred = logger.log_prediction(inputs={"q": i}, output=i * 2)
        pred.log_score("correct", i % 2 == 0)
        pred.finish()
    logger.log_summary({"note": "done"})
    flush_weave(init_weave(project))
    seen = read_back(
        project,
        """
        import json
        calls = list(client.get_calls(filter={"op_names": [
            "weave:///local/logger/op/Evaluation.evaluate:*"]}))
        print(json.dumps({"n": len(calls), "output": calls[0].output}, default=str))
    """,
    )
    assert seen["n"] == 1
    assert seen["output"]["correct"]["true_count"] == 3


def test_four_processes_logging_250_calls_each_store_1000(evalflow_home: Path) -> None:
    project = "local/many-writers"
    writer = textwrap.dedent(f"""
        import sys, weave
        from evalflow.weave_setup import flush_weave, init_weave
        client = init_weave({project!r})
        @weave.op
        def work(i: int, worker: int) -> int:
            return i * worker
        for i in range(250):
            work(i, int(sys.argv[1]))
        flush_weave(client)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(w)]) for w in range(4)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0, 0, 0]
    seen = read_back(
        project,
        """
        import json
        calls = list(client.get_calls(filter={"op_names": [
            "weave:///local/many-writers/op/work:*"]}))
        pairs = {(c.inputs["worker"], c.inputs["i"]) for c in calls}
        print(json.dumps({"n": len(calls), "unique": len(pairs),
                          "ended": sum(c.ended_at is not None for c in calls)}))
    """,
    )
    assert seen == {"n": 1000, "unique": 1000, "ended": 1000}


def test_api_keys_never_reach_the_store(
    sim: SimEndpoint, evalflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    project = "local/canary"
    init_weave(project)

    @weave.op
    def leaky(config: dict[str, str]) -> str:
        return f"used {config['api_key']}"

    OpenAI(base_url=sim.base_url, api_key=CANARY).chat.completions.create(
        model="oracle", messages=[{"role": "user", "content": "hello"}]
    )
    OpenAI(base_url=sim.base_url).chat.completions.create(  # key from the environment
        model="oracle", messages=[{"role": "user", "content": "hello again"}]
    )
    leaky({"api_key": CANARY, "url": "x"})
    flush_weave(init_weave(project))
    for path in (evalflow_home / "weave").glob("canary.sqlite*"):
        assert CANARY.encode() not in path.read_bytes(), path


def test_a_wandb_project_without_a_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(WeaveStoreError, match="set WANDB_API_KEY, or use a local project"):
        init_weave("team/proj")
    with pytest.raises(WeaveStoreError, match="should be 'local/<name>'"):
        init_weave("no-slash")


def test_finished_calls_written_at_once_read_back_as_started_and_ended_ones(
    evalflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """calls_complete (one write per finished call: how a run records its evaluation's rows)
    stores what call_start + call_end store, secrets redacted the same way."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    client = init_weave("local/complete")
    server, project = client.server, client.project_id
    ref = f"weave:///{project}/object/arith:abc123/attr/rows/id/row7"
    start = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)
    call = {
        "project_id": project,
        "trace_id": "trace-1",
        "parent_id": "parent-1",
        "op_name": f"weave:///{project}/op/Evaluation.predict_and_score:xyz",
        "display_name": f"row with {CANARY}",
        "attributes": {"evalflow": {"run_id": "r1"}, "api_key": "attribute key"},
        "inputs": {"example": ref, "config": {"api_key": "input key", "n": 3}},
        "started_at": start,
    }
    ended = {
        "ended_at": start + dt.timedelta(seconds=2),
        "output": {"output": f"the key is {CANARY}", "scores": {"em": {"correct": False}}},
        "summary": {"note": "done"},
        "exception": json.dumps({"type": "E", "message": f"echoed {CANARY}"}),
    }
    server.call_start({"start": {**call, "id": "two-writes"}})
    server.call_end({"end": {"project_id": project, "id": "two-writes", **ended}})
    server.calls_complete({"batch": [{**call, **ended, "id": "one-write"}]})
    flush_weave(client)

    def read(call_id: str) -> dict[str, Any]:
        (found,) = server.calls_query(
            {"project_id": project, "filter": {"call_ids": [call_id]}}
        ).calls
        return found.model_dump(mode="json", exclude={"id"})

    once, twice = read("one-write"), read("two-writes")
    assert once == twice
    assert once["output"]["output"] == "the key is REDACTED"
    assert once["inputs"]["config"] == {"api_key": "REDACTED", "n": 3}
    assert once["display_name"] == "row with REDACTED"
    by_ref = server.calls_query({"project_id": project, "filter": {"input_refs": [ref]}}).calls
    assert sorted(c.id for c in by_ref) == ["one-write", "two-writes"]
    for path in (evalflow_home / "weave").glob("complete.sqlite*"):
        assert CANARY.encode() not in path.read_bytes(), path
