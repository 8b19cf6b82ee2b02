"""Real model: qa-basics on the local LLM (llama.cpp, Gemma 3 270M), next to a plain loop that
calls the same llama.cpp server directly at the same concurrency (the bound for that endpoint).

    uv run python -m bench.real_model [--limit 120] [--concurrency 2]

One llama.cpp server for both, started once. The plain loop is the fastest way to get the same
answers: an asyncio loop of openai calls with the same few-shot prompts and generation
settings, no tracing, no Prefect, no files. evalflow runs its whole flow on the `gemma-greedy`
model (chunks, limits, Weave tracing, evaluation, leaderboard). llama.cpp keeps no request
counters we could read, so both are timed on the wall: the loop around its calls, evalflow
around the whole flow (its fixed costs included, which only makes it look slower; the
Prefect server is started before, as a deployment would find it running).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

from bench.results import write_section


def plain_loop(base_url: str, prompts: list[list[dict[str, str]]], concurrency: int) -> float:
    """Seconds to answer every prompt with `concurrency` requests in flight."""
    from openai import AsyncOpenAI

    from evalflow.config import load_registry, load_suite

    spec = load_registry()["gemma-greedy"]
    generation = load_suite("qa-basics").generation.merged(spec.generation)
    params = generation.model_dump(exclude_none=True)

    async def run() -> None:
        client = AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0)
        gate = asyncio.Semaphore(concurrency)

        async def one(messages: list[dict[str, str]]) -> None:
            async with gate:
                await client.chat.completions.create(
                    model=spec.model,
                    messages=messages,  # type: ignore[arg-type]
                    **params,
                )

        await asyncio.gather(*(one(m) for m in prompts))
        await client.close()

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=120, help="rows of qa-basics")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    os.environ["EVALFLOW_HOME"] = tempfile.mkdtemp(prefix="evalflow-bench-")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    from evalflow.config import load_suite
    from evalflow.dataset import load_rows
    from evalflow.endpoints import local_llm
    from evalflow.inference import LOCAL_LLM_ENV
    from evalflow.prompting import render_messages
    from flows.evaluate import evaluate

    suite = load_suite("qa-basics")
    rows = load_rows(suite.dataset_path(), suite.dataset, args.limit)
    prompts = [render_messages(suite.prompt, row.inputs) for row in rows]
    from prefect.testing.utilities import prefect_test_harness

    # A Prefect server already up, as in a deployment: its start-up is not the flow's cost.
    with prefect_test_harness(server_startup_timeout=120), local_llm() as url:
        os.environ[LOCAL_LLM_ENV] = url
        plain_loop(url, prompts[:4], args.concurrency)  # warm the server once for both
        loop_s = plain_loop(url, prompts, args.concurrency)
        started = time.perf_counter()
        evaluate(
            suite="qa-basics",
            models=["gemma-greedy"],
            limit=args.limit,
            concurrency=args.concurrency,
            weave_project="local/bench-real",
        )
        flow_s = time.perf_counter() - started
    n = len(rows)
    loop_rate, flow_rate = n / loop_s, n / flow_s
    print(f"plain loop {loop_rate:.2f} rows/s; evalflow {flow_rate:.2f} rows/s")
    body = "\n".join(
        [
            f"{n} rows of qa-basics, model gemma-greedy (Gemma 3 270M Q4_K_M, llama.cpp on the "
            f"CPU), {args.concurrency} requests in flight for both.",
            "",
            "| contender | wall s | rows/s | of the plain loop |",
            "|---|---|---|---|",
            f"| plain loop (asyncio + openai, nothing else) | {loop_s:.1f} | {loop_rate:.2f} "
            "| 1.00 |",
            f"| evalflow (whole flow: Prefect, tracing, evaluation, leaderboard) | {flow_s:.1f} "
            f"| {flow_rate:.2f} | {flow_rate / loop_rate:.2f} |",
            "",
            "The llama.cpp server answers one request at a time (one slot), so the endpoint, "
            "not the client, sets the pace; evalflow's wall time also holds the flow's fixed "
            "costs (flow run start, Weave evaluation and leaderboard).",
        ]
    )
    write_section("Real model", "uv run python -m bench.real_model", body)


if __name__ == "__main__":
    main()
