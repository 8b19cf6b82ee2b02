"""Judge scorers, multiple choice and repeated samples on the simulated endpoint, whose
profiles give known figures; judge requests counted at /_stats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from evalflow.endpoints import SimEndpoint, sim_endpoint
from evalflow.endpoints.sim import submission_is_right, unit_hash
from evalflow.evaluation import read_leaderboard
from evalflow.run_context import RunWatch, watching
from evalflow.weave_setup import init_weave
from flows.evaluate import evaluate
from tests.suites import answer_key, expected_accuracy, questions, write_suite

ROWS = questions(150)
JUDGE_ACCURACY = 0.9
JUDGED = [{"kind": "exact_match"}, {"kind": "judge", "name": "judged", "model": "judge"}]


def judged_expected(model: str, accuracy: float, rows: list[dict[str, str]]) -> float:
    """What the simulated endpoint's rules give: the model answers right when
    hash(model, question) < accuracy (else "I don't know."); the judge tells the truth about
    that answer when hash(judge, reference, answer) < its accuracy, else the opposite."""
    graded = 0
    for row in rows:
        right = unit_hash("answer", model, row["question"]) < accuracy
        output = row["answer"] if right else "I don't know."
        truth = submission_is_right(row["answer"], output)
        told = unit_hash("judge", "judge", row["answer"], output) < JUDGE_ACCURACY
        graded += truth if told else not truth
    return graded / len(rows)


def judged_suite(
    folder: Path, name: str, rows: list[dict[str, str]], sim: SimEndpoint, **extra: Any
) -> Path:
    """A suite scored by exact_match and a judge; models oracle and coin answer, `judge`
    (registered on the same simulated endpoint) grades."""
    models: dict[str, dict[str, object]] = {
        "oracle": {"limits": {"max_concurrency": 16}},
        "coin": {"limits": {"max_concurrency": 16}},
        "judge": {"limits": {"max_concurrency": 8}},
    }
    sim.configure(
        answer_key=answer_key(rows),
        models={"oracle": 1.0, "coin": 0.5, "judge": JUDGE_ACCURACY},
        **extra,
    )
    return write_suite(folder, name, rows, sim.base_url, models, scorers=JUDGED)


def test_a_judged_suite_has_the_figures_its_profiles_imply(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = judged_suite(tmp_path / "e", "judged", ROWS, sim)
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    project = "local/judged"
    watcher = RunWatch()
    with watching(watcher):
        result = evaluate(
            suite="judged", models=["oracle", "coin"], chunk_size=40, weave_project=project
        )
    stats = sim.stats()
    # One answer per row and model, one judge request per answer.
    assert stats["by_model"] == {
        "oracle": {"200": 150},
        "coin": {"200": 150},
        "judge": {"200": 300},
    }
    expected = {m: judged_expected(m, a, ROWS) for m, a in (("oracle", 1.0), ("coin", 0.5))}
    assert 0.5 < expected["oracle"] < 1.0 and expected["coin"] != expected["oracle"]
    summary = json.loads((Path(result["folder"]) / "summary.json").read_text())
    by_model = {s["model"]: s for s in summary["summary"]}
    for model, value in expected.items():
        assert by_model[model]["judged"] == pytest.approx(value)
        assert by_model[model]["judged errors"] == 0
        assert by_model[model]["exact_match"] == pytest.approx(
            expected_accuracy(model, {"oracle": 1.0, "coin": 0.5}[model], ROWS)
        )
    board = {row["model"]: row for row in read_leaderboard("judged")}
    assert board["oracle"]["judged"] == pytest.approx(expected["oracle"])
    assert board["coin"]["judged"] == pytest.approx(expected["coin"])
    # Per row: grade, score and the judge's explanation.
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    outputs = [json.loads(v) for v in frame["scorer_output:judged"]]
    assert {o["grade"] for o in outputs} == {"C", "I"}
    assert all(o["explanation"].startswith("The submission ") for o in outputs)
    assert list(frame["score:judged"]) == [1.0 if o["grade"] == "C" else 0.0 for o in outputs]
    # Judge tokens: counted in the summary and the run's budget, as the endpoint served them.
    served = stats["tokens"]["prompt"] + stats["tokens"]["completion"]
    answer_tokens = sum(by_model[m]["tokens"] for m in expected)
    judge_tokens = sum(by_model[m]["judged tokens"] for m in expected)
    assert judge_tokens > answer_tokens > 0
    assert answer_tokens + judge_tokens == served
    assert watcher.run is not None and watcher.run.budget.tokens == served
    progress = watcher.run.progress.snapshot()
    assert (progress["done"], progress["judged"], progress["judge_total"]) == (300, 300, 300)
    assert "300/300 judged" in watcher.run.progress.describe()
    # The judge's requests are Weave calls, told apart by their attributes.
    client = init_weave(project)
    calls = list(
        client.get_calls(
            filter={"op_names": [f"weave:///{project}/op/openai.chat.completions.create:*"]}
        )
    )
    judged_calls = [c for c in calls if (c.attributes or {}).get("evalflow.scorer") == "judged"]
    assert len(judged_calls) == 300
    assert {c.attributes["evalflow.judged_model"] for c in judged_calls} == {"oracle", "coin"}
    assert {c.inputs["model"] for c in judged_calls} == {"judge"}


def test_ungraded_replies_are_the_judges_errors_and_retry_errors_asks_only_for_them(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = judged_suite(tmp_path / "g", "garbled", ROWS, sim, judge_garbled=0.1)
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    first = evaluate(suite="garbled", models=["oracle", "coin"], weave_project="local/garbled")
    frame = pd.read_parquet(Path(first["folder"]) / "results.parquet")
    ungraded = frame["scorer_error:judged"].notna()
    assert 0.05 * 300 < ungraded.sum() < 0.15 * 300  # about 10%
    assert frame["error_class"].isna().all()  # the answers themselves are fine
    assert frame.loc[ungraded, "score:judged"].isna().all()  # not "wrong": unscored
    assert frame.loc[ungraded, "scorer_error:judged"].str.contains("no line `GRADE: X`").all()
    by_model = {s["model"]: s for s in first["summary"]}
    for model in ("oracle", "coin"):
        mine = frame[frame["model"] == model]
        assert by_model[model]["judged errors"] == mine["scorer_error:judged"].notna().sum()
        assert by_model[model]["judged"] == pytest.approx(mine["score:judged"].mean())

    sim.configure(judge_garbled=0.0)  # the judge answers properly now; counters reset
    again = evaluate(
        suite="garbled", retry_errors_of=first["run_id"], weave_project="local/garbled"
    )
    # Only the ungraded answers were sent to the judge again; no answer was asked again.
    assert sim.stats()["by_model"] == {"judge": {"200": int(ungraded.sum())}}
    by_model = {s["model"]: s for s in again["summary"]}
    for model, accuracy in (("oracle", 1.0), ("coin", 0.5)):
        assert by_model[model]["judged errors"] == 0
        assert by_model[model]["judged"] == pytest.approx(judged_expected(model, accuracy, ROWS))


def test_a_run_killed_while_judging_pays_no_judge_request_twice(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint
) -> None:
    rows = questions(1000)
    folder = judged_suite(tmp_path / "k", "killjudge", rows, sim, latency_ms=20)
    env = {**os.environ, "EVALFLOW_EVALS_DIR": str(folder), "PREFECT_API_URL": prefect_server}
    command = [sys.executable, "-m", "evalflow.cli", "run", "killjudge", "-m", "oracle"]
    command += ["--chunk-size", "250", "--weave-project", "local/killjudge"]
    judged_at_kills = []
    for point in (200, 600):  # killed twice while judging
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sim.stats()["by_model"].get("judge", {}).get("200", 0) >= point:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        judged_at_kills.append(sim.stats()["by_model"]["judge"]["200"])
    assert 200 <= judged_at_kills[0] < judged_at_kills[1] < 1000
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    by_model = sim.stats()["by_model"]
    # Only requests in flight at a kill (8 at most for the judge) may be sent twice.
    assert 1000 <= by_model["judge"]["200"] <= 1000 + 2 * 8
    assert 1000 <= by_model["oracle"]["200"] <= 1000 + 2 * 16
    folder_line = next(x for x in final.stdout.splitlines() if x.startswith("results: "))
    frame = pd.read_parquet(Path(folder_line.split(": ", 1)[1]) / "results.parquet")
    assert len(frame) == 1000 and frame["scorer_error:judged"].isna().all()
    assert frame["score:judged"].mean() == pytest.approx(judged_expected("oracle", 1.0, rows))


def test_the_judge_keeps_its_own_rate_while_the_answers_go_at_theirs(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = questions(120)
    judge_rpm, answer_rpm = 300, 600
    sim.configure(answer_key=answer_key(rows), rpm=answer_rpm, latency_ms=20)
    with sim_endpoint(models={"judge": 1.0}, rpm=judge_rpm, latency_ms=20) as judge_sim:
        models: dict[str, dict[str, object]] = {
            "oracle": {"limits": {"rpm": answer_rpm, "max_concurrency": 16}},
            # Registered here; the suite's scorer sends it to judge_sim (base_url), where it
            # keeps its registered limits.
            "judge": {"limits": {"rpm": judge_rpm, "max_concurrency": 8}},
        }
        folder = write_suite(
            tmp_path / "r",
            "paced",
            rows,
            sim.base_url,
            models,
            scorers=[
                {
                    "kind": "judge",
                    "name": "judged",
                    "model": "judge",
                    "base_url": judge_sim.base_url,
                }
            ],
        )
        monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
        evaluate(suite="paced", models=["oracle"], chunk_size=30, weave_project="local/paced")
        judge_stats, answer_stats = judge_sim.stats(), sim.stats()
    sent = judge_stats["by_status"]
    assert sent.get("200") == 120
    rate = 60 * 119 / judge_stats["answering_seconds"]
    print(f"judge: {rate:.2f} requests/min (limit {judge_rpm}), 429s: {sent.get('429', 0)}")
    assert abs(rate - judge_rpm) <= 1.0
    assert sent.get("429", 0) < 0.01 * sum(sent.values())
    answer_rate = 60 * 119 / answer_stats["answering_seconds"]
    print(f"answers: {answer_rate:.2f} requests/min (limit {answer_rpm})")
    assert 0.95 * answer_rpm <= answer_rate <= 1.01 * answer_rpm


def test_a_multiple_choice_suite_asked_over_epochs(
    prefect_server: str, tmp_path: Path, sim: SimEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalflow.choices import render_choices, shuffled_order

    colours = ["red", "green", "blue", "yellow"]
    rows = [
        {
            "id": f"c{i}",
            "question": f"Which colour is number {i}?",
            "options": colours,
            "answer": colours[i % 4],
        }
        for i in range(40)
    ]
    key = {}
    for row in rows:  # the prompt as sent: the question, then the shuffled choices
        shown = [colours[j] for j in shuffled_order(11, row["id"], 4)]
        prompt = f"{row['question']}\n{render_choices(shown)}"
        letter = "ABCD"[shown.index(row["answer"])]
        key[prompt] = f"The answer is ({letter})." if row["id"] < "c2" else row["answer"].title()
    sim.configure(answer_key=key, models={"oracle": 1.0, "coin": 0.5})
    folder = write_suite(
        tmp_path / "mc",
        "colours",
        rows,
        sim.base_url,
        {"oracle": {}, "coin": {}},
        dataset={
            "path": "colours.jsonl",
            "id_field": "id",
            "choices_field": "options",
            "shuffle": 11,
        },
        scorers=[{"kind": "choice"}],
    )
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    result = evaluate(suite="colours", epochs=3, weave_project="local/colours")
    assert sim.stats()["by_model"] == {"oracle": {"200": 120}, "coin": {"200": 120}}
    frame = pd.read_parquet(Path(result["folder"]) / "results.parquet")
    assert sorted(frame["epoch"].unique()) == [0, 1, 2] and len(frame) == 240
    by_model = {s["model"]: s for s in result["summary"]}
    coin = sum(unit_hash("answer", "coin", p) < 0.5 for p in key) / 40
    assert by_model["oracle"]["choice"] == 1.0
    assert by_model["coin"]["choice"] == pytest.approx(coin)
    # The simulated answers repeat across epochs: pass@3 and the majority equal the mean, and
    # the stderr is that of 40 rows, not of 120 samples.
    assert by_model["coin"]["choice pass@3"] == pytest.approx(coin)
    assert by_model["coin"]["choice majority"] == pytest.approx(coin)
    assert by_model["coin"]["choice stderr"] == pytest.approx(
        (coin * (1 - coin) * 40 / 39 / 40) ** 0.5
    )
    again = evaluate(suite="colours", epochs=3, weave_project="local/colours")
    assert again["run_id"] == result["run_id"]
    assert sim.stats()["total"] == 240  # every epoch's answer reused
