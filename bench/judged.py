"""A judged suite: answers and judge grades against the bound the slower endpoint sets.

    uv run python -m bench.judged [--rows 1000] [--judge-rpm 1800]

Two simulated endpoints in this process's helper threads: the answering model's (latency
200 ms, 32 in flight: a bound of 160 answers/s) and the judge's (latency 200 ms, limited to
--judge-rpm requests a minute, which evalflow is told as the judge's `rpm`). Every answer needs
a grade, so the run's bound is the slower of the two: min(160, rpm / 60) rows/s. Rates are
counted at the endpoints (first to last answer); the wall time is the whole `evaluate()` call
(flow start, answers, grades, Weave evaluation, leaderboard).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.results import write_section


def rate(stats: dict[str, Any]) -> tuple[float, int]:
    answered = int(stats["by_status"].get("200", 0))
    return (answered - 1) / max(stats["answering_seconds"], 1e-9), answered


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--judge-rpm", type=int, default=1800)
    parser.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    args = parser.parse_args()
    os.environ["EVALFLOW_HOME"] = tempfile.mkdtemp(prefix="evalflow-bench-")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    from evalflow.endpoints import sim_endpoint
    from flows.evaluate import evaluate
    from tests.suites import answer_key, questions, write_suite

    rows = questions(args.rows)
    answer_bound = 32 / 0.2
    judge_bound = args.judge_rpm / 60
    bound = min(answer_bound, judge_bound)
    with (
        sim_endpoint(answer_key=answer_key(rows), latency_ms=200, jitter_ms=50) as answers,
        sim_endpoint(models={"judge": 1.0}, latency_ms=200, jitter_ms=50) as judge,
    ):
        folder = tempfile.mkdtemp(prefix="bench-judged-")
        evals = write_suite(
            Path(folder),
            "judged",
            rows,
            answers.base_url,
            {"oracle": {"limits": {"max_concurrency": 32, "timeout_s": 30.0}}},
            scorers=[{"kind": "judge", "name": "judged", "model": "judge"}],
        )
        registry = evals / "models.yaml"
        registry.write_text(
            registry.read_text()
            + f"- name: judge\n  model: judge\n  endpoint: '{judge.base_url}'\n"
            f"  limits: {{rpm: {args.judge_rpm}, max_concurrency: 32, timeout_s: 30.0}}\n"
        )
        os.environ["EVALFLOW_EVALS_DIR"] = str(evals)
        started = time.perf_counter()
        evaluate(suite="judged", chunk_size=250, weave_project="local/bench-judged")
        wall = time.perf_counter() - started
        answer_rate, answered = rate(answers.stats())
        judge_rate, judged = rate(judge.stats())
    whole = args.rows / wall
    lines = [
        f"{args.rows} rows; answers: 32 in flight at 200 ms (bound {answer_bound:.0f}/s); "
        f"judge: limited to {args.judge_rpm} requests/min (bound {judge_bound:.0f}/s); "
        f"the run's bound is the slower: {bound:.0f} rows/s.",
        "",
        "| what | rows/s | of the run's bound | counted |",
        "|---|---|---|---|",
        f"| answers at their endpoint | {answer_rate:.1f} | {answer_rate / bound:.2f} | "
        f"{answered} |",
        f"| grades at the judge's endpoint | {judge_rate:.1f} | {judge_rate / bound:.2f} | "
        f"{judged} |",
        f"| whole run (rows / wall {wall:.1f} s) | {whole:.1f} | {whole / bound:.2f} | "
        f"{args.rows} |",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Judged suite", "uv run python -m bench.judged", body)


if __name__ == "__main__":
    main()
