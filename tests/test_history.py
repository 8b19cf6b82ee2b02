"""What changed between evaluations: the history of finished full runs, paired comparisons,
uncertainty on every figure, the trend chart. On a real Prefect server, the simulated endpoint
with known accuracies, the real weave client on the local store; figures checked against
scipy."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from prefect.artifacts import Artifact
from scipy import stats as sp

from evalflow.compare import compare, versus_leader
from evalflow.endpoints import SimEndpoint
from evalflow.evaluation import read_leaderboard
from evalflow.history import read_history
from evalflow.stats import wilson_interval
from flows.evaluate import evaluate
from tests.suites import answer_key, expected_accuracy, questions, write_suite

ROWS = questions(120)
ACCURACY = {"good": 0.8, "close": 0.75, "poor": 0.3}
PRICED = {"price_in": 0.5, "price_out": 2.0}  # USD per million tokens, for "good" only


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evalflow.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def make_suite(folder: Path, sim: SimEndpoint, name: str, rows: list[dict[str, str]]) -> Path:
    sim.configure(answer_key=answer_key(ROWS + rows), models=ACCURACY)
    models: dict[str, dict[str, object]] = {"good": dict(PRICED), "close": {}, "poor": {}}
    return write_suite(folder, name, rows, sim.base_url, models)


@pytest.fixture
def suite_folder(
    tmp_path: Path,
    sim: SimEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """The suite `hist` in a folder of its own, and the test's own history: the session's
    EVALFLOW_HOME is shared, so each test points it at a folder of its own."""
    folder = make_suite(tmp_path / "evals", sim, "hist", ROWS)
    monkeypatch.setenv("EVALFLOW_EVALS_DIR", str(folder))
    monkeypatch.setenv("EVALFLOW_HOME", str(tmp_path / "home"))
    return folder


def frame_of(result: dict[str, object]) -> pd.DataFrame:
    return pd.read_parquet(Path(str(result["folder"])) / "results.parquet")


def scores(frame: pd.DataFrame, model: str) -> pd.Series:
    mine = frame[(frame["model"] == model) & frame["error_class"].isna()]
    return mine.set_index("row_id")["score:exact_match"].astype(bool)


def test_history_keeps_one_record_per_full_run_and_model(
    prefect_server: str, suite_folder: Path
) -> None:
    project = "local/hist-records"
    models = ["good", "close"]
    full = evaluate(suite="hist", models=models, weave_project=project)
    history = read_history("hist")
    assert sorted(history["model"]) == ["close", "good"]
    assert set(history["run_id"]) == {full["run_id"]}
    frame = frame_of(full)
    summary = json.loads((Path(str(full["folder"])) / "summary.json").read_text())
    for record in history.to_dict("records"):
        right = int(scores(frame, record["model"]).sum())
        assert record["exact_match"] == pytest.approx(right / len(ROWS))
        assert right / len(ROWS) == expected_accuracy(
            record["model"], ACCURACY[record["model"]], ROWS
        )
        low, high = wilson_interval(right, len(ROWS))
        assert (record["exact_match ci_low"], record["exact_match ci_high"]) == pytest.approx(
            (low, high)
        )
        assert record["n"] == record["exact_match n"] == len(ROWS)
        assert record["weave_project"] == project and record["suite"] == "hist"
        (saved,) = [s for s in summary["summary"] if s["model"] == record["model"]]
        assert saved["exact_match ci_low"] == pytest.approx(low)
        assert saved["exact_match n"] == len(ROWS)
    # The run's Prefect artifact shows each figure with its interval and n, 3 decimals.
    markdown = str(Artifact.get("hist-summary").data)  # type: ignore[union-attr]
    for record in history.to_dict("records"):
        low, high = record["exact_match ci_low"], record["exact_match ci_high"]
        row = f"| {record['model']} | {record['exact_match']:.3f} [{low:.3f}, {high:.3f}] |"
        assert row in markdown
    assert "| n |" in markdown and f"| {len(ROWS)} | 0 |" in markdown
    good = history[history["model"] == "good"].iloc[0]
    tokens = frame[frame["model"] == "good"][["prompt_tokens", "completion_tokens"]].sum()
    expected_cost = (tokens["prompt_tokens"] * 0.5 + tokens["completion_tokens"] * 2.0) / 1e6
    assert good["cost"] == pytest.approx(expected_cost) and good["cost"] > 0
    assert math.isnan(history[history["model"] == "close"].iloc[0]["cost"])  # no prices
    assert len(set(history["model_digest"])) == 2 and len(set(history["suite_digest"])) == 1

    # A --limit run is not a finished evaluation of the suite: no record.
    evaluate(suite="hist", models=models, limit=10, weave_project=project)
    # The same run started again replaces its records rather than adding to them.
    evaluate(suite="hist", models=models, weave_project=project)
    assert len(read_history("hist")) == 2

    # Another full run (the rows changed): its own records, under another suite digest.
    fewer = ROWS[:100]
    (suite_folder / "hist.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fewer))
    second = evaluate(suite="hist", models=models, weave_project=project)
    history = read_history("hist")
    assert len(history) == 4 and len(set(history["suite_digest"])) == 2
    assert list(history["run_id"])[-2:] == [second["run_id"]] * 2  # oldest first
    assert list(read_history("hist", "good")["run_id"]) == [full["run_id"], second["run_id"]]


def test_compare_two_models_of_a_run_agrees_with_scipy(
    prefect_server: str, suite_folder: Path
) -> None:
    result = evaluate(suite="hist", models=["good", "poor"], weave_project="local/hist-pair")
    run_id = str(result["run_id"])
    (comparison,) = compare(f"{run_id}:good", f"{run_id}:poor")
    frame = frame_of(result)
    a, b = scores(frame, "good"), scores(frame, "poor")
    assert comparison["rows"]["paired"] == len(ROWS)
    assert comparison["rows"]["only_a"] == comparison["rows"]["only_b"] == []
    (scorer,) = comparison["scorers"]
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    assert (scorer["losses"], scorer["wins"]) == (only_a, only_b)
    assert scorer["test"] == "mcnemar"
    assert scorer["p"] == pytest.approx(sp.binomtest(min(only_a, only_b), only_a + only_b).pvalue)
    paired = sp.ttest_rel(b.astype(float).to_numpy(), a.astype(float).to_numpy())
    ci = paired.confidence_interval(0.95)
    assert (scorer["ci_low"], scorer["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert scorer["delta"] == pytest.approx(b.mean() - a.mean())
    flipped = {f["row_id"]: f for f in scorer["flipped"]}
    assert sorted(flipped) == sorted(a.index[a != b])
    row_id = next(iter(flipped))
    by_model = frame.set_index(["model", "row_id"])
    assert flipped[row_id]["output_a"] == by_model.loc[("good", row_id), "output"]
    assert flipped[row_id]["output_b"] == by_model.loc[("poor", row_id), "output"]
    assert flipped[row_id]["input"] == by_model.loc[("good", row_id), "input"]
    # With a bootstrap interval instead of t: close to it, and around the delta.
    (boot,) = compare(f"{run_id}:good", f"{run_id}:poor", bootstrap=5000)
    (boot_scorer,) = boot["scorers"]
    assert boot_scorer["ci_low"] == pytest.approx(ci.low, abs=0.02)
    assert boot_scorer["ci_low"] < boot_scorer["delta"] < boot_scorer["ci_high"]


def test_compare_lists_rows_on_one_side_and_leaves_failed_rows_out(
    prefect_server: str, suite_folder: Path, sim: SimEndpoint
) -> None:
    project = "local/hist-missing"
    first = evaluate(suite="hist", models=["good"], weave_project=project)
    # The dataset loses its first 5 rows and gains 3; some rows now fail (no retry).
    extra = [
        {"id": f"new{i}", "question": f"What is {i} times 7?", "answer": str(7 * i)}
        for i in range(3)
    ]
    changed = ROWS[5:] + extra
    folder = make_suite(suite_folder, sim, "hist", changed)
    registry = yaml.safe_load((folder / "models.yaml").read_text())
    for entry in registry["models"]:
        entry["limits"] = {"max_attempts": 1}
    (folder / "models.yaml").write_text(yaml.safe_dump(registry))
    sim.configure(error_500=0.05)
    second = evaluate(suite="hist", models=["good"], weave_project=project)
    failed = sorted(frame_of(second).query("error_class.notna()", engine="python")["row_id"])
    assert failed, "the endpoint's faults should leave some rows failed"

    (comparison,) = compare(str(first["run_id"]), str(second["run_id"]))
    rows = comparison["rows"]
    assert rows["only_a"] == [r["id"] for r in ROWS[:5]]
    assert rows["only_b"] == [r["id"] for r in extra]
    assert rows["failed_b"] == [r for r in failed if not r.startswith("new")]
    assert rows["failed_a"] == []
    assert rows["shared"] == len(ROWS) - 5
    assert rows["paired"] == rows["shared"] - len(rows["failed_b"])
    assert comparison["scorers"][0]["n"] == rows["paired"]
    # The same answers on the rows both answered: no difference.
    (scorer,) = comparison["scorers"]
    assert (scorer["delta"], scorer["p"], scorer["flipped"]) == (0.0, 1.0, [])

    env = {"EVALFLOW_EVALS_DIR": str(folder)}
    out = cli("compare", str(first["run_id"]), str(second["run_id"]), env=env)
    assert out.returncode == 0, out.stderr
    assert f"only on A: 5: {', '.join(r['id'] for r in ROWS[:5])}" in out.stdout
    assert "only on B: 3: new0, new1, new2" in out.stdout
    assert f"failed on B (left out): {len(rows['failed_b'])}" in out.stdout
    refused = cli("compare", str(first["run_id"]), f"{first['run_id']}:nobody", env=env)
    assert refused.returncode == 1 and "has no model 'nobody'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_leaderboard_shows_intervals_and_who_is_tied_with_the_leader(
    prefect_server: str, suite_folder: Path
) -> None:
    project = "local/hist-leaderboard"
    result = evaluate(suite="hist", models=list(ACCURACY), weave_project=project)
    table = read_leaderboard("hist")
    frame = frame_of(result)
    for entry in table:
        right = int(scores(frame, entry["model"]).sum())
        assert entry["run_id"] == result["run_id"]
        assert entry["exact_match n"] == len(ROWS)
        assert (entry["exact_match ci_low"], entry["exact_match ci_high"]) == pytest.approx(
            wilson_interval(right, len(ROWS))
        )
    verdicts = versus_leader(table, "exact_match")
    leader = max(ACCURACY, key=lambda m: scores(frame, m).mean())
    assert verdicts[leader] == {"status": "leader"}
    others = [m for m in ACCURACY if m != leader]
    raw = []
    for model in others:
        a, b = scores(frame, leader), scores(frame, model)
        discordant = int((a & ~b).sum()), int((~a & b).sum())
        raw.append(sp.binomtest(min(discordant), sum(discordant)).pvalue)
    adjusted = np.minimum(1, np.maximum.accumulate(np.sort(raw) * [2, 1]))
    holm = dict(zip([others[i] for i in np.argsort(raw)], adjusted, strict=True))
    for model in others:
        assert verdicts[model]["p"] == pytest.approx(holm[model])
        assert verdicts[model]["status"] == ("tied" if holm[model] > 0.05 else "behind")
    assert verdicts["poor"]["status"] == "behind"

    env = {"EVALFLOW_EVALS_DIR": str(suite_folder)}
    out = cli("leaderboard", "hist", "--weave-project", project, env=env)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    entry = next(e for e in table if e["model"] == "poor")
    low, high = entry["exact_match ci_low"], entry["exact_match ci_high"]
    assert f"{entry['exact_match']:.3f} [{low:.3f}, {high:.3f}] n={len(ROWS)}" in lines["poor"]
    assert "behind (p=" in lines["poor"] and "leader" in lines[leader]


def test_history_prints_and_plots_each_models_score_over_time(
    prefect_server: str, suite_folder: Path, tmp_path: Path
) -> None:
    project = "local/hist-plot"
    evaluate(suite="hist", models=["good", "poor"], weave_project=project)
    fewer = ROWS[:90]
    (suite_folder / "hist.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fewer))
    evaluate(suite="hist", models=["good", "poor"], weave_project=project)
    env = {"EVALFLOW_EVALS_DIR": str(suite_folder)}
    chart = tmp_path / "trend.png"
    out = cli("history", "hist", "--plot", str(chart), env=env)
    assert out.returncode == 0, out.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    history = read_history("hist")
    good = history[history["model"] == "good"]
    printed = [line for line in out.stdout.splitlines() if " good " in line]
    assert len(printed) == len(good) == 2
    last = good.iloc[-1]
    assert f"{last['exact_match']:.3f} [{last['exact_match ci_low']:.3f}," in printed[-1]
    assert "$" in printed[-1]  # good has prices: its cost is shown
    as_json = json.loads(cli("history", "hist", "-m", "poor", "--json", env=env).stdout)
    assert [r["model"] for r in as_json] == ["poor", "poor"]
    assert {"suite_digest", "model_digest", "exact_match ci_high", "cost"} <= set(as_json[0])
