"""The contenders that several benchmarks run next to evalflow, in this process or as a
command of their own (for whole-process figures):

    uv run python -m bench.contenders weave|naive --base-url URL --rows-file ROWS.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path


def plain_weave_evaluation(
    base_url: str, rows: list[dict[str, str]], name: str, max_retries: int = 0
) -> int:
    """A plain weave.Evaluation (parallelism from WEAVE_PARALLELISM) whose model calls the
    endpoint with the openai client; traced in the local store `local/<name>`. Returns its
    failed rows."""
    import weave
    from openai import AsyncOpenAI

    from evalflow.weave_setup import flush_weave, init_weave

    init_weave(f"local/{name}")
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=max_retries)
    failures: list[str] = []

    class Endpoint(weave.Model):
        @weave.op
        async def predict(self, question: str) -> str:
            try:
                answer = await client.chat.completions.create(
                    model="oracle", messages=[{"role": "user", "content": question}]
                )
            except Exception as exc:
                failures.append(type(exc).__name__)
                raise
            return answer.choices[0].message.content or ""

    @weave.op
    def exact_match(answer: str, output: str) -> dict[str, bool]:
        return {"correct": answer == output}

    evaluation = weave.Evaluation(
        name=name, dataset=weave.Dataset(name=name, rows=rows), scorers=[exact_match]
    )
    asyncio.run(evaluation.evaluate(Endpoint(name="oracle")))
    flush_weave()
    return len(failures)


def naive_prefect_flow(base_url: str, rows: list[dict[str, str]], concurrency: int) -> None:
    """A Prefect flow with a task per row (`.map` on a thread pool of `concurrency`), each
    calling the endpoint with the openai client."""
    from openai import OpenAI
    from prefect import flow, task
    from prefect.cache_policies import NONE
    from prefect.task_runners import ThreadPoolTaskRunner

    client = OpenAI(base_url=base_url, api_key="bench", max_retries=0)

    @task(cache_policy=NONE)
    def ask(question: str) -> str:
        answer = client.chat.completions.create(
            model="oracle", messages=[{"role": "user", "content": question}]
        )
        return answer.choices[0].message.content or ""

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))  # type: ignore[arg-type]
    def naive(questions: list[str]) -> list[str]:
        return [f.result() for f in ask.map(questions)]

    naive([r["question"] for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("contender", choices=["weave", "naive"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--rows-file", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("EVALFLOW_HOME", tempfile.mkdtemp(prefix="evalflow-bench-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ["WEAVE_PARALLELISM"] = str(args.concurrency)
    rows = json.loads(args.rows_file.read_text())
    if args.contender == "weave":
        plain_weave_evaluation(args.base_url, rows, "bench-weave-whole")
    else:
        naive_prefect_flow(args.base_url, rows, args.concurrency)


if __name__ == "__main__":
    main()
